// Writes from any node: proposed here when this node leads, otherwise forwarded to the leader,
// batched, and retried under the same idempotency key until the answer is definite. The
// environment is a parameter (the local Raft node, the RPC calls to a leader, timers), so this
// runs with libp2p in node/daemon.ts and can run over a simulated network; nothing here opens a
// connection, reads a clock or draws randomness.
//
// Definite and indeterminate answers: retries happen on NotLeader, Unavailable, Timeout and
// InFlight, always under the same key, so an attempt that did commit is applied once. The final
// answer is definite only when no attempt can have been proposed; once one may have been (it
// reached a leader and then timed out, or leadership changed under it, or the key was still in
// flight), it is Indeterminate, naming the key to retry with.
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { indeterminateMessage } from '../../protocols/commands.ts'
import type { ForwardedResult } from '../../protocols/rpc.ts'
import { MAX_FORWARD_BATCH, MAX_FORWARD_BATCH_BYTES } from '../../protocols/limits.ts'
import { encodeEnvelope } from '../../storage/envelope.ts'
import { BlixardError } from '../../protocols/errors.ts'

/** Attempts per write before giving up (each after a back-off, below). */
export const PROPOSE_ATTEMPTS = 20
/** Back-off between attempts: RETRY_BASE_MS × 2^attempt (the exponent capped), at most RETRY_MAX_MS. */
export const RETRY_BASE_MS = 50
export const RETRY_MAX_MS = 1_000
const RETRY_MAX_DOUBLINGS = 5
/** How long a forwarded write (or batch) may wait for the leader's answer. */
export const FORWARD_TIMEOUT_MS = 10_000

/** Planted bugs, for the simulator only (sim/replica.ts wires them; node/ never does):
 * 'retry-new-key' re-submits a retried write under a fresh idempotency key, so an attempt that
 * did commit is applied a second time. */
export type ForwarderBug = 'retry-new-key'
export const FORWARDER_BUGS: readonly ForwarderBug[] = ['retry-new-key']

/** Error kinds after which another attempt (same key) may succeed. */
const RETRYABLE = new Set(['NotLeader', 'Unavailable', 'Timeout', 'InFlight'])

/** What the forwarder needs of its node and its network; C is a connection to a peer. */
export interface ForwarderEnv<C> {
  /** this node leads now (its Raft core says so) */
  isLeader: () => boolean
  /** the leader this node knows of, or null */
  leaderId: () => string | null
  /** why the leader refuses `env` before proposing it (authority), or null */
  refusal: (env: CommandEnvelope) => string | null
  /** propose on this node (the leader): resolves with the applied result */
  proposeLocal: (env: CommandEnvelope) => Promise<ApplyResult>
  /** a connection to `leader` (failing here means nothing was sent) */
  connect: (leader: string) => Promise<C>
  /** internal.propose over `conn` */
  callOne: (conn: C, env: CommandEnvelope, timeoutMs: number) => Promise<ApplyResult>
  /** internal.proposeMany over `conn`: the raw answer, checked here before use */
  callMany: (conn: C, envs: CommandEnvelope[], timeoutMs: number) => Promise<unknown>
  /** forget the connection to `leader` (the next call opens a fresh one) */
  dropConnection: (leader: string) => void
  /** runs `run` once the current turn's writes are queued (setImmediate in node/) */
  defer: (run: () => void) => void
  sleep: (ms: number) => Promise<void>
  /** the daemon is stopping: no more attempts */
  stopping: () => boolean
}

interface PendingForward {
  env: CommandEnvelope
  bytes: number
  resolve: (r: ApplyResult) => void
  reject: (e: unknown) => void
}

/** Does a peer's answer have the shape of one forwarded write's result? */
export function isForwardedResult (r: unknown): r is ForwardedResult {
  if (r == null || typeof r !== 'object') return false
  const o = r as { ok?: unknown, result?: unknown, error?: unknown }
  if (o.ok === true) return o.result != null && typeof o.result === 'object' && typeof (o.result as { ok?: unknown }).ok === 'boolean'
  return o.ok === false && o.error != null && typeof o.error === 'object' && typeof (o.error as { kind?: unknown }).kind === 'string' && typeof (o.error as { message?: unknown }).message === 'string'
}

export function indeterminate (key: string, last: unknown): BlixardError {
  const why = last instanceof Error ? `last attempt: ${last.message}` : 'no answer from a leader'
  return new BlixardError('Indeterminate', indeterminateMessage(key, why), undefined, key)
}

export function retryDelayMs (attempt: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt, RETRY_MAX_DOUBLINGS))
}

export class Forwarder<C> {
  /** writes waiting to be forwarded to a leader in this turn */
  private readonly queues = new Map<string, PendingForward[]>()
  /** told every change of the known leader (forwarded writes give up on a deposed one) */
  private readonly watchers = new Set<(leader: string | null) => void>()

  constructor (private readonly env: ForwarderEnv<C>, private readonly bugs: ReadonlySet<ForwarderBug> = new Set()) {}

  /** The node's Raft core named a new leader (or none). */
  leaderChanged (leader: string | null): void {
    for (const fn of [...this.watchers]) fn(leader)
  }

  /** Proposes `env` (its key set and its signature, if any, made) wherever the leader is. */
  async propose (env: CommandEnvelope & { key: string }): Promise<ApplyResult> {
    const e = this.env
    let lastErr: unknown = null
    let mayHaveProposed = false
    for (let attempt = 0; attempt < PROPOSE_ATTEMPTS && !e.stopping(); attempt++) {
      const leader = e.leaderId()
      const sending = attempt > 0 && this.bugs.has('retry-new-key') ? { ...env, key: `${env.key}~${attempt}` } : env
      let sent = false
      try {
        if (e.isLeader()) {
          const why = e.refusal(sending)
          if (why !== null) throw new BlixardError('Unauthorized', why)
          sent = true
          return await e.proposeLocal(sending)
        }
        if (leader == null) throw new BlixardError('Unavailable', 'no leader elected yet')
        const conn = await e.connect(leader)
        sent = true
        return await this.untilLeaderChanges(leader, this.forwardTo(leader, conn, sending))
      } catch (err) {
        lastErr = err
        const kind = (err as { kind?: string }).kind
        if (kind === undefined || !RETRYABLE.has(kind)) {
          // a thrown refusal of a later attempt leaves an earlier one's fate open: only the state
          // machine's answer (an ApplyResult, returned, never thrown) is definite
          if (mayHaveProposed && kind !== 'Indeterminate') throw indeterminate(env.key, err)
          throw err
        }
        // NotLeader is a refusal before proposing; anything else after sending may have been proposed
        if (sent && kind !== 'NotLeader') mayHaveProposed = true
        if (leader != null && kind !== 'Timeout' && kind !== 'InFlight') e.dropConnection(leader)
        await e.sleep(retryDelayMs(attempt))
      }
    }
    if (mayHaveProposed) throw indeterminate(env.key, lastErr)
    throw lastErr instanceof Error ? lastErr : new BlixardError('Unavailable', 'no leader could take the command; check that a quorum of nodes is up')
  }

  /**
   * Forwards a write to the leader. Writes forwarded in the same turn travel together in one
   * internal.proposeMany call (one request and one answer frame for many clients' writes, all in
   * the leader's same Raft round); a lone write goes as internal.propose.
   */
  private async forwardTo (leader: string, conn: C, env: CommandEnvelope): Promise<ApplyResult> {
    return await new Promise<ApplyResult>((resolve, reject) => {
      let q = this.queues.get(leader)
      if (q == null) {
        q = []
        this.queues.set(leader, q)
        this.env.defer(() => { this.flush(leader, conn) })
      }
      q.push({ env, bytes: encodeEnvelope(env).byteLength, resolve, reject })
    })
  }

  private flush (leader: string, conn: C): void {
    const q = this.queues.get(leader) ?? []
    this.queues.delete(leader)
    const single = (x: PendingForward): void => {
      this.env.callOne(conn, x.env, FORWARD_TIMEOUT_MS).then(x.resolve, x.reject)
    }
    while (q.length > 0) {
      const batch: PendingForward[] = []
      let bytes = 0
      while (q.length > 0 && batch.length < MAX_FORWARD_BATCH && (batch.length === 0 || bytes + q[0].bytes <= MAX_FORWARD_BATCH_BYTES)) {
        bytes += q[0].bytes
        batch.push(q.shift() as PendingForward)
      }
      if (batch.length === 1) { single(batch[0]); continue }
      this.env.callMany(conn, batch.map((x) => x.env), FORWARD_TIMEOUT_MS).then((results: unknown) => {
        // a peer's answer is checked before use: a malformed one fails these writes as Unavailable,
        // which propose() retries (with the same keys: a write that did apply is not applied twice)
        if (!Array.isArray(results) || results.length !== batch.length || !results.every(isForwardedResult)) {
          const err = new BlixardError('Unavailable', `the leader's answer to ${batch.length} forwarded writes is malformed`)
          for (const x of batch) x.reject(err)
          return
        }
        for (const [i, x] of batch.entries()) {
          const r = results[i]
          if (r.ok) x.resolve(r.result)
          else x.reject(BlixardError.from(r.error))
        }
      }, (err: unknown) => {
        // a leader without internal.proposeMany (older version, rolling upgrade): one by one
        if ((err as { kind?: string }).kind === 'UnknownMethod') { for (const x of batch) single(x); return }
        for (const x of batch) x.reject(err)
      })
    }
  }

  /**
   * A forwarded write waits for the leader it went to, until Raft here names another (or none):
   * a frozen or partitioned leader would otherwise hold it for the whole RPC timeout, and hold
   * the client's stream slots with it. Retrying is safe: the command keeps its idempotency key.
   */
  private async untilLeaderChanges<T> (leader: string, call: Promise<T>): Promise<T> {
    let watcher: ((l: string | null) => void) | null = null
    const changed = new Promise<never>((_resolve, reject) => {
      watcher = (l) => { if (l !== leader) reject(new BlixardError('Unavailable', `leader ${leader} was replaced while the command was forwarded to it`)) }
      this.watchers.add(watcher)
    })
    try {
      return await Promise.race([call, changed])
    } finally {
      if (watcher != null) this.watchers.delete(watcher)
      call.catch(() => {}) // a late failure of the abandoned call is not ours to report
    }
  }
}
