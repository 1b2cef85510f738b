// Gives back the young generation V8 grew under load, once the node is idle again.
//
// V8 sizes its young generation (two semi-spaces) between 1 MiB and --max-semi-space-size a
// semi-space: it doubles it while many objects survive scavenges, and shrinks it only in a full
// collection made to reduce memory (or one that finds the allocation rate below ~1 MB/s, which an
// idle daemon's heartbeats, gossip and metrics exceed). A busy node needs it large: at 256
// concurrent writes a request's objects live ~150 ms, and with 4 MiB semi-spaces the leader
// scavenged every ~40 ms, copying ~2 MiB of such objects each time (6 ms a scavenge, ~15 % of its
// loop). An idle node does not: a daemon that grew it while starting (module loading survives
// scavenges too) kept 2 x 16 MiB of it for good (bench:idle: 116 MiB against 94 with 4 MiB).
//
// So the daemon runs with V8's default bound (16 MiB, DAEMON_NODE_FLAGS) and this watcher. Once the
// event loop has been nearly idle for a while with the young generation above its minimum, it
// turns on V8's optimize-for-size mode and makes one full collection; V8's memory reducer then
// runs its memory-reducing collections ~8 s later (they shrink the young generation), and the mode
// goes off again as soon as the young generation is small, the loop is busy again, or a bound
// passes. Node 20 offers no other way to ask V8 for a memory-reducing collection (`gc()` takes no
// such option there; MemoryPressureNotification is not exposed). The flag is a plain V8 setting
// read where V8 decides sizes and what to optimize; while it is on (idle, seconds), new space does
// not grow and code compiled meanwhile favours size.
//
// The decision is pure (`trimStep`, table-tested); `startMemoryTrim` applies it on a timer.
import v8 from 'node:v8'
import vm from 'node:vm'
import { performance, type EventLoopUtilization } from 'node:perf_hooks'

/** How often the watcher looks (also how long load that comes back during a trim runs with the
 * memory-reducing mode still on, at most). */
export const TRIM_CHECK_MS = 1_000
/** The event loop's busy share over one check below which the node counts as idle (an idle daemon:
 * 3-6 %: heartbeats, gossip, leases, metrics; a leader under 16 concurrent writes: ~100 %). */
export const TRIM_IDLE_ELU = 0.15
/** Idle this long before trimming: a pause between bursts of writes is not idleness. */
export const TRIM_IDLE_MS = 5_000
/** A young generation this large or smaller is left alone (V8's minimum is two 1 MiB semi-spaces;
 * it grows in doublings). */
export const TRIM_ABOVE_BYTES = 4 * 1024 * 1024
/** The memory-reducing mode is turned off after this long whatever happened (V8's memory reducer
 * starts ~8 s after the collection that wakes it). */
export const TRIM_MAX_REDUCING_MS = 30_000
/** After a trim that did not shrink (or was cut short), wait this long before another. */
export const TRIM_RETRY_MS = 120_000

export type TrimState =
  | { phase: 'watching', idleSince: number | null, notBefore: number }
  | { phase: 'reducing', since: number, fromBytes: number }

export interface TrimObservation { now: number, elu: number, youngBytes: number }

export type TrimAction =
  | { kind: 'none' }
  /** turn the memory-reducing mode on and collect once */
  | { kind: 'start' }
  /** turn it off; `shrunk` says whether the young generation went back under the bound */
  | { kind: 'end', shrunk: boolean, reason: 'shrunk' | 'busy' | 'timeout', fromBytes: number, toBytes: number, ms: number }

export const TRIM_INITIAL: TrimState = { phase: 'watching', idleSince: null, notBefore: 0 }

/** The bounds trimStep decides with (the constants above; tests shorten the times). */
export interface TrimConfig { idleElu: number, idleMs: number, aboveBytes: number, maxReducingMs: number, retryMs: number }
export const TRIM_CONFIG: TrimConfig = { idleElu: TRIM_IDLE_ELU, idleMs: TRIM_IDLE_MS, aboveBytes: TRIM_ABOVE_BYTES, maxReducingMs: TRIM_MAX_REDUCING_MS, retryMs: TRIM_RETRY_MS }

/** One check: the next state and what to do. Pure. */
export function trimStep (s: TrimState, o: TrimObservation, c: TrimConfig = TRIM_CONFIG): { state: TrimState, action: TrimAction } {
  const idle = o.elu < c.idleElu
  if (s.phase === 'reducing') {
    const shrunk = o.youngBytes <= c.aboveBytes
    const reason = shrunk ? 'shrunk' : !idle ? 'busy' : o.now - s.since >= c.maxReducingMs ? 'timeout' : null
    if (reason === null) return { state: s, action: { kind: 'none' } }
    return {
      state: { phase: 'watching', idleSince: null, notBefore: shrunk ? o.now : o.now + c.retryMs },
      action: { kind: 'end', shrunk, reason, fromBytes: s.fromBytes, toBytes: o.youngBytes, ms: o.now - s.since }
    }
  }
  if (!idle) return { state: { ...s, idleSince: null }, action: { kind: 'none' } }
  const idleSince = s.idleSince ?? o.now
  if (o.now - idleSince < c.idleMs || o.now < s.notBefore || o.youngBytes <= c.aboveBytes) {
    return { state: { ...s, idleSince }, action: { kind: 'none' } }
  }
  return { state: { phase: 'reducing', since: o.now, fromBytes: o.youngBytes }, action: { kind: 'start' } }
}

/** The young generation's reserved size now (both semi-spaces), in bytes. */
export function youngGenerationBytes (): number {
  const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')
  return s === undefined ? 0 : s.space_size
}

let gcFn: (() => void) | null | undefined
/** V8's gc() without starting node with --expose-gc (which NODE_OPTIONS does not take on Node 20):
 * the flag turned on at run time installs gc() in contexts made afterwards. null if unavailable. */
function gc (): (() => void) | null {
  if (gcFn !== undefined) return gcFn
  const g = (globalThis as { gc?: unknown }).gc
  if (typeof g === 'function') { gcFn = g as () => void; return gcFn }
  try {
    v8.setFlagsFromString('--expose-gc')
    const f: unknown = vm.runInNewContext('gc')
    gcFn = typeof f === 'function' ? f as () => void : null
  } catch { gcFn = null }
  return gcFn
}

export interface MemoryTrimOptions {
  /** told when a trim ends */
  onEnd?: (a: Extract<TrimAction, { kind: 'end' }>) => void
  /** told when a trim starts */
  onStart?: (youngBytes: number) => void
  checkMs?: number
  config?: TrimConfig
}

/** Watches the event loop and trims the young generation once the node is idle; returns stop
 * (which also turns the memory-reducing mode off if it is on). */
export function startMemoryTrim (o: MemoryTrimOptions = {}): () => void {
  const collect = gc()
  if (collect === null) return () => {}
  let state: TrimState = TRIM_INITIAL
  let last: EventLoopUtilization = performance.eventLoopUtilization()
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const elu = performance.eventLoopUtilization(now, last).utilization
    last = now
    const youngBytes = youngGenerationBytes()
    const r = trimStep(state, { now: performance.now(), elu, youngBytes }, o.config)
    state = r.state
    if (r.action.kind === 'start') {
      o.onStart?.(youngBytes)
      v8.setFlagsFromString('--optimize-for-size')
      collect()
      // the collection's own time is not load
      last = performance.eventLoopUtilization()
    } else if (r.action.kind === 'end') {
      v8.setFlagsFromString('--no-optimize-for-size')
      o.onEnd?.(r.action)
    }
  }, o.checkMs ?? TRIM_CHECK_MS)
  timer.unref()
  return () => {
    clearInterval(timer)
    if (state.phase === 'reducing') v8.setFlagsFromString('--no-optimize-for-size')
  }
}
