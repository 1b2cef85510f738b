// Load shapes shared by both systems in bench/raft.ts, so etcd and Blixard are driven by the
// same code: closed-loop clients for a fixed time after a warmup, and a failover probe.
import { readFileSync } from 'node:fs'

/** One write; resolves when the system says it is committed, throws otherwise. */
export type WriteFn = () => Promise<void>

export interface LoadResult {
  clients: number
  seconds: number
  writes: number
  errors: number
  perSec: number
  p50Ms: number
  p99Ms: number
  /** CPU the bench process itself used (user + system), % of one core: the client's own cost */
  clientCpuPct: number
  /** CPU the servers used (user + system, summed over the members) while recording: per
   * committed write, and in % of one core. The cost figure that load on the machine does not skew. */
  serverCpuMsPerWrite: number
  serverCpuPct: number
  /** the optional second CPU reading (allCpuMs) per committed write */
  allCpuMsPerWrite?: number
  firstError?: string
}

export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i]
}

/** Called when the recorded window starts and ends (e.g. to mark a CPU profile's window). */
export interface RecordHooks { start?: () => void, stop?: () => void }

/**
 * Runs one closed loop per writer (each writer is one client: one write in flight at a time) for
 * warmupMs, unrecorded, then for durationMs, recorded. Writes still in flight at the end are
 * awaited but not counted.
 */
export async function closedLoop (writers: WriteFn[], warmupMs: number, durationMs: number, serverCpuMs: () => number = () => NaN, allCpuMs?: () => number, hooks: RecordHooks = {}): Promise<LoadResult> {
  let recording = false
  let stop = false
  let lat = new Float64Array(1 << 16)
  let n = 0
  let errors = 0
  let firstError: string | undefined
  const loop = async (w: WriteFn): Promise<void> => {
    while (!stop) {
      const t0 = performance.now()
      try {
        await w()
        if (!recording || stop) continue
        if (n === lat.length) { const b = new Float64Array(lat.length * 2); b.set(lat); lat = b }
        lat[n++] = performance.now() - t0
      } catch (err) {
        if (recording && !stop) { errors++; firstError ??= (err as Error).message }
        await new Promise((resolve) => setTimeout(resolve, 5)) // no hot loop on a failing system
      }
    }
  }
  const loops = writers.map(loop)
  await new Promise((resolve) => setTimeout(resolve, warmupMs))
  recording = true
  hooks.start?.()
  const cpu0 = process.cpuUsage()
  const server0 = serverCpuMs()
  const all0 = allCpuMs?.() ?? NaN
  const t0 = performance.now()
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  stop = true
  const elapsed = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const server = serverCpuMs() - server0
  const all = (allCpuMs?.() ?? NaN) - all0
  hooks.stop?.()
  await Promise.all(loops)
  const sorted = lat.slice(0, n).sort()
  return {
    clients: writers.length,
    seconds: elapsed / 1000,
    writes: n,
    errors,
    perSec: n / (elapsed / 1000),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    clientCpuPct: 100 * (cpu.user + cpu.system) / 1000 / elapsed,
    serverCpuMsPerWrite: server / n,
    serverCpuPct: 100 * server / elapsed,
    ...(allCpuMs != null ? { allCpuMsPerWrite: all / n } : {}),
    ...(firstError != null ? { firstError } : {})
  }
}

/**
 * Failover time: calls `kill()`, then starts a write every `everyMs` (each with its own
 * timeout, so a write stuck on the dead leader does not hide a later one that succeeds) and
 * answers the time from the kill to the first write that completes successfully.
 */
export async function failoverProbe (kill: () => void, write: (timeoutMs: number) => Promise<void>, opts: { everyMs?: number, giveUpMs?: number, writeTimeoutMs?: number } = {}): Promise<number> {
  const everyMs = opts.everyMs ?? 10
  const giveUpMs = opts.giveUpMs ?? 30_000
  const writeTimeoutMs = opts.writeTimeoutMs ?? 3_000
  const t0 = performance.now()
  kill()
  return await new Promise<number>((resolve, reject) => {
    let done = false
    const finish = (ms: number | null): void => {
      if (done) return
      done = true
      clearInterval(timer)
      clearTimeout(giveUp)
      if (ms == null) reject(new Error(`no write succeeded within ${giveUpMs} ms of the kill`))
      else resolve(ms)
    }
    const attempt = (): void => { write(writeTimeoutMs).then(() => finish(performance.now() - t0), () => {}) }
    const timer = setInterval(attempt, everyMs)
    const giveUp = setTimeout(() => finish(null), giveUpMs)
    attempt()
  })
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** CPU time (user + system, ms) a process has used so far, from /proc; 0 once it is gone. */
export function processCpuMs (pid: number | undefined): number {
  if (pid == null) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS
  } catch {
    return 0
  }
}

/** USER_HZ: 100 on Linux for every architecture we run on. */
const CLOCK_TICKS = 100
