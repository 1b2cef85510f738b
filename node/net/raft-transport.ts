// Raft over libp2p: one long-lived outbound stream per peer carrying frames that each hold a
// batch of Raft messages. send() never blocks the Raft loop: messages go into a bounded per-peer
// queue drained by that peer's writer, which batches, waits on backpressure, and reconnects with
// backoff. Raft tolerates loss, so an overflowing or unreachable peer costs dropped messages and
// an onUnreachable() call (the core then probes the peer instead of streaming to it).
import type { Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Message } from '../../protocols/raft/types.ts'
import { validateBatch, validateMessage } from '../../protocols/raft-wire.ts'
import { BlixardError, isWireError } from '../../protocols/errors.ts'
import {
  DIAL_TIMEOUT_MS, MAX_RAFT_BATCH_BYTES, MAX_RAFT_BATCH_MSGS, MAX_RAFT_FRAME_BYTES,
  RAFT_QUEUE_MAX_MSGS, RAFT_RECONNECT_MAX_MS, RAFT_RECONNECT_MIN_MS, WRITE_TIMEOUT_MS
} from '../../protocols/limits.ts'
import type { NetComponents } from './components.ts'
import { readFrames, writeFrame } from './frame-stream.ts'
import { flushCoalesced } from './coalesce.ts'
import { failpoint } from '../../storage/failpoints.ts'
import { createLogger, errFields, type Logger } from '../log.ts'

export const RAFT_PROTOCOL = '/blixard/raft/1'

export interface RaftTransportInit {
  /** protocol id; default RAFT_PROTOCOL */
  protocol?: string
  /** every valid inbound message, `from` already checked against the connection's peer */
  onMessage: (from: string, msg: Message) => void
  /** a peer could not be reached, or messages to it were dropped: call rawNode.reportUnreachable */
  onUnreachable?: (peer: string) => void
  /** a MsgSnap was written to the peer's stream (true) or lost (false): call rawNode.reportSnapshot */
  onSnapshotStatus?: (peer: string, ok: boolean) => void
  /** an inbound message or frame was refused (also logged) */
  onRejected?: (peer: string, err: BlixardError) => void
  log?: Logger
  /** per-peer queue bound (messages); default RAFT_QUEUE_MAX_MSGS */
  maxQueue?: number
  /** messages and soft byte size per frame; defaults MAX_RAFT_BATCH_MSGS / MAX_RAFT_BATCH_BYTES */
  maxBatchMsgs?: number
  maxBatchBytes?: number
  /** largest frame sent or accepted; default MAX_RAFT_FRAME_BYTES */
  maxFrameBytes?: number
  /** reconnection backoff bounds (ms) */
  reconnectMinMs?: number
  reconnectMaxMs?: number
  /** opening a stream, dial included, gives up after this (ms) */
  dialTimeoutMs?: number
  /** a peer that does not drain a frame within this (ms) gets its stream reset and reconnected */
  writeTimeoutMs?: number
}

export interface PeerStats {
  queued: number
  connected: boolean
  sentMsgs: number
  sentFrames: number
  dropped: number
  failures: number
}

export interface RaftTransport extends Startable {
  readonly protocol: string
  /** Queues messages for their `to` peers and returns at once. */
  send: (msgs: Message[]) => void
  /** Tells the host where a peer can be dialed (merged into the peer store). */
  addPeerAddrs: (peer: string, addrs: Multiaddr[]) => Promise<void>
  /** Forgets a peer: drops its queue and closes its stream (after removal from the cluster). */
  removePeer: (peer: string) => void
  stats: () => Record<string, PeerStats>
}

export function raftTransport (init: RaftTransportInit): (components: NetComponents) => RaftTransport {
  return (components) => new RaftTransportService(components, init)
}

/** Rough encoded size of a message, for cutting batches. */
function approxBytes (m: Message): number {
  let n = 64 + (m.context?.byteLength ?? 0) + (m.snapshot?.data.byteLength ?? 0)
  for (const e of m.entries ?? []) n += 24 + e.data.byteLength
  return n
}

/** Bulk replication is dropped first on overflow: a lost heartbeat or vote costs more time. */
const DROPPABLE_FIRST = new Set(['MsgApp', 'MsgSnap', 'MsgRelayApp', 'MsgRelaySnap'])

class PeerSender {
  readonly queue: Message[] = []
  stream: Stream | null = null
  running = false
  closed = false
  backoffMs: number
  retryAt = 0
  readonly stats: PeerStats = { queued: 0, connected: false, sentMsgs: 0, sentFrames: 0, dropped: 0, failures: 0 }
  private readonly peerId: PeerId

  constructor (readonly id: string, private readonly t: RaftTransportService) {
    this.peerId = peerIdFromString(id)
    this.backoffMs = t.reconnectMinMs
  }

  enqueue (msgs: Message[]): void {
    this.queue.push(...msgs)
    let dropped = 0
    while (this.queue.length > this.t.maxQueue) {
      const i = this.queue.findIndex(m => DROPPABLE_FIRST.has(m.type))
      this.snapshots(this.queue.splice(i >= 0 ? i : 0, 1), false)
      dropped++
    }
    if (dropped > 0) {
      this.stats.dropped += dropped
      this.t.log.warn('raft.queue.overflow', { peer: this.id, dropped })
      this.t.unreachable(this.id)
    }
    if (!this.running) void this.run()
  }

  private async run (): Promise<void> {
    this.running = true
    try {
      while (!this.closed && this.queue.length > 0) {
        const wait = this.retryAt - Date.now()
        if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
        if (this.closed) break
        const stream = this.stream ?? await this.connect()
        if (stream == null) continue
        const batch = this.takeBatch()
        // failpoint raft.transport.send (storage/failpoints.ts): drop, delay or reset, for fault tests
        const fp = failpoint('raft.transport.send')
        if (fp?.action === 'drop') { this.stats.dropped += batch.length; this.snapshots(batch, false); continue }
        if (fp?.action === 'delay') await new Promise(resolve => setTimeout(resolve, fp.arg ?? 0))
        if (fp?.action === 'reset') { this.fail(new Error('connection reset (failpoint raft.transport.send)'), batch.length); continue }
        try {
          await writeFrame(stream, batch, this.t.maxFrameBytes, this.t.writeTimeoutMs)
          this.stats.sentFrames++
          this.stats.sentMsgs += batch.length
          this.snapshots(batch, true)
        } catch (err) {
          this.snapshots(batch, false)
          if (isWireError(err)) {
            // our own batch is too large (a huge snapshot): never retry it, tell Raft
            this.t.log.error('raft.send.refused', { peer: this.id, ...errFields(err) })
            this.t.unreachable(this.id)
            continue
          }
          this.fail(err, batch.length)
        }
      }
    } finally {
      this.running = false
    }
  }

  private async connect (): Promise<Stream | null> {
    try {
      const stream = await this.t.components.connectionManager.openStream(this.peerId, this.t.protocol, {
        signal: AbortSignal.timeout(this.t.dialTimeoutMs)
      })
      stream.addEventListener('close', (evt) => {
        if (this.stream !== stream) return
        // Raft's stream to a peer lives as long as both ends do: closed under us (an error, or the
        // connection below gone, perhaps under a frame already handed over and written only when
        // the turn ended, node/net/coalesce.ts), the peer is unreachable as surely as if a send threw
        if (!this.closed) this.fail(evt.error ?? new Error('the stream to the peer closed (its connection went)'), 0)
        else { this.stream = null; this.stats.connected = false }
      }, { once: true })
      if (this.closed) { stream.abort(new Error('peer removed')); return null }
      this.stream = stream
      this.stats.connected = true
      this.backoffMs = this.t.reconnectMinMs
      this.retryAt = 0
      this.t.log.debug('raft.stream.open', { peer: this.id })
      return stream
    } catch (err) {
      this.fail(err, 0)
      return null
    }
  }

  private snapshots (batch: Message[], ok: boolean): void {
    if (batch.some(m => m.type === 'MsgSnap')) this.t.snapshotStatus(this.id, ok)
  }

  /** A dead stream or failed dial: drop what is queued (stale by the time the peer is back),
   * back off, and let Raft know. */
  private fail (err: unknown, lost: number): void {
    this.stats.failures++
    this.stats.dropped += lost + this.queue.length
    this.snapshots(this.queue, false)
    this.queue.length = 0
    const stream = this.stream
    this.stream = null
    this.stats.connected = false
    stream?.abort(err instanceof Error ? err : new Error(String(err)))
    this.retryAt = Date.now() + this.backoffMs * (0.5 + Math.random() / 2)
    this.backoffMs = Math.min(this.backoffMs * 2, this.t.reconnectMaxMs)
    this.t.log.warn('raft.peer.unreachable', { peer: this.id, ...errFields(err) })
    this.t.unreachable(this.id)
  }

  private takeBatch (): Message[] {
    let n = 0
    let bytes = 0
    while (n < this.queue.length && n < this.t.maxBatchMsgs) {
      const b = approxBytes(this.queue[n])
      if (n > 0 && bytes + b > this.t.maxBatchBytes) break
      bytes += b
      n++
    }
    return this.queue.splice(0, n)
  }

  close (): void {
    this.closed = true
    this.snapshots(this.queue, false)
    this.queue.length = 0
    this.stream?.close().catch(() => this.stream?.abort(new Error('closing')))
    this.stream = null
  }
}

class RaftTransportService implements RaftTransport {
  readonly protocol: string
  readonly maxQueue: number
  readonly maxBatchMsgs: number
  readonly maxBatchBytes: number
  readonly maxFrameBytes: number
  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
  readonly dialTimeoutMs: number
  readonly writeTimeoutMs: number
  readonly log: Logger
  private readonly peers = new Map<string, PeerSender>()
  private readonly inbound = new Set<Stream>()
  private started = false

  constructor (readonly components: NetComponents, private readonly init: RaftTransportInit) {
    this.protocol = init.protocol ?? RAFT_PROTOCOL
    this.maxQueue = init.maxQueue ?? RAFT_QUEUE_MAX_MSGS
    this.maxBatchMsgs = init.maxBatchMsgs ?? MAX_RAFT_BATCH_MSGS
    this.maxBatchBytes = init.maxBatchBytes ?? MAX_RAFT_BATCH_BYTES
    this.maxFrameBytes = init.maxFrameBytes ?? MAX_RAFT_FRAME_BYTES
    this.reconnectMinMs = init.reconnectMinMs ?? RAFT_RECONNECT_MIN_MS
    this.reconnectMaxMs = init.reconnectMaxMs ?? RAFT_RECONNECT_MAX_MS
    this.dialTimeoutMs = init.dialTimeoutMs ?? DIAL_TIMEOUT_MS
    this.writeTimeoutMs = init.writeTimeoutMs ?? WRITE_TIMEOUT_MS
    this.log = init.log ?? createLogger({ component: 'net' })
  }

  readonly [Symbol.toStringTag] = '@blixard/raft-transport'

  async start (): Promise<void> {
    await this.components.registrar.handle(this.protocol, (stream, conn) => { void this.receive(stream, conn) }, {
      maxInboundStreams: 8, maxOutboundStreams: 8
    })
    this.started = true
  }

  async stop (): Promise<void> {
    this.started = false
    await this.components.registrar.unhandle(this.protocol)
    for (const p of this.peers.values()) p.close()
    this.peers.clear()
    for (const s of this.inbound) s.abort(new Error('transport stopped'))
    this.inbound.clear()
  }

  isStarted (): boolean { return this.started }

  send (msgs: Message[]): void {
    if (!this.started) return
    const self = this.components.peerId.toString()
    const byPeer = new Map<string, Message[]>()
    for (const m of msgs) {
      if (m.to === self) { this.log.warn('raft.send.self', { type: m.type }); continue }
      const list = byPeer.get(m.to)
      if (list == null) byPeer.set(m.to, [m])
      else list.push(m)
    }
    for (const [to, list] of byPeer) {
      let p = this.peers.get(to)
      if (p == null) {
        try {
          p = new PeerSender(to, this)
        } catch {
          this.log.error('raft.send.bad-peer-id', { peer: to.slice(0, 128) })
          continue
        }
        this.peers.set(to, p)
      }
      p.enqueue(list)
    }
    // on the wire now: the Ready loop's fsync comes next and blocks the loop (coalesce.ts)
    flushCoalesced()
  }

  async addPeerAddrs (peer: string, addrs: Multiaddr[]): Promise<void> {
    await this.components.peerStore.merge(peerIdFromString(peer), { multiaddrs: addrs })
  }

  removePeer (peer: string): void {
    this.peers.get(peer)?.close()
    this.peers.delete(peer)
  }

  stats (): Record<string, PeerStats> {
    const out: Record<string, PeerStats> = {}
    for (const [id, p] of this.peers) out[id] = { ...p.stats, queued: p.queue.length }
    return out
  }

  unreachable (peer: string): void {
    try { this.init.onUnreachable?.(peer) } catch (err) { this.log.error('raft.callback.failed', errFields(err)) }
  }

  snapshotStatus (peer: string, ok: boolean): void {
    try { this.init.onSnapshotStatus?.(peer, ok) } catch (err) { this.log.error('raft.callback.failed', errFields(err)) }
  }

  private rejected (peer: string, err: BlixardError): void {
    this.log.warn('raft.message.rejected', { peer, ...errFields(err) })
    try { this.init.onRejected?.(peer, err) } catch { /* the callback is for observers only */ }
  }

  /** Inbound stream: frames of message batches from one peer. Anything malformed in the frame
   * itself resets the stream; a malformed or misattributed message is dropped alone. */
  private async receive (stream: Stream, conn: Connection): Promise<void> {
    const remote = conn.remotePeer.toString()
    const self = this.components.peerId.toString()
    this.inbound.add(stream)
    try {
      for await (const frame of readFrames(stream, { maxFrameBytes: this.maxFrameBytes })) {
        let batch: unknown[]
        try {
          batch = validateBatch(frame)
        } catch (err) {
          stream.abort(err as Error)
          throw err
        }
        for (const [i, raw] of batch.entries()) {
          let msg: Message
          try {
            msg = validateMessage(raw, `batch[${i}]`)
          } catch (err) {
            if (isWireError(err)) { this.rejected(remote, err); continue }
            throw err
          }
          if (msg.from !== remote) {
            this.rejected(remote, new BlixardError('BadMessage', `batch[${i}].from '${msg.from}' is not the sending peer`))
            continue
          }
          if (msg.to !== self) {
            this.rejected(remote, new BlixardError('BadMessage', `batch[${i}].to '${msg.to}' is not this node`))
            continue
          }
          try {
            this.init.onMessage(remote, msg)
          } catch (err) {
            this.log.error('raft.onMessage.failed', { peer: remote, ...errFields(err) })
          }
        }
      }
      await stream.close().catch(() => {})
    } catch (err) {
      if (isWireError(err)) this.rejected(remote, err)
      else this.log.debug('raft.stream.closed', { peer: remote, ...errFields(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.inbound.delete(stream)
    }
  }
}
