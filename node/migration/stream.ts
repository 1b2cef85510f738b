// The migration's stream between two hosts (`/blixard/migrate/1`), in one of two transports the
// source names in its header:
//   tls    — the stream is the control handshake only: the target answers with a fresh key and the
//            address its QEMU listens on, and QEMU migrates over its own TCP with TLS (node/migration/tls.ts).
//            The default: no daemon copies the guest's memory.
//   stream — the stream carries the bytes QEMU's `migrate` writes on the source to the QEMU waiting
//            with `-incoming` on the target (bridge() below); kept for hosts whose QEMU lacks TLS.
// The stream inherits what every Blixard connection has: the cluster key (pnet) keeps outsiders
// off, Noise authenticates both node identities and encrypts. QEMU itself only ever talks to a
// local unix socket, so no plaintext migration port exists on the LAN.
//
// Wire: the opener sends a header {id, window, transport}, the target answers {ok, window} (stream),
// {ok, tls: TlsOffer} (tls) or {ok:false, reason}. A tls stream then stays open, idle, for as long
// as the source's QEMU migrates: it ends when the source closes it, and when it breaks first (the
// target daemon died) the source cancels, as a broken data stream would have made it
// (window: the bytes each side lets the other have in flight toward it); after an ok
// the stream is raw migration bytes, both ways (QEMU's return path, when enabled, flows back).
// Headers are a 2-byte big-endian length and UTF-8 JSON; after them, DATA and CREDIT frames (bridge()).
//
// Backpressure: credit-based (each receiver's announced window, BRIDGE_WINDOW_BYTES by default): a slow target QEMU stops the source's reads
// from its socket, so QEMU's write() blocks; nothing buffers without bound.
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import type { AbortOptions, PeerId, Stream, Connection } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { parseTlsOffer } from './tls.ts'
import type { TlsOffer } from './tls.ts'
import { SubsystemError } from '../../protocols/errors.ts'

export const MIGRATE_PROTOCOL = '/blixard/migrate/1'
/** a header is a migration id and a reason: anything longer is not ours */
export const MAX_HEADER_BYTES = 1024
/** from stream open to an answered header */
export const HANDSHAKE_TIMEOUT_MS = 10_000
/** a migration that moves no byte for this long is dead (QEMU sends continuously until it ends) */
export const MIGRATION_STREAM_IDLE_MS = 60_000
/** how long the target waits for the source to open the stream */
export const EXPECT_TIMEOUT_MS = 60_000
/** concurrent inbound migration streams a node serves (each is a whole VM's memory) */
export const MAX_INBOUND_MIGRATIONS = 4
/** tls: how long the source waits for the target's offer, which waits for its QEMU to listen
 * (a QEMU start and four QMP commands: seconds on a loaded host) */
export const TLS_OFFER_WAIT_MS = 30_000
/** how the guest's memory travels: QEMU's TLS straight between the QEMUs, or through this stream */
export type MigrationTransport = 'tls' | 'stream'
/** tls: the control stream is idle while QEMU migrates; it may stay so this long (a whole move) */
export const CONTROL_STREAM_IDLE_MS = 10 * 60_000
const ID = /^[A-Za-z0-9_.:-]{1,128}$/

export type MigrationStreamErrorKind = 'Refused' | 'Protocol' | 'Timeout' | 'Transport'
/** each kind as the RPC boundary answers it (protocols/errors.ts toBlixError) */
const MIGRATION_STREAM_PROTOCOL_KIND = { Refused: 'Unauthorized', Protocol: 'BadMessage', Timeout: 'Timeout', Transport: 'Unavailable' } as const

export class MigrationStreamError extends SubsystemError<MigrationStreamErrorKind> {
  constructor (kind: MigrationStreamErrorKind, message: string) {
    super(kind, message, MIGRATION_STREAM_PROTOCOL_KIND[kind])
    this.name = 'MigrationStreamError'
  }
}

export interface BridgeStats {
  /** bytes from the local QEMU into the stream */
  sentBytes: number
  /** bytes from the stream into the local QEMU */
  receivedBytes: number
  /** times a full buffer paused one side (socket or stream) */
  pauses: number
  durationMs: number
  /** when things happened (Date.now(), ms since the epoch: comparable across the daemons of one
   * machine, and between hosts as far as their clocks agree), for the migration's timeline log */
  times: BridgeTimes
}

/** Moments of one side of a migration stream; absent ones did not happen (yet). */
export interface BridgeTimes {
  /** source: the QEMU connected to the listen socket */
  qemuConnected?: number
  /** source: the stream opened and its header sent; target: the header arrived */
  streamOpened?: number
  /** source: the target's ok arrived; target: its QEMU's incoming socket connected and ok sent */
  answered?: number
  /** the bridge started copying */
  bridging?: number
  /** the first byte from the local QEMU (source) or into it (target) */
  firstByte?: number
  /** both directions ended */
  ended?: number
}

/** The source's side of a tls handshake: the target's offer, and the control stream kept open while
 * QEMU migrates. */
export interface TlsHandshake {
  offer: TlsOffer
  times: BridgeTimes
  /** why the stream ended before end() (the target daemon went away), or null while it is open */
  lost: () => string | null
  /** closes the stream: the move is over */
  end: () => Promise<void>
}

/** What MigrationStreams needs of a libp2p node (a BlixardHost has it). */
export interface MigrationHost {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void, options?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  dialProtocol: (peer: PeerId, protocol: string, options?: AbortOptions) => Promise<Stream>
}

export interface ExpectOptions {
  /** the migration this stream is for (the Raft migration record's id, later) */
  id: string
  /** who may open it: the source named by the caller; anyone else is refused */
  allow: (peer: PeerId) => boolean
  /** stream transport: the unix socket the target QEMU listens on (`-incoming unix:PATH`) */
  targetSocket?: string
  /** tls transport (instead of targetSocket): what to answer the source with, once the target
   * QEMU listens; the stream then ends, the migration goes QEMU to QEMU */
  offer?: () => Promise<TlsOffer>
  /** how long to keep trying that socket while it is absent or refuses (a QEMU still starting:
   * the target may say ready before its QEMU listens, so the two overlap); default 0: one try */
  connectWaitMs?: number
  timeoutMs?: number
  /** bytes the source may have in flight toward this target (announced to it; default BRIDGE_WINDOW_BYTES) */
  windowBytes?: number
}

export interface SendOptions {
  id: string
  /** the target node; Noise proves the stream reaches that identity */
  peer: PeerId
  /** where to listen for the source QEMU (`migrate unix:PATH`); removed when done */
  listenSocket: string
  handshakeTimeoutMs?: number
  /** how long to wait for the source QEMU to connect (default EXPECT_TIMEOUT_MS) */
  acceptTimeoutMs?: number
  /** bytes the target may have in flight back toward this source (QEMU's return path; default BRIDGE_WINDOW_BYTES) */
  windowBytes?: number
  /** DATA frame payload toward the target (BridgeOptions.framePayloadBytes): for measuring only */
  framePayloadBytes?: number
}

interface Expected {
  opts: ExpectOptions
  resolve: (s: BridgeStats) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

function encodeHeader (v: Record<string, unknown>): Uint8Array {
  const body = Buffer.from(JSON.stringify(v), 'utf8')
  if (body.length > MAX_HEADER_BYTES) throw new MigrationStreamError('Protocol', `header of ${body.length} bytes exceeds ${MAX_HEADER_BYTES}`)
  const out = Buffer.alloc(2 + body.length)
  out.writeUInt16BE(body.length, 0)
  body.copy(out, 2)
  return out
}

function chunksOf (d: Uint8Array | Uint8ArrayList): Uint8Array[] {
  return d instanceof Uint8Array ? [d] : [...d]
}

/** Reads one header; the stream is left paused with any bytes after it returned as `rest`. */
async function readHeader (stream: Stream, timeoutMs: number): Promise<{ value: Record<string, unknown>, rest: Buffer }> {
  return await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const done = (err: Error | null, v?: { value: Record<string, unknown>, rest: Buffer }): void => {
      clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', onClose)
      if (err != null) reject(err); else resolve(v as { value: Record<string, unknown>, rest: Buffer })
    }
    const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
      buf = Buffer.concat([buf, ...chunksOf(evt.data)])
      if (buf.length < 2) return
      const len = buf.readUInt16BE(0)
      if (len > MAX_HEADER_BYTES) { done(new MigrationStreamError('Protocol', `header declares ${len} bytes, more than ${MAX_HEADER_BYTES}`)); return }
      if (buf.length < 2 + len) return
      // no more 'message' events until the bridge listens: nothing is emitted into the void
      stream.pause()
      let value: unknown
      try { value = JSON.parse(buf.subarray(2, 2 + len).toString('utf8')) } catch { value = null }
      if (value == null || typeof value !== 'object' || Array.isArray(value)) { done(new MigrationStreamError('Protocol', 'header is not a JSON object')); return }
      done(null, { value: value as Record<string, unknown>, rest: buf.subarray(2 + len) })
    }
    const onClose = (): void => { done(new MigrationStreamError('Transport', 'stream closed before its header')) }
    const timer = setTimeout(() => { done(new MigrationStreamError('Timeout', `no header within ${timeoutMs} ms`)) }, timeoutMs)
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', onClose)
    if (stream.readStatus === 'paused') stream.resume()
  })
}

/** Bytes a sender may have in flight before the receiver's QEMU has taken them, unless the
 * receiver announces another window (BridgeOptions.windowBytes). Credit-based because pausing a
 * yamux stream does not stop the remote (libp2p 3 keeps granting window and the paused read buffer
 * overflows), so the bridge carries its own flow control. 16 MiB, not 4: with both event loops
 * busy a credit round trip is long, and bench:migrate moved 128 MiB in fewer pauses and less CPU
 * per MiB with it (same run, 2-core host); it stays under STREAM_READ_BUFFER_BYTES. */
export const BRIDGE_WINDOW_BYTES = 16 * 1024 * 1024
/** the smallest and largest window a peer may announce: below, the bridge crawls; above, one
 * migration could make its receiver hold more than its QEMU socket and read buffer ever need */
export const MIN_BRIDGE_WINDOW_BYTES = 256 * 1024
export const MAX_BRIDGE_WINDOW_BYTES = 64 * 1024 * 1024
/** the receiver returns credit in pieces of at least window / CREDIT_PARTS, not per chunk */
const CREDIT_PARTS = 4
/** one DATA frame's payload; a socket chunk larger than this is split */
const MAX_DATA_FRAME = 256 * 1024
const DATA = 0
const CREDIT = 1
const FRAME_HEAD = 5
/** Noise carries at most 65535 bytes per message, 16 of them its tag; yamux adds a 12-byte header.
 * A DATA frame of this payload is one yamux frame in exactly one Noise message: a 64 KiB frame
 * would need two (65519 bytes and a 29-byte tail), each with its own cipher call, pnet pass and
 * socket write, so the sender cuts QEMU's bytes at this size, not at the socket's reads. */
const WIRE_PAYLOAD = 65535 - 16 - 12 - FRAME_HEAD

export interface BridgeOptions {
  /** how many bytes this side lets its peer have in flight toward it (default BRIDGE_WINDOW_BYTES) */
  recvWindowBytes?: number
  /** the window the peer announced: what this side may send unacknowledged (default BRIDGE_WINDOW_BYTES) */
  sendWindowBytes?: number
  /** DATA payload this side sends (default WIRE_PAYLOAD; 1..MAX_DATA_FRAME): for measuring only */
  framePayloadBytes?: number
  /** what happened before the bridge (BridgeStats.times) */
  times?: BridgeTimes
}

function frameHead (type: number, len: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEAD)
  h.writeUInt8(type, 0)
  h.writeUInt32BE(len, 1)
  return h
}

function creditFrame (n: number): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEAD + 4)
  f.writeUInt8(CREDIT, 0)
  f.writeUInt32BE(4, 1)
  f.writeUInt32BE(n, FRAME_HEAD)
  return f
}

/** A window announced in a header, checked: a peer's number bounds what we buffer for it. */
export function announcedWindow (v: unknown): number {
  if (v == null) return BRIDGE_WINDOW_BYTES
  if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_BRIDGE_WINDOW_BYTES || v > MAX_BRIDGE_WINDOW_BYTES) {
    throw new MigrationStreamError('Protocol', `window must be an integer ${MIN_BRIDGE_WINDOW_BYTES}..${MAX_BRIDGE_WINDOW_BYTES}: ${JSON.stringify(v)}`)
  }
  return v
}

/** Bytes received from the stream, parsed in place: frames are cut out as views, never concatenated
 * (the payload goes to the socket as the very buffers the stream delivered). */
class Inbox {
  private chunks: Buffer[] = []
  length = 0
  push (c: Uint8Array): void {
    if (c.byteLength === 0) return
    this.chunks.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength))
    this.length += c.byteLength
  }

  /** the first n bytes (n is a frame head: small), not consumed */
  peek (n: number): Buffer {
    const first = this.chunks[0]
    if (first.length >= n) return first
    return Buffer.concat(this.chunks, Math.min(this.length, n))
  }

  /** removes n bytes from the front, as views into the received buffers */
  take (n: number): Buffer[] {
    const out: Buffer[] = []
    while (n > 0) {
      const c = this.chunks[0]
      if (c.length <= n) { out.push(c); this.chunks.shift(); n -= c.length; this.length -= c.length } else {
        out.push(c.subarray(0, n)); this.chunks[0] = c.subarray(n); this.length -= n; n = 0
      }
    }
    return out
  }
}

/**
 * Copies bytes both ways between a libp2p stream and a local socket until both have ended.
 * Each direction is DATA frames under a credit window: a sender stops reading its socket (so
 * QEMU's write() blocks) when its peer's window is unacknowledged; the receiver grants credit
 * back only once its socket has flushed the bytes to QEMU. `first` is what the stream already delivered.
 */
export async function bridge (stream: Stream, socket: Socket, first: Uint8Array = new Uint8Array(0), opts: BridgeOptions = {}): Promise<BridgeStats> {
  const t0 = performance.now()
  const recvWindow = announcedWindow(opts.recvWindowBytes)
  const creditStep = recvWindow / CREDIT_PARTS
  const framePayload = opts.framePayloadBytes ?? WIRE_PAYLOAD
  if (!Number.isInteger(framePayload) || framePayload < 1 || framePayload > MAX_DATA_FRAME) throw new MigrationStreamError('Protocol', `framePayloadBytes must be 1..${MAX_DATA_FRAME}: ${framePayload}`)
  const stats: BridgeStats = { sentBytes: 0, receivedBytes: 0, pauses: 0, durationMs: 0, times: { ...opts.times, bridging: Date.now() } }
  stream.inactivityTimeout = MIGRATION_STREAM_IDLE_MS
  return await new Promise<BridgeStats>((resolve, reject) => {
    let failed: Error | null = null
    let socketClosed = false
    let streamClosed = false
    let credit = announcedWindow(opts.sendWindowBytes) // what we may still send
    let owed = 0 // flushed to our socket, not yet granted back
    let inFlight = 0 // received from the peer, not yet flushed (bounded by the peer's credit)
    const inbox = new Inbox()
    let waitingCredit = false
    let drainWaiting = false
    /** resume reading the socket once the stream drained (and credit allows); one waiter at a time */
    const resumeAfterDrain = (): void => {
      if (drainWaiting) return
      drainWaiting = true
      stream.onDrain().then(() => { drainWaiting = false; if (failed == null && !waitingCredit) socket.resume() }, (e: Error) => { drainWaiting = false; fail(new MigrationStreamError('Transport', `stream drain: ${e.message}`)) })
    }
    const settle = (): void => {
      if (failed != null) return
      if (socketClosed && streamClosed) { stats.durationMs = performance.now() - t0; stats.times.ended = Date.now(); resolve(stats) }
    }
    const fail = (err: Error): void => {
      if (failed != null) return
      failed = err
      if (stream.status === 'open' || stream.status === 'closing') stream.abort(err)
      socket.destroy()
      reject(err)
    }
    const send = (b: Uint8Array | Uint8ArrayList): void => {
      let ok: boolean
      try { ok = stream.send(b) } catch (e) { fail(new MigrationStreamError('Transport', `stream send: ${(e as Error).message}`)); return }
      if (!ok) {
        // also when the socket is already paused for credit: the credit may come back while the
        // stream is still full, and then only the drain may resume it (two migrations sharing one
        // connection stalled for good without this)
        if (!socket.isPaused()) { stats.pauses++; socket.pause() }
        resumeAfterDrain()
      }
    }
    const onFrames = (chunk: Uint8Array): void => {
      inbox.push(chunk)
      while (inbox.length >= FRAME_HEAD && failed == null) {
        const head = inbox.peek(FRAME_HEAD)
        const type = head.readUInt8(0)
        const len = head.readUInt32BE(1)
        if (type === DATA && len > MAX_DATA_FRAME) { fail(new MigrationStreamError('Protocol', `DATA frame of ${len} bytes exceeds ${MAX_DATA_FRAME}`)); return }
        if (type === CREDIT && len !== 4) { fail(new MigrationStreamError('Protocol', `CREDIT frame of ${len} bytes`)); return }
        if (type !== DATA && type !== CREDIT) { fail(new MigrationStreamError('Protocol', `unknown frame type ${type}`)); return }
        if (inbox.length < FRAME_HEAD + len) return
        if (type === CREDIT) {
          credit += inbox.peek(FRAME_HEAD + 4).readUInt32BE(FRAME_HEAD)
          inbox.take(FRAME_HEAD + 4)
          if (waitingCredit && credit > 0) { waitingCredit = false; if (!stream.writableNeedsDrain) socket.resume(); else resumeAfterDrain() }
          continue
        }
        inbox.take(FRAME_HEAD)
        const parts = inbox.take(len)
        if (stats.receivedBytes === 0) stats.times.firstByte ??= Date.now()
        stats.receivedBytes += len
        inFlight += len
        if (inFlight > recvWindow + MAX_DATA_FRAME) { fail(new MigrationStreamError('Protocol', `peer sent ${inFlight} bytes beyond its credit`)); return }
        for (let i = 0; i < parts.length - 1; i++) socket.write(parts[i])
        socket.write(parts[parts.length - 1] ?? Buffer.alloc(0), () => {
          inFlight -= len
          owed += len
          if (owed >= creditStep && failed == null && stream.status === 'open') {
            send(creditFrame(owed))
            owed = 0
          }
        })
      }
    }
    if (first.byteLength > 0) onFrames(first)
    stream.addEventListener('message', (evt) => { for (const c of chunksOf(evt.data)) onFrames(c) })
    stream.addEventListener('remoteCloseWrite', () => { socket.end() })
    stream.addEventListener('close', (evt) => {
      streamClosed = true
      const err = (evt as Event & { error?: Error }).error
      if (err != null) fail(new MigrationStreamError('Transport', `migration stream ended: ${err.message}`))
      else { if (!socket.writableEnded) socket.end(); settle() }
    })
    // bytes read from QEMU not yet framed: full WIRE_PAYLOAD frames go at once, a shorter tail
    // waits for the next read of the same turn (setImmediate), so reads of any size pack into whole frames
    const outbox = new Inbox()
    let flushScheduled = false
    const emit = (n: number): void => {
      credit -= n
      // head and payload views as one list: yamux frames them without a copy here
      send(new Uint8ArrayList(frameHead(DATA, n), ...outbox.take(n)))
    }
    const flushTail = (): void => {
      flushScheduled = false
      if (failed == null && outbox.length > 0 && stream.writeStatus === 'writable') emit(outbox.length)
    }
    socket.on('data', (d: Buffer) => {
      if (stats.sentBytes === 0) stats.times.firstByte ??= Date.now()
      stats.sentBytes += d.byteLength
      outbox.push(d)
      while (outbox.length >= framePayload && failed == null) emit(framePayload)
      if (outbox.length > 0 && !flushScheduled) { flushScheduled = true; setImmediate(flushTail) }
      // one read of overdraft at most: the receiver allows its window + MAX_DATA_FRAME
      if (credit <= 0 && !waitingCredit) { waitingCredit = true; stats.pauses++; socket.pause() }
    })
    socket.on('end', () => {
      flushTail()
      stream.close().catch((e: Error) => { fail(new MigrationStreamError('Transport', `stream close: ${e.message}`)) })
    })
    socket.on('error', (e) => { fail(new MigrationStreamError('Transport', `local QEMU socket: ${e.message}`)) })
    socket.on('close', () => { socketClosed = true; settle() })
    if (stream.readStatus === 'paused') stream.resume()
    socket.resume() // accepted with pauseOnConnect: no byte read before the stream was ready
  })
}

/**
 * Both ends of migration streams on one node: `expect` on the target (the stream is accepted only
 * from a peer `allow` names, for a migration id it expects), `send` on the source.
 */
export class MigrationStreams {
  private readonly expected = new Map<string, Expected>()
  private started = false

  constructor (private readonly host: MigrationHost) {}

  async start (): Promise<void> {
    if (this.started) return
    await this.host.handle(MIGRATE_PROTOCOL, (stream, conn) => { void this.onStream(stream, conn) }, { maxInboundStreams: MAX_INBOUND_MIGRATIONS })
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.host.unhandle(MIGRATE_PROTOCOL)
    for (const [id, e] of this.expected) { clearTimeout(e.timer); e.reject(new MigrationStreamError('Transport', `migration ${id}: node stopping`)) }
    this.expected.clear()
  }

  /** Target side: resolves when the allowed source's stream has been bridged into the target QEMU and ended. */
  async expect (opts: ExpectOptions): Promise<BridgeStats> {
    if (!ID.test(opts.id)) throw new MigrationStreamError('Protocol', `migration id must match ${ID.source}: ${JSON.stringify(opts.id)}`)
    announcedWindow(opts.windowBytes)
    if ((opts.targetSocket == null) === (opts.offer == null)) throw new MigrationStreamError('Protocol', `migration ${opts.id}: expect either a target socket (stream) or an offer (tls)`)
    if (this.expected.has(opts.id)) throw new MigrationStreamError('Protocol', `migration ${opts.id} is already expected`)
    const timeoutMs = opts.timeoutMs ?? EXPECT_TIMEOUT_MS
    return await new Promise<BridgeStats>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.expected.delete(opts.id)
        reject(new MigrationStreamError('Timeout', `migration ${opts.id}: no stream from the source within ${timeoutMs} ms`))
      }, timeoutMs)
      this.expected.set(opts.id, { opts, resolve, reject, timer })
    })
  }

  private async onStream (stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer
    let header
    try {
      header = await readHeader(stream, HANDSHAKE_TIMEOUT_MS)
    } catch (e) {
      stream.abort(e as Error)
      return
    }
    const streamOpened = Date.now()
    const id = header.value.id
    const e = typeof id === 'string' ? this.expected.get(id) : undefined
    // a peer not allowed (or a migration nobody expects) is refused without consuming the
    // expectation: a stranger cannot block the real source
    let reason: string | null = null
    if (e == null) reason = `no migration ${JSON.stringify(id)} is expected here`
    else {
      let allowed = false
      try { allowed = e.opts.allow(peer) } catch { allowed = false }
      if (!allowed) reason = `peer ${peer.toString()} may not open migration ${String(id)}`
    }
    let sendWindow = BRIDGE_WINDOW_BYTES
    // the transport the source asked for must be the one this target prepared (a header without
    // one is from a source that only knows the stream)
    const asked = header.value.transport ?? 'stream'
    const prepared: MigrationTransport | null = e == null ? null : e.opts.offer != null ? 'tls' : 'stream'
    if (reason == null && asked !== prepared) reason = `the source asked for transport ${JSON.stringify(asked)}; this target prepared ${String(prepared)}`
    if (reason == null && prepared === 'stream') {
      try { sendWindow = announcedWindow(header.value.window) } catch (err) { reason = (err as Error).message }
    }
    if (reason != null || e == null) {
      try { stream.send(encodeHeader({ ok: false, reason })); await stream.close({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) }) } catch (err) { stream.abort(err as Error) }
      return
    }
    this.expected.delete(e.opts.id)
    clearTimeout(e.timer)
    if (e.opts.offer != null) { await this.answerTls(stream, e, streamOpened); return }
    let socket: Socket
    try {
      socket = await connectUnix(e.opts.targetSocket ?? '', e.opts.connectWaitMs ?? 0)
    } catch (err) {
      const msg = `target QEMU socket ${e.opts.targetSocket}: ${(err as Error).message}`
      try { stream.send(encodeHeader({ ok: false, reason: msg })); await stream.close() } catch { stream.abort(new Error(msg)) }
      e.reject(new MigrationStreamError('Transport', msg))
      return
    }
    const recvWindow = announcedWindow(e.opts.windowBytes)
    stream.send(encodeHeader({ ok: true, window: recvWindow }))
    bridge(stream, socket, header.rest, { recvWindowBytes: recvWindow, sendWindowBytes: sendWindow, times: { streamOpened, answered: Date.now() } }).then(e.resolve, e.reject)
  }

  /** tls: the target's answer, once its QEMU listens (or why it cannot); then the stream ends. */
  private async answerTls (stream: Stream, e: Expected, streamOpened: number): Promise<void> {
    let offer: TlsOffer
    try {
      offer = await (e.opts.offer as () => Promise<TlsOffer>)()
    } catch (err) {
      const msg = `target QEMU not listening for the migration: ${(err as Error).message}`
      try { stream.send(encodeHeader({ ok: false, reason: msg })); await stream.close({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) }) } catch { stream.abort(new Error(msg)) }
      e.reject(new MigrationStreamError('Transport', msg))
      return
    }
    try {
      stream.inactivityTimeout = CONTROL_STREAM_IDLE_MS
      // open until the source closes it at the end of its move (or this node goes)
      stream.addEventListener('remoteCloseWrite', () => { stream.close().catch((err: Error) => { stream.abort(err) }) })
      if (stream.readStatus === 'paused') stream.resume()
      stream.send(encodeHeader({ ok: true, tls: offer }))
    } catch (err) {
      stream.abort(err as Error)
      e.reject(new MigrationStreamError('Transport', `answering the source: ${(err as Error).message}`))
      return
    }
    const answered = Date.now()
    e.resolve({ sentBytes: 0, receivedBytes: 0, pauses: 0, durationMs: answered - streamOpened, times: { streamOpened, answered } })
  }

  /** Opens the stream to `peer`, sends `header` and reads the target's answer (both transports
   * start so): the stream and that answer, or Transport when it cannot open, Refused when the target
   * says no. Stamps `times` when the stream opened and when the answer came. */
  private async ask (peer: PeerId, id: string, header: Record<string, unknown>, openMs: number, answerMs: number, times: BridgeTimes): Promise<{ stream: Stream, answer: Awaited<ReturnType<typeof readHeader>> }> {
    let stream: Stream
    try {
      stream = await this.host.dialProtocol(peer, MIGRATE_PROTOCOL, { signal: AbortSignal.timeout(openMs) })
    } catch (err) {
      throw new MigrationStreamError('Transport', `open ${MIGRATE_PROTOCOL} to ${peer.toString()}: ${(err as Error).message}`)
    }
    stream.send(encodeHeader(header))
    times.streamOpened = Date.now()
    let answer
    try { answer = await readHeader(stream, answerMs) } catch (err) { stream.abort(err as Error); throw err }
    times.answered = Date.now()
    if (answer.value.ok !== true) {
      stream.abort(new Error('refused'))
      throw new MigrationStreamError('Refused', `${peer.toString()} refused migration ${id}: ${String(answer.value.reason ?? 'no reason given')}`)
    }
    return { stream, answer }
  }

  /**
   * Source side of the tls transport: opens the stream to the target, asks for migration `id` and
   * returns the target's offer (its QEMU's address and the key), checked; the stream then ends.
   * Refused when the target says no; Noise proved the answer comes from `peer`.
   */
  async handshakeTls (opts: { id: string, peer: PeerId, timeoutMs?: number }): Promise<TlsHandshake> {
    if (!ID.test(opts.id)) throw new MigrationStreamError('Protocol', `migration id must match ${ID.source}: ${JSON.stringify(opts.id)}`)
    const timeoutMs = opts.timeoutMs ?? TLS_OFFER_WAIT_MS
    const times: BridgeTimes = {}
    const { stream, answer } = await this.ask(opts.peer, opts.id, { id: opts.id, transport: 'tls' }, HANDSHAKE_TIMEOUT_MS, timeoutMs, times)
    let offer: TlsOffer
    try { offer = parseTlsOffer(answer.value.tls) } catch (err) {
      stream.abort(err as Error)
      throw new MigrationStreamError('Protocol', `${opts.peer.toString()} answered migration ${opts.id} with a bad offer: ${(err as Error).message}`)
    }
    // the stream stays open while QEMU migrates: its end before end() is the target going away
    stream.inactivityTimeout = CONTROL_STREAM_IDLE_MS
    let ending = false
    let lostReason: string | null = null
    const gone = (why: string): void => { if (!ending && lostReason == null) lostReason = why }
    stream.addEventListener('close', (evt) => { const err = (evt as Event & { error?: Error }).error; gone(`the control stream to the target ended${err != null ? `: ${err.message}` : ''}`) })
    stream.addEventListener('remoteCloseWrite', () => { gone('the target closed the control stream') })
    if (stream.readStatus === 'paused') stream.resume()
    return {
      offer,
      times,
      lost: () => lostReason,
      end: async () => {
        ending = true
        await stream.close({ signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) }).catch(() => { stream.abort(new Error('close timed out')) })
      }
    }
  }

  /**
   * Source side: listens on `listenSocket` for the source QEMU's one connection, opens the stream to
   * the target and bridges them. Resolves once listening (start `migrate` after that) with `done`,
   * which settles when the bytes have all moved, or rejects (Refused when the target said no).
   */
  async send (opts: SendOptions): Promise<{ done: Promise<BridgeStats> }> {
    if (!ID.test(opts.id)) throw new MigrationStreamError('Protocol', `migration id must match ${ID.source}: ${JSON.stringify(opts.id)}`)
    const recvWindow = announcedWindow(opts.windowBytes)
    await rm(opts.listenSocket, { force: true })
    const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true })
    const acceptMs = opts.acceptTimeoutMs ?? EXPECT_TIMEOUT_MS
    const first = new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        server.close()
        reject(new MigrationStreamError('Timeout', `migration ${opts.id}: the source QEMU did not connect to ${opts.listenSocket} within ${acceptMs} ms`))
      }, acceptMs)
      server.once('connection', (s) => {
        // one migration, one connection: nobody else gets to connect later
        clearTimeout(timer)
        server.close()
        resolve(s)
      })
      timer.unref()
      server.once('error', (e) => { clearTimeout(timer); reject(e) })
    })
    first.catch(() => {}) // read by `done`, which may have settled on a failed open already
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(opts.listenSocket, () => { server.off('error', reject); resolve() }) })
    const times: BridgeTimes = {}
    // the stream opens now, while the caller tells QEMU to migrate and QEMU connects: its
    // handshake (a round trip to the target) is then not part of the migration's time
    const opened = (async (): Promise<{ stream: Stream, sendWindow: number, rest: Buffer }> => {
      const timeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS
      const { stream, answer } = await this.ask(opts.peer, opts.id, { id: opts.id, window: recvWindow, transport: 'stream' }, timeoutMs, timeoutMs, times)
      let sendWindow: number
      try { sendWindow = announcedWindow(answer.value.window) } catch (err) { stream.abort(err as Error); throw err }
      return { stream, sendWindow, rest: answer.rest }
    })()
    // a refused or failed open: nobody may connect any more (QEMU's migrate then fails at once)
    opened.catch(() => { server.close() })
    const done = (async (): Promise<BridgeStats> => {
      let socket: Socket
      try {
        socket = await Promise.race([first, opened.then(async () => await new Promise<never>(() => {}))])
      } catch (err) {
        await rm(opts.listenSocket, { force: true })
        void opened.then(({ stream }) => { stream.abort(err as Error) }, () => {})
        throw err
      }
      times.qemuConnected = Date.now()
      try {
        const { stream, sendWindow, rest } = await opened
        return await bridge(stream, socket, rest, { recvWindowBytes: recvWindow, sendWindowBytes: sendWindow, framePayloadBytes: opts.framePayloadBytes, times })
      } catch (err) {
        socket.destroy() // QEMU's migrate then fails and the source keeps running the guest
        throw err
      } finally {
        await rm(opts.listenSocket, { force: true })
      }
    })()
    done.catch(() => {}) // the caller reads it; never an unhandled rejection meanwhile
    return { done }
  }
}

/** How often a socket that is not there yet is tried again (connectUnix). */
const CONNECT_RETRY_MS = 5

async function connectUnix (path: string, waitMs = 0): Promise<Socket> {
  const deadline = Date.now() + waitMs
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection({ path, allowHalfOpen: true })
        s.once('connect', () => { s.off('error', reject); resolve(s) })
        s.once('error', reject)
      })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() + CONNECT_RETRY_MS > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS))
    }
  }
}
