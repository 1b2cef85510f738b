// Pending ReadIndex requests on a leader. Each request gets its own heartbeat
// round (tagged with a sequence number the followers echo back); once a quorum
// of voters answered a round, that request and every earlier one are safe.
import type { NodeId } from './types.ts'

export interface ReadRequest {
  seq: number
  /** The leader's commit index when the request arrived. */
  index: number
  /** Who asked: the leader itself (a local read) or a follower that forwarded it. */
  from: NodeId
  context: Uint8Array
  acks: Set<NodeId>
}

const PREFIX = 'ri:'

export function encodeReadContext (seq: number): Uint8Array {
  return new TextEncoder().encode(PREFIX + String(seq))
}

/** The round a heartbeat context names, or undefined for anything else. */
export function decodeReadContext (ctx: Uint8Array | undefined): number | undefined {
  if (ctx === undefined || ctx.byteLength === 0 || ctx.byteLength > 32) return undefined
  const s = new TextDecoder().decode(ctx)
  if (!s.startsWith(PREFIX)) return undefined
  const n = Number(s.slice(PREFIX.length))
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}

export class ReadOnly {
  private queue: ReadRequest[] = []
  private nextSeq = 1

  add (index: number, from: NodeId, context: Uint8Array, self: NodeId): ReadRequest {
    const r: ReadRequest = { seq: this.nextSeq++, index, from, context, acks: new Set([self]) }
    this.queue.push(r)
    return r
  }

  /** Record a heartbeat answer for round `seq`; returns the requests now safe (in order), if any. */
  ack (seq: number, from: NodeId, hasQuorum: (acks: Set<NodeId>) => boolean): ReadRequest[] {
    const k = this.queue.findIndex(r => r.seq === seq)
    if (k < 0) return []
    const r = this.queue[k]
    r.acks.add(from)
    if (!hasQuorum(r.acks)) return []
    return this.queue.splice(0, k + 1)
  }

  pending (): number {
    return this.queue.length
  }

  reset (): void {
    this.queue = []
  }
}
