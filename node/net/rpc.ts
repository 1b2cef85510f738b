// RPC over libp2p: `rpcServer({ handlers })` serves /blixard/rpc/1, `RpcClient` calls it over one
// long-lived stream. Requests are pipelined (ids match answers to calls, answers come back in
// completion order), bounded in flight on both sides, and schema-checked on the server before a
// handler runs. `vm.watch` answers with a stream of results until cancelled.
import type { AbortOptions, Connection, PeerId, Startable, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import {
  METHODS, RPC_PROTOCOL, checkParams, isMethod, validateClientFrame, validateServerFrame,
  type MethodName, type ParamsOf, type ResultOf, type RpcRequest, type RpcResponse, type StreamingMethodName,
  type UnaryMethodName
} from '../../protocols/rpc.ts'
import { encodeFrame, encodeListFrame } from '../../protocols/framing.ts'
import {
  DIAL_TIMEOUT_MS, MAX_RPC_FRAME_BYTES, RPC_MAX_IN_FLIGHT, RPC_MAX_WATCHES_PER_STREAM, RPC_SERVER_MAX_CONCURRENT,
  RPC_TIMEOUT_MS, WRITE_TIMEOUT_MS, RPC_MAX_IN_FLIGHT_PER_CONNECTION, RPC_MAX_IN_FLIGHT_TOTAL, RPC_MAX_STREAMS_TOTAL, RPC_SERVER_STREAMS_PER_CONNECTION,
  RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION, RPC_QUEUED_ANSWER_BYTES_TOTAL, RPC_SMALL_ANSWER_BYTES
} from '../../protocols/limits.ts'
import { pushable } from 'it-pushable'
import type { NetComponents } from './components.ts'
import { readFrames, writeFrame, writeFrameBytes } from './frame-stream.ts'
import { createLogger, errFields, type Logger } from '../log.ts'
import { BlixardError, isWireError, toBlixError } from '../../protocols/errors.ts'

export { RPC_PROTOCOL }

// ---- server ----

export interface RpcCallContext {
  /** the caller's peer id, authenticated by Noise: use it for the admin check */
  peer: string
  connection: Connection
  method: MethodName
  /** aborted when the caller goes away (or cancels a watch) */
  signal: AbortSignal
}

/** A list answer drawn lazily and encoded item by item under the frame limit (encodeListFrame): a
 * handler returns `new ListAnswer(items, what)` instead of an array, so that a table too big for one
 * answer is refused with TooLarge (naming `what` and how far it got) before it is ever held whole
 * in memory, as records or as bytes. `items` is drawn in one synchronous pass. */
export class ListAnswer<T> {
  constructor (readonly items: Iterable<T>, readonly what: string) {}
}
/** What a unary handler may return for a result of type R: R, or R's items as a ListAnswer. */
export type Answer<R> = R | (R extends Array<infer E> ? ListAnswer<E> : never)

export type UnaryHandler<M extends UnaryMethodName> = (params: ParamsOf<M>, ctx: RpcCallContext) => Promise<Answer<ResultOf<M>>> | Answer<ResultOf<M>>
export type StreamingHandler<M extends StreamingMethodName> = (params: ParamsOf<M>, ctx: RpcCallContext) => AsyncIterable<ResultOf<M>>
export type RpcHandlers =
  & { [M in UnaryMethodName]?: UnaryHandler<M> }
  & { [M in StreamingMethodName]?: StreamingHandler<M> }

export interface RpcServerInit {
  /** protocol id; default RPC_PROTOCOL */
  protocol?: string
  /** the methods this node serves; a missing one answers UnknownMethod */
  handlers: RpcHandlers
  /** called before every mutating method; false answers Unauthorized. Default: allow. */
  authorize?: (peer: string, method: MethodName) => boolean | Promise<boolean>
  log?: Logger
  /** requests handled at once per stream (default RPC_SERVER_MAX_CONCURRENT) */
  maxConcurrent?: number
  /** a different bound for some peers' streams (cluster members forwarding their clients' writes) */
  maxConcurrentFor?: (peer: string) => number | undefined
  /** open watches per stream (default RPC_MAX_WATCHES_PER_STREAM) */
  maxWatches?: number
  /** default MAX_RPC_FRAME_BYTES */
  maxFrameBytes?: number
  /** inbound RPC streams per connection (default 32) */
  maxInboundStreams?: number
  /** called when a bound refuses work: an answer too big for what is already queued for its
   * connection or for all (answer_bytes), a stream over RPC_MAX_STREAMS_TOTAL (streams) */
  onRefused?: (reason: RpcRefusal) => void
}

export type RpcRefusal = 'answer_bytes' | 'streams'

/** What one connection holds on this server: requests being handled, encoded answers not yet taken by yamux. */
interface ConnLoad {
  streams: number
  inflight: number
  queued: number
  /** an answer was refused for bytes: read no more requests until every queued answer is taken */
  refused: boolean
}

export interface RpcServer extends Startable {
  readonly protocol: string
  /** requests answered since start, by outcome */
  stats: () => RpcServerStats
}

export interface RpcServerStats {
  ok: number
  failed: number
  rejectedStreams: number
  /** answers replaced by Unavailable because too many answer bytes waited for their peer(s) */
  refusedAnswers: number
  /** streams reset at once because RPC_MAX_STREAMS_TOTAL were open */
  refusedStreams: number
  /** now: requests being handled, and encoded answer bytes waiting for peers to read them */
  inflight: number
  queuedAnswerBytes: number
  /** now: RPC streams open, connections with streams or requests, and watch generators not yet
   * finished (a watch whose caller left counts until its generator has run its finally) */
  streams: number
  connections: number
  watches: number
}

export function rpcServer (init: RpcServerInit): (components: NetComponents) => RpcServer {
  return (components) => new RpcServerService(components, init)
}

class RpcServerService implements RpcServer {
  readonly protocol: string
  private readonly log: Logger
  private readonly maxConcurrent: number
  private readonly maxWatches: number
  private readonly maxFrameBytes: number
  private readonly open = new Set<Stream>()
  private started = false
  private readonly counts = { ok: 0, failed: 0, rejectedStreams: 0, refusedAnswers: 0, refusedStreams: 0 }
  // per connection and in total (this server): bounded by RPC_MAX_IN_FLIGHT_* and RPC_QUEUED_ANSWER_BYTES_*
  private readonly loads = new Map<string, ConnLoad>()
  private inflightTotal = 0
  private queuedTotal = 0
  private watchesLive = 0
  private waiters: Array<() => void> = []

  constructor (private readonly components: NetComponents, private readonly init: RpcServerInit) {
    this.protocol = init.protocol ?? RPC_PROTOCOL
    this.log = init.log ?? createLogger({ component: 'net' })
    this.maxConcurrent = init.maxConcurrent ?? RPC_SERVER_MAX_CONCURRENT
    this.maxWatches = init.maxWatches ?? RPC_MAX_WATCHES_PER_STREAM
    this.maxFrameBytes = init.maxFrameBytes ?? MAX_RPC_FRAME_BYTES
  }

  readonly [Symbol.toStringTag] = '@blixard/rpc-server'

  async start (): Promise<void> {
    await this.components.registrar.handle(this.protocol, (stream, conn) => { void this.serve(stream, conn) }, {
      maxInboundStreams: this.init.maxInboundStreams ?? RPC_SERVER_STREAMS_PER_CONNECTION
    })
    this.started = true
  }

  async stop (): Promise<void> {
    this.started = false
    await this.components.registrar.unhandle(this.protocol)
    for (const s of this.open) s.abort(new Error('rpc server stopped'))
    this.open.clear()
  }

  isStarted (): boolean { return this.started }
  stats (): RpcServerStats {
    return { ...this.counts, inflight: this.inflightTotal, queuedAnswerBytes: this.queuedTotal, streams: this.open.size, connections: this.loads.size, watches: this.watchesLive }
  }

  /** wakes every read loop waiting for room; each re-checks its own bounds */
  private wake (): void { const w = this.waiters; this.waiters = []; for (const f of w) f() }
  private async room (): Promise<void> { await new Promise<void>(resolve => this.waiters.push(resolve)) }

  private refuse (reason: RpcRefusal): void {
    if (reason === 'streams') this.counts.refusedStreams++
    else this.counts.refusedAnswers++
    try { this.init.onRefused?.(reason) } catch { /* a metric must not break serving */ }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    if (this.open.size >= RPC_MAX_STREAMS_TOTAL) {
      this.refuse('streams')
      this.log.warn('rpc.stream.refused', { peer, reason: `${RPC_MAX_STREAMS_TOTAL} RPC streams open` })
      stream.abort(new Error(`this node has ${RPC_MAX_STREAMS_TOTAL} RPC streams open`))
      return
    }
    const gone = new AbortController()
    const inflight = new Set<Promise<void>>()
    const memberLimit = this.init.maxConcurrentFor?.(peer)
    const limit = memberLimit ?? this.maxConcurrent
    const connLimit = memberLimit ?? RPC_MAX_IN_FLIGHT_PER_CONNECTION
    const load = this.loads.get(connection.id) ?? { streams: 0, inflight: 0, queued: 0, refused: false }
    this.loads.set(connection.id, load)
    load.streams++
    const watches = new Map<number, AbortController>()
    this.open.add(stream)
    // Answers are encoded as soon as they exist and counted until yamux takes them, per connection
    // and in total. One that would cross a bound while others wait is refused (Unavailable, small)
    // rather than held: a peer that does not read cannot make us hold more than the bounds. Small
    // answers always pass (the in-flight caps bound them). A caller that does not drain what we
    // wrote within WRITE_TIMEOUT_MS is dropped rather than holding handlers forever.
    const send = async (res: RpcResponse, encoded?: Uint8Array): Promise<void> => {
      let frame: Uint8Array
      try {
        frame = encoded ?? encodeFrame(res, this.maxFrameBytes)
      } catch (err) {
        if (!(isWireError(err) && err.kind === 'TooLarge')) throw err
        frame = encodeFrame({ id: res.id, ok: false, error: { kind: 'TooLarge', message: `answer too large: ${err.message}` } }, this.maxFrameBytes)
      }
      const n = frame.byteLength
      if (n > RPC_SMALL_ANSWER_BYTES &&
        ((load.queued > 0 && load.queued + n > RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION) ||
         (this.queuedTotal > 0 && this.queuedTotal + n > RPC_QUEUED_ANSWER_BYTES_TOTAL))) {
        this.refuse('answer_bytes')
        load.refused = true
        frame = encodeFrame({
          id: res.id,
          ok: false,
          error: { kind: 'Unavailable', message: `answer of ${n} bytes refused: ${load.queued} bytes of answers wait for this connection to read them (cap ${RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION}), ${this.queuedTotal} for all (cap ${RPC_QUEUED_ANSWER_BYTES_TOTAL}); read your answers, then retry` }
        }, this.maxFrameBytes)
      }
      const held = frame.byteLength
      load.queued += held
      this.queuedTotal += held
      try {
        await writeFrameBytes(stream, frame, WRITE_TIMEOUT_MS)
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err))
        stream.abort(e)
        // a peer that is not a member and leaves our answers unread loses its connection, not only
        // this stream: its other streams' queued requests would each cost a round of answers
        if (memberLimit == null && e.name === 'TimeoutError') {
          this.log.warn('rpc.peer.dropped', { peer, reason: e.message })
          connection.abort(e)
        }
        throw new SendFailed(e)
      } finally {
        load.queued -= held
        this.queuedTotal -= held
        if (load.queued === 0) load.refused = false
        this.wake()
      }
    }
    try {
      for await (const frame of readFrames(stream, { maxFrameBytes: this.maxFrameBytes })) {
        let req
        try {
          req = validateClientFrame(frame)
        } catch (err) {
          stream.abort(err as Error)
          throw err
        }
        if ('cancel' in req) { watches.get(req.id)?.abort(); continue }
        // at a bound, stop reading: frames queue up to readFrames' limit, then the stream pauses.
        // Bounds: this stream's and this connection's requests in flight, all requests in flight,
        // and this connection's answers waiting for it to read them (after a refusal: until none
        // wait, else a peer that never reads gets a fresh batch of answers built each time a
        // partial frame slips into yamux's window).
        while (inflight.size >= limit || load.inflight >= connLimit || this.inflightTotal >= RPC_MAX_IN_FLIGHT_TOTAL ||
          load.queued >= RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION || (load.refused && load.queued > 0)) {
          await this.room()
          if (stream.status !== 'open') throw new Error(`stream ${stream.status} while its requests waited for room`)
        }
        if (stream.status !== 'open') break // reset while its requests waited: nobody to answer
        const ctx: RpcCallContext = { peer, connection, method: req.method as MethodName, signal: gone.signal }
        load.inflight++
        this.inflightTotal++
        const p: Promise<void> = this.handle(req, ctx, send, watches)
          .catch(err => { this.log.debug('rpc.answer.failed', { peer, ...errFields(err) }) })
          .finally(() => {
            inflight.delete(p); load.inflight--; this.inflightTotal--
            if (load.streams === 0 && load.inflight === 0) this.loads.delete(connection.id)
            this.wake()
          })
        inflight.add(p)
      }
      // the caller closed its side: finish the answers still owed, end watches, then close ours
      for (const w of watches.values()) w.abort()
      await Promise.allSettled(inflight)
      await stream.close()
    } catch (err) {
      if (isWireError(err)) {
        this.counts.rejectedStreams++
        this.log.warn('rpc.stream.rejected', { peer, ...errFields(err) })
      } else {
        this.log.debug('rpc.stream.closed', { peer, ...errFields(err) })
      }
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      gone.abort()
      for (const w of watches.values()) w.abort()
      this.open.delete(stream)
      if (--load.streams === 0 && load.inflight === 0) this.loads.delete(connection.id)
      this.wake()
    }
  }

  private async handle (req: RpcRequest, ctx: RpcCallContext, send: (r: RpcResponse, encoded?: Uint8Array) => Promise<void>, watches: Map<number, AbortController>): Promise<void> {
    const { id, method } = req
    try {
      if (!isMethod(method)) throw new BlixardError('UnknownMethod', `unknown method '${method}'`)
      const handler = this.init.handlers[method]
      if (handler == null) throw new BlixardError('UnknownMethod', `method '${method}' is not served by this node`)
      const params = checkParams(method, req.params)
      const spec = METHODS[method]
      if (spec.mutating && this.init.authorize != null && !(await this.init.authorize(ctx.peer, method))) {
        throw new BlixardError('Unauthorized', `${ctx.peer} is not an admin; '${method}' changes the cluster`)
      }
      if (spec.streaming) {
        if (watches.size >= this.maxWatches) throw new BlixardError('Unavailable', `more than ${this.maxWatches} open watches on one stream`)
        const stop = new AbortController()
        const signal = AbortSignal.any([stop.signal, ctx.signal])
        watches.set(id, stop)
        try {
          await this.runWatch(handler as StreamingHandler<StreamingMethodName>, params as ParamsOf<StreamingMethodName>, { ...ctx, signal }, signal,
            async (item) => { await send({ id, ok: true, result: item, more: true }) })
        } finally {
          watches.delete(id)
        }
        if (!ctx.signal.aborted) await send({ id, ok: true, result: null })
      } else {
        const result = await (handler as UnaryHandler<UnaryMethodName>)(params as ParamsOf<UnaryMethodName>, ctx)
        if (result instanceof ListAnswer) {
          // built here, in one pass, under this server's frame limit; past it: ListTooLarge (TooLarge)
          const frame = encodeListFrame({ id, ok: true, result: null }, 'result', result.items as Iterable<unknown>, this.maxFrameBytes, result.what)
          await send({ id, ok: true, result: null }, frame)
        } else {
          await send({ id, ok: true, result })
        }
      }
      this.counts.ok++
    } catch (err) {
      if (err instanceof SendFailed) throw err // the stream is gone: nothing to answer, nothing to log as the handler's
      this.counts.failed++
      const error = toBlixError(err)
      if (error.kind === 'Internal') this.log.error('rpc.handler.failed', { peer: ctx.peer, method, ...errFields(err) })
      if (!ctx.signal.aborted) await send({ id, ok: false, error })
    }
  }

  /** Runs one watch's generator until it ends, its caller cancels or leaves (`signal`), or an item
   * cannot be delivered. On every way out the generator is ended with return(): its finally runs
   * (a subscription's listener is released) as soon as the generator next gets control, and it
   * counts in stats().watches until it has. */
  private async runWatch (handler: StreamingHandler<StreamingMethodName>, params: ParamsOf<StreamingMethodName>, ctx: RpcCallContext,
    signal: AbortSignal, deliver: (item: ResultOf<StreamingMethodName>) => Promise<void>): Promise<void> {
    const it = handler(params, ctx)[Symbol.asyncIterator]()
    this.watchesLive++
    let finished = false
    let returning = false
    const finish = (): void => { if (!finished) { finished = true; this.watchesLive-- } }
    // return() on a generator waiting inside next() is queued behind that next(): it resolves once
    // the generator has actually ended, which is when it stops counting
    const end = (): void => {
      if (finished || returning) return
      returning = true
      if (it.return == null) { finish(); return }
      it.return().then(finish, (err: unknown) => { finish(); this.log.debug('rpc.watch.return.failed', { method: ctx.method, ...errFields(err) }) })
    }
    signal.addEventListener('abort', end, { once: true })
    try {
      for (;;) {
        let next: IteratorResult<ResultOf<StreamingMethodName>> | null
        try {
          next = await nextOrAbort(it, signal)
        } catch (err) {
          finish() // a generator that threw has ended
          throw err
        }
        if (next == null) break
        if (next.done === true) { finish(); break }
        await deliver(next.value)
      }
    } finally {
      signal.removeEventListener('abort', end)
      end()
    }
  }
}

/** The next item of a watch, or null once `signal` aborts, whichever comes first: a handler that
 * does not look at its signal must not keep the server waiting (and its stream's slot held). A
 * next() that settles after the abort is consumed here, so its rejection is never unhandled. */
async function nextOrAbort<T> (it: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T> | null> {
  if (signal.aborted) return null
  const next = it.next()
  return await new Promise<IteratorResult<T> | null>((resolve, reject) => {
    const onAbort = (): void => { resolve(null) }
    signal.addEventListener('abort', onAbort, { once: true })
    next.then(
      (r) => { signal.removeEventListener('abort', onAbort); resolve(r) },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e) })
  })
}

/** Writing an answer failed (peer gone or not reading): not the handler's error. */
class SendFailed extends Error {
  constructor (cause: Error) { super(`answer not delivered: ${cause.message}`, { cause }); this.name = 'SendFailed' }
}

// ---- client ----

/** What the client needs to open its stream: a libp2p node (or anything with dialProtocol). */
export interface StreamDialer {
  dialProtocol: (target: PeerId | Multiaddr | Multiaddr[], protocol: string, options?: AbortOptions) => Promise<Stream>
}

export interface RpcClientOptions {
  protocol?: string
  /** per-request timeout (ms), default RPC_TIMEOUT_MS; Timeout errors name the method */
  timeoutMs?: number
  /** requests in flight before call() waits (default RPC_MAX_IN_FLIGHT) */
  maxInFlight?: number
  maxFrameBytes?: number
  /** opening the stream gives up after this (ms), default DIAL_TIMEOUT_MS */
  dialTimeoutMs?: number
  /** items buffered on a watch the consumer has not read, before the watch is ended (default 1024) */
  maxWatchBacklog?: number
}

export interface CallOptions { timeoutMs?: number, signal?: AbortSignal }

/** A running `watch`: iterate it; `cancel()` (or breaking the loop) tells the server to stop. */
export interface RpcSubscription<T> extends AsyncIterable<T> {
  cancel: () => void
}

interface Pending {
  method: string
  resolve: (v: unknown) => void
  reject: (e: BlixardError) => void
  item?: (v: unknown) => void
}

/** What a failed dial says, never "undefined": libp2p rejects with errors whose message is empty
 * (an AggregateError of every address tried, an abort) or with a value that is not an Error. */
export function dialFailure (err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return [...new Set(err.errors.map(dialFailure))].join('; ')
  if (err instanceof Error) {
    if (err.message !== '') return err.message
    return err.name !== '' && err.name !== 'Error' ? err.name : 'the dial failed without a reason'
  }
  // libp2p rejects some dials with the Event that ended them (an abort, a connection's close),
  // which would print as "[object Event]": say what it was, with its error if it carries one
  if (err instanceof Event) {
    const inner = (err as Event & { error?: unknown }).error
    return inner != null ? dialFailure(inner) : `the connection ended (${err.type} event) before the stream opened`
  }
  return err == null ? 'the dial failed without a reason' : String(err)
}

// what a stream reset before any answer most often means, and what to do about it
const STREAM_REFUSED_HINT = `the node refuses RPC streams past its limits (${RPC_SERVER_STREAMS_PER_CONNECTION} per connection, ${RPC_MAX_STREAMS_TOTAL} in all) or closed the connection; close idle clients or share one stream, then retry`

export class RpcClient {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private inFlight = 0
  private readonly slotWaiters: Array<() => void> = []
  private dead: BlixardError | null = null
  /** has the server sent anything on this stream yet? */
  private answered = false
  private readonly timeoutMs: number
  private readonly maxInFlight: number
  private readonly maxFrameBytes: number
  private readonly maxWatchBacklog: number

  /** Opens one long-lived stream to `target` and returns a client over it. */
  static async connect (dialer: StreamDialer, target: PeerId | Multiaddr | Multiaddr[], opts: RpcClientOptions = {}): Promise<RpcClient> {
    let stream: Stream
    try {
      stream = await dialer.dialProtocol(target, opts.protocol ?? RPC_PROTOCOL, { signal: AbortSignal.timeout(opts.dialTimeoutMs ?? DIAL_TIMEOUT_MS) })
    } catch (err) {
      const why = dialFailure(err)
      throw new BlixardError('Unavailable', `cannot open an RPC stream: ${why}${/reset/i.test(why) ? `: ${STREAM_REFUSED_HINT}` : ''}`)
    }
    return new RpcClient(stream, opts)
  }

  constructor (readonly stream: Stream, opts: RpcClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? RPC_TIMEOUT_MS
    this.maxInFlight = opts.maxInFlight ?? RPC_MAX_IN_FLIGHT
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_RPC_FRAME_BYTES
    this.maxWatchBacklog = opts.maxWatchBacklog ?? 1024
    void this.readLoop()
  }

  /** false once the stream has failed or closed: open a new client. */
  get usable (): boolean { return this.dead == null }
  /** why the stream failed or closed (null while usable) */
  get deadReason (): string | null { return this.dead?.message ?? null }

  /** Calls a unary method; throws BlixardError with the server's kind (NotLeader carries `leader`). */
  async call<M extends UnaryMethodName> (method: M, params: ParamsOf<M>, opts: CallOptions = {}): Promise<ResultOf<M>> {
    return await this.callRaw(method, params, opts) as ResultOf<M>
  }

  /** Sends any method name and params unchecked (tests, newer servers). */
  async callRaw (method: string, params: unknown, opts: CallOptions = {}): Promise<unknown> {
    await this.acquire()
    try {
      return await new Promise<unknown>((resolve, reject) => {
        const id = this.nextId++
        const timeoutMs = opts.timeoutMs ?? this.timeoutMs
        const finish = (): void => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort); this.pending.delete(id) }
        const timer = setTimeout(() => { finish(); reject(new BlixardError('Timeout', `'${method}' got no answer within ${timeoutMs} ms`)) }, timeoutMs)
        const onAbort = (): void => { finish(); reject(new BlixardError('Timeout', `'${method}' aborted by the caller`)) }
        opts.signal?.addEventListener('abort', onAbort, { once: true })
        this.pending.set(id, {
          method,
          resolve: (v) => { finish(); resolve(v) },
          reject: (e) => { finish(); reject(e) }
        })
        this.write({ id, method, params }).catch((err: unknown) => this.pending.get(id)?.reject(this.asRpcError(err)))
      })
    } finally {
      this.release()
    }
  }

  /** Starts a streaming method (vm.watch). Items arrive until the server ends it or cancel(). */
  watch<M extends StreamingMethodName> (method: M, params: ParamsOf<M>): RpcSubscription<ResultOf<M>> {
    const id = this.nextId++
    // an error travels in the queue behind the items before it, so they are still delivered
    const queue = pushable<{ item: ResultOf<M> } | { error: BlixardError }>({ objectMode: true })
    let ended = false
    const finish = (e: BlixardError | null): void => {
      if (ended) return
      ended = true
      this.pending.delete(id)
      if (e != null) queue.push({ error: e })
      queue.end()
    }
    const stop = (e: BlixardError | null): void => {
      if (ended) return
      finish(e)
      if (this.dead == null) this.write({ id, cancel: true }).catch(() => {})
    }
    const cancel = (): void => { stop(null) }
    this.pending.set(id, {
      method,
      item: (v) => {
        queue.push({ item: v as ResultOf<M> })
        if (queue.readableLength > this.maxWatchBacklog) stop(new BlixardError('TooLarge', `watch backlog over ${this.maxWatchBacklog} items`))
      },
      resolve: () => finish(null),
      reject: (e) => finish(e)
    })
    if (this.dead != null) finish(this.dead)
    else this.write({ id, method, params }).catch((err: unknown) => finish(this.asRpcError(err)))
    const iterator = async function * (): AsyncGenerator<ResultOf<M>, void, undefined> {
      try {
        for await (const x of queue) {
          if ('error' in x) throw x.error
          yield x.item
        }
      } finally {
        cancel()
      }
    }
    return { cancel, [Symbol.asyncIterator]: iterator }
  }

  /** Closes the stream once the answers in flight have arrived. */
  async close (): Promise<void> {
    for (const [id, p] of this.pending) if (p.item != null) { this.write({ id, cancel: true }).catch(() => {}) }
    await this.stream.close().catch(() => this.stream.abort(new Error('close failed')))
  }

  private async write (frame: unknown): Promise<void> {
    if (this.dead != null) throw this.dead
    await writeFrame(this.stream, frame, this.maxFrameBytes)
  }

  private asRpcError (err: unknown): BlixardError {
    if (err instanceof BlixardError) return err
    const why = (err as Error)?.message ?? String(err)
    // a server past its stream limits resets a new stream before reading it; the bare reset told
    // the caller nothing it could act on
    if (!this.answered && /reset/i.test(why)) {
      return new BlixardError('Unavailable', `RPC stream failed: ${why} before any answer: ${STREAM_REFUSED_HINT}`)
    }
    return new BlixardError('Unavailable', `RPC stream failed: ${why}`)
  }

  private async acquire (): Promise<void> {
    while (this.inFlight >= this.maxInFlight) await new Promise<void>(resolve => this.slotWaiters.push(resolve))
    this.inFlight++
  }

  private release (): void {
    this.inFlight--
    this.slotWaiters.shift()?.()
  }

  private async readLoop (): Promise<void> {
    let reason: BlixardError
    try {
      for await (const frame of readFrames(this.stream, { maxFrameBytes: this.maxFrameBytes })) {
        this.answered = true
        const res = validateServerFrame(frame)
        const p = this.pending.get(res.id)
        if (p == null) continue // timed out or cancelled: the late answer is dropped
        if (!res.ok) p.reject(BlixardError.from(res.error))
        else if (res.more === true && p.item != null) p.item(res.result)
        else p.resolve(res.result)
      }
      reason = new BlixardError('Unavailable', this.answered ? 'the server closed the RPC stream' : `the server closed the RPC stream before any answer: ${STREAM_REFUSED_HINT}`)
    } catch (err) {
      reason = this.asRpcError(err)
      this.stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
    this.dead = reason
    for (const p of [...this.pending.values()]) p.reject(reason)
  }
}
