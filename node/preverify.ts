// Signature checks ahead of the place a command is decided, on a worker thread.
//
// Every replica checks the Ed25519 signature of every command it applies (protocols/auth.ts), and
// the leader checks it once more before proposing. Done synchronously on the event loop, each
// check (~45 µs with libsodium, ~116 µs with OpenSSL before) delays every Raft message and RPC queued behind it. The leader's check before
// proposing runs here instead: the signed write awaits its check on one worker thread, in batches
// (one postMessage per event-loop turn, not one thread-pool job per signature: a job costs the loop
// ~15-25 µs, a batch ~1-2 µs per signature), and the positive answer goes into the cache
// verifyAuth consults, so the leader's own synchronous checks (before proposing, on apply) are
// lookups.
//
// Followers do not use it. Started when a MsgApp brings the entry, the worker's answer came back
// after the entry had already committed and applied under load (256 clients: the apply path still
// verified every signature, and the worker's work came on top), so a follower verifies on apply as
// before. A follower that waited for its checks before applying would need the Ready loop to
// pause between persisting and applying; not done.
//
// It never decides anything: the worker runs the same libsodium Ed25519 verify over the same
// bytes as verifyAuth, only positive answers are cached, and a signature that was not
// checked ahead in time (worker busy, bound reached, worker gone) is simply checked synchronously
// as before. So replicas agree whether or not, and when, a head start happened.
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'
import { noteVerified, signatureJob } from '../protocols/auth.ts'
import type { AuthPair, CommandAuth, SignatureJob } from '../protocols/auth.ts'
import type { Command } from '../protocols/commands.ts'

/** Signatures queued or on the worker at once; past this, a signature is left to the synchronous
 * check (bounded memory whatever a peer sends). */
export const MAX_PREVERIFY_IN_FLIGHT = 1024
/** Signatures per message to the worker. */
export const PREVERIFY_BATCH = 256
/** Fewer signatures than this, gathered in one event-loop turn, are not worth a worker round trip:
 * they are left to the synchronous check. Many writes arriving in the same turn (hundreds of
 * clients) are where moving their checks off the loop pays. */
export const PREVERIFY_MIN_WORKER_BATCH = 16
/** A worker with nothing to do for this long is ended: an idle node does not carry its ~10 MiB
 * (a thread and its V8 heap); under a steady stream of signed writes it stays up. */
export const PREVERIFY_WORKER_IDLE_MS = 2_000
/** A signature arriving this long after the previous one, with nothing queued or on the worker, is
 * left to the synchronous check: at a low rate (one client: ~100-200 signed writes a second) the
 * loop can afford ~0.1 ms a signature, and the worker's round trip only added latency (measured at
 * load ~7, 1 client: 1.4 ms median between a write's arrival and its check's answer). Closer
 * together, they go to the worker, which batches them. */
export const PREVERIFY_INLINE_GAP_MS = 4
// Plain CommonJS, evaluated in the worker: no TypeScript loader needed there. The same libsodium
// Ed25519 check as protocols/auth.ts ed25519Verify (sodium-native, resolved here so that the
// worker finds it whatever the daemon's working directory). Answers one byte per job (1 valid,
// 0 not), in order.
const SODIUM_PATH = createRequire(import.meta.url).resolve('sodium-native')
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const sodium = require(${JSON.stringify(SODIUM_PATH)})
parentPort.on('message', ({ seq, jobs }) => {
  const out = new Uint8Array(jobs.length)
  for (let i = 0; i < jobs.length; i++) {
    const j = jobs[i]
    let ok = false
    if (j.key.byteLength === 32 && j.sig.byteLength === 64) {
      try { ok = sodium.crypto_sign_verify_detached(j.sig, j.bytes, j.key) } catch { ok = false }
    }
    out[i] = ok ? 1 : 0
  }
  parentPort.postMessage({ seq, out })
})
`

interface Waiting { job: SignatureJob, pair: AuthPair | undefined, resolve: (ok: boolean | null) => void }

class VerifyWorker {
  private worker: Worker | null = null
  /** the worker has started and answers messages */
  private online = false
  private idleTimer: NodeJS.Timeout | null = null
  private readonly onlineWaiters: Array<() => void> = []
  private queue: Waiting[] = []
  private readonly sent = new Map<number, Waiting[]>()
  private readonly byId = new Map<string, Promise<boolean | null>>()
  private seq = 0
  private flushing = false
  private inFlight = 0
  private lastSubmit = -Infinity

  submit (job: SignatureJob, pair?: AuthPair): Promise<boolean | null> {
    const running = this.byId.get(job.id)
    if (running !== undefined) return running
    const now = performance.now()
    const lone = this.inFlight === 0 && now - this.lastSubmit > inlineGapMs
    this.lastSubmit = now
    if (lone) return Promise.resolve(null)
    if (this.inFlight >= MAX_PREVERIFY_IN_FLIGHT) return Promise.resolve(null)
    this.inFlight++
    const done = new Promise<boolean | null>((resolve) => { this.queue.push({ job, pair, resolve }) })
    this.byId.set(job.id, done)
    if (this.idleTimer !== null) { clearTimeout(this.idleTimer); this.idleTimer = null }
    if (!this.flushing) {
      this.flushing = true
      setImmediate(() => { this.flushing = false; this.flush() })
    }
    return done
  }

  /** Resolves once the worker answers (tests and benchmarks warm it up with this). */
  async ready (): Promise<void> {
    if (this.online) return
    await new Promise<void>((resolve) => { this.onlineWaiters.push(resolve); this.start(); this.worker?.ref() })
  }

  private settle (w: Waiting, ok: boolean | null): void {
    this.inFlight--
    this.byId.delete(w.job.id)
    // the pair too: the synchronous check of these very objects before proposing is then a lookup
    if (ok !== null) noteVerified(w.job, ok, w.pair)
    w.resolve(ok)
  }

  private flush (): void {
    const worker = this.online ? this.worker : null
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, PREVERIFY_BATCH)
      // A small batch is left to the synchronous check: a round trip to the worker cost more CPU
      // than the checks it moved (bench:raft, 16 clients: the leader's user CPU per write 1.95 ms
      // with every batch sent, 0.78 ms with none). A batch big enough starts the worker if it is
      // not up (the batch itself is left to the synchronous check: no write waits for a thread
      // to boot).
      if (batch.length < minWorkerBatch) { for (const w of batch) this.settle(w, null); continue }
      if (worker === null) { this.start(); for (const w of batch) this.settle(w, null); continue }
      const seq = this.seq++
      if (this.sent.size === 0) worker.ref() // answers are awaited: keep the process alive for them
      this.sent.set(seq, batch)
      worker.postMessage({ seq, jobs: batch.map((w) => ({ key: w.job.key, bytes: w.job.bytes, sig: w.job.sig })) })
    }
  }

  /** An idle worker is ended (a thread and its V8 heap, ~8 MiB of resident memory an idle node
   * should not carry); the next signed write starts it again. */
  private idleLater (w: Worker): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null
      if (this.worker !== w || this.sent.size > 0 || this.queue.length > 0) return
      this.worker = null
      this.online = false
      void w.terminate()
    }, PREVERIFY_WORKER_IDLE_MS)
    this.idleTimer.unref()
  }

  private start (): void {
    if (this.worker !== null) return
    let w: Worker
    try {
      w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] })
    } catch {
      return
    }
    w.on('online', () => {
      if (this.worker !== w) return
      this.online = true
      if (this.sent.size === 0) w.unref()
      for (const f of this.onlineWaiters.splice(0)) f()
      this.idleLater(w)
    })
    w.on('message', (m: { seq: number, out: Uint8Array }) => {
      const batch = this.sent.get(m.seq)
      if (batch === undefined) return
      this.sent.delete(m.seq)
      if (this.sent.size === 0) { w.unref(); this.idleLater(w) }
      batch.forEach((b, i) => { this.settle(b, m.out[i] === 1) })
    })
    const gone = (): void => {
      if (this.worker !== w) return
      this.worker = null
      this.online = false
      // whatever it had not answered is left to the synchronous check
      for (const batch of this.sent.values()) for (const b of batch) this.settle(b, null)
      this.sent.clear()
    }
    w.on('error', gone)
    w.on('exit', gone)
    w.unref() // idle, never what keeps a process alive (after the listeners, which ref it)
    this.worker = w
  }
}

const pool = new VerifyWorker()
let inlineGapMs = PREVERIFY_INLINE_GAP_MS
let minWorkerBatch = PREVERIFY_MIN_WORKER_BATCH

/** Tests: the gap after which a lone signature is left to the synchronous check (Infinity: never). */
export function setPreverifyInlineGap (ms: number): void { inlineGapMs = ms }

/** Tests: the smallest batch sent to the worker (1: every batch). */
export function setPreverifyMinBatch (n: number): void { minWorkerBatch = n }

/** Starts the worker if it is not running and resolves once it answers (tests, benchmarks). */
export async function preverifyReady (): Promise<void> { await pool.ready() }

/**
 * Starts checking `auth` over `cmd` on the worker thread. Resolves to the answer (true: the
 * signature is now cached as good; false: it is bad, and verifyAuth will say so too), or to null
 * when nothing was checked (bound reached, the worker not up yet, no worker): then verifyAuth
 * checks it where it is decided, as always.
 */
export async function preverifyAuth (cmd: Command, auth: CommandAuth): Promise<boolean | null> {
  const job = signatureJob(cmd, auth)
  if (typeof job === 'boolean') return job
  return await pool.submit(job, { cmd, auth })
}
