// Host side of node liveness (rules: node/core/lease-rules.ts): whether this host must stop its own
// guests now. Pure; the caller (the daemon, and the separate fence watchdog that survives it) passes
// its own monotonic clock. The deadline counts from when the last ACKED renewal was SENT (rule 2).
import { hostFenceAfterMs } from './lease-rules.ts'
import type { LeaseSettings } from './lease-rules.ts'

export type FenceVerdict =
  | { kind: 'ok', deadline: number, leftMs: number }
  | { kind: 'fence', deadline: number, why: string }

/**
 * @param lastAckedSentAt monotonic ms at which the newest renewal that was acknowledged was sent;
 *   null when none was acked since the daemon started — then `startedAt` counts as the send time
 *   (a freshly started daemon runs no guest of an old epoch: it cleans those up before anything).
 */
export function fenceVerdict (now: number, lastAckedSentAt: number | null, startedAt: number, s: LeaseSettings): FenceVerdict {
  const from = lastAckedSentAt ?? startedAt
  const deadline = from + hostFenceAfterMs(s)
  if (now >= deadline) {
    return { kind: 'fence', deadline, why: `no acknowledged lease renewal for ${now - from} ms (fence after ${hostFenceAfterMs(s)} ms)` }
  }
  return { kind: 'ok', deadline, leftMs: deadline - now }
}

/**
 * An acked renewal moves the deadline only forward: a late ack of an OLD request (sent before a newer
 * acked one) must not pull the send time back, and a reordered ack must not push it past its own send.
 */
export function ackRenewal (lastAckedSentAt: number | null, sentAt: number): number {
  return lastAckedSentAt == null ? sentAt : Math.max(lastAckedSentAt, sentAt)
}
