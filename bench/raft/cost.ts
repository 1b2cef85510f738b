// `bench:raft --cost-model`: where a write's CPU goes on each node, and how many syscalls it costs.
// A fresh 3-node cluster runs with V8's sampling profiler on (--cpu-prof); one level (256 clients to
// the leader by default) is measured, and the samples that fall inside its recorded window (V8's
// profile clock is CLOCK_MONOTONIC in µs, the same clock as process.hrtime here) are bucketed by the
// stage their function belongs to, from its script URL. V8 samples on a wall-clock timer, so on a
// busy machine a descheduled main thread still collects samples: the profile gives each stage's
// share, and the main thread's own CPU time (/proc/PID/task/PID/stat) gives the milliseconds. Then strace -c counts syscalls of every
// thread of each node over a few seconds of the same load, against the Raft entries committed in
// that time. Profiling and tracing both slow the nodes: the figures are a breakdown, not a
// throughput; the throughput levels of bench:raft run without either.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { DAEMON_NODE_FLAGS } from '../../scripts/local-cluster.ts'

/** V8's sampling interval for the cost model's profiles, µs (default 1000; finer for short runs). */
export const PROFILE_INTERVAL_US = 500

/** node flags of a profiled node: the daemon's own, plus the profiler. */
export function profileFlags (dir: string): string[] {
  return [...DAEMON_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${PROFILE_INTERVAL_US}`]
}

export const STAGES = ['rpc', 'auth', 'write path', 'raft', 'log', 'apply', 'transport', 'gc', 'program', 'other'] as const
export type Stage = typeof STAGES[number]

export const STAGE_NAMES: Record<Stage, string> = {
  rpc: 'RPC decode/encode + reply (rpc, schema, cbor)',
  auth: 'auth: signature verify (auth, preverify)',
  'write path': 'write path (api, write-path)',
  raft: 'Raft step (protocols/raft, raft-service, core)',
  log: 'log append + fsync (wal-log-store)',
  apply: 'apply (state-machine, apply-*, kv)',
  transport: 'transport (pnet, noise, yamux, frames, tcp)',
  gc: 'GC (main thread)',
  program: 'V8/native, unattributed',
  other: 'other (timers, metrics, libp2p services…)'
}

/**
 * The stage of a profile node from its own script URL: `own` rules name the stage whatever called
 * them (the cipher inside a Raft send is transport, not Raft); `inherit` rules (shared libraries:
 * cbor-x, lmdb, streams, crypto primitives) take their caller's stage, and theirs only when called
 * from nothing classified. Functions without a URL (V8 builtins, native bindings) always inherit.
 */
const RULES: Array<{ re: RegExp, stage: Stage, mode: 'own' | 'inherit' }> = [
  { re: /\/node\/net\/(pnet|frame-stream)\.|@libp2p\/(pnet|tcp|yamux|noise)\/|@chainsafe\/(libp2p-noise|libp2p-yamux|as-chacha20poly1305)\/|@noble\/ciphers\/|xsalsa20|sodium-native/, stage: 'transport', mode: 'own' },
  { re: /\/node\/net\/(rpc|rpc-clients)\.|\/node\/rpc-metrics\.|\/protocols\/(rpc|schema|command-schema|rpc-[a-z-]+)\./, stage: 'rpc', mode: 'own' },
  { re: /\/protocols\/auth\.|\/node\/preverify\./, stage: 'auth', mode: 'own' },
  { re: /\/node\/(api[a-z-]*|write-path|own-commands)\./, stage: 'write path', mode: 'own' },
  { re: /\/protocols\/raft\/|\/node\/raft-service\.|\/node\/net\/raft-transport\.|\/node\/core\//, stage: 'raft', mode: 'own' },
  { re: /\/storage\/(wal-log-store|codec)\./, stage: 'log', mode: 'own' },
  { re: /\/storage\/(state-machine|apply-[a-z-]+|kv|lmdb-kv|overlay-tx|envelope)\.|\/node\/apply-effects\./, stage: 'apply', mode: 'own' },
  { re: /\/node_modules\/lmdb\//, stage: 'log', mode: 'inherit' },
  { re: /cbor-x/, stage: 'rpc', mode: 'inherit' },
  { re: /@noble\/(curves|hashes)\/|@libp2p\/crypto\//, stage: 'auth', mode: 'inherit' },
  { re: /^node:(net|internal\/stream_base_commons|internal\/net)$|@libp2p\/utils\/|\/libp2p\/dist\/|it-length-prefixed|uint8arraylist|it-byte-stream|it-pushable/, stage: 'transport', mode: 'inherit' }
]

interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

export interface StageCost {
  /** sampled time of the main thread in the window, per stage, ms (wall clock: use as shares) */
  ms: Record<Stage, number>
  /** idle samples (the event loop waiting), ms: not CPU */
  idleMs: number
  /** ms of the window the profile covered */
  windowMs: number
}

/** Buckets the samples of `profile` taken in [fromUs, toUs] (CLOCK_MONOTONIC µs) by stage. */
export function bucketProfile (profile: CpuProfile, fromUs: number, toUs: number): StageCost {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of profile.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const stageCache = new Map<number, Stage | 'gc' | 'idle' | null>()
  const stageOf = (id: number): Stage | 'idle' | null => {
    const hit = stageCache.get(id)
    if (hit !== undefined) return hit
    const n = byId.get(id)
    let s: Stage | 'idle' | null = null
    if (n != null) {
      const { functionName: fn, url } = n.callFrame
      const up = (): Stage | 'idle' | null => { const p = parent.get(id); return p == null ? null : stageOf(p) }
      if (fn === '(garbage collector)') s = 'gc'
      else if (fn === '(idle)') s = 'idle'
      else if (fn === '(program)') s = 'program'
      else if (fn === '(root)') s = null
      else {
        const rule = url === '' ? undefined : RULES.find((r) => r.re.test(url))
        if (rule?.mode === 'own') s = rule.stage
        else s = up() ?? rule?.stage ?? null
      }
    }
    stageCache.set(id, s)
    return s
  }
  const ms = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>
  let idleMs = 0
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t < fromUs || t > toUs) continue
    // a sample stands for the time until the next one
    const w = (profile.timeDeltas[i + 1] ?? PROFILE_INTERVAL_US) / 1000
    const s = stageOf(profile.samples[i])
    if (s === 'idle') idleMs += w
    else ms[s ?? 'other'] += w
  }
  return { ms, idleMs, windowMs: (Math.min(toUs, profile.endTime) - Math.max(fromUs, profile.startTime)) / 1000 }
}

/** The profile a process with `pid` wrote into `dir` on exit (node names it CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile). */
export function readProfile (dir: string, pid: number): CpuProfile | null {
  if (!existsSync(dir)) return null
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile') && x.split('.')[3] === String(pid))
  return f == null ? null : JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile
}

/** CPU time (user + sys, ms) of the process's main thread (its tid is its pid), from /proc; NaN once gone. */
export function mainThreadCpuMs (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS
  } catch { return NaN }
}

/** CPU time (user + sys, ms) of each thread but the main one, summed by thread name (`comm`: libuv's pool
 * `libuv-worker`, V8's `V8 DefaultWorke`, worker threads, LMDB's writer…), from /proc. A thread that ends inside a
 * window loses its time there: the rows are a lower bound, the all-thread total is exact. */
export function threadCpuMsByName (pid: number): Map<string, number> {
  const out = new Map<string, number>()
  let tids: string[] = []
  try { tids = readdirSync(`/proc/${pid}/task`) } catch { return out }
  for (const tid of tids) {
    if (tid === String(pid)) continue
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(`${name} (${tid})`, (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS)
    } catch { /* the thread ended */ }
  }
  return out
}

/** Per-name CPU ms between two `threadCpuMsByName` readings (threads are matched by tid, summed by name). */
export function threadDelta (a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, ms] of b) {
    const name = key.slice(0, key.lastIndexOf(' ('))
    out[name] = (out[name] ?? 0) + ms - (a.get(key) ?? 0)
  }
  return out
}

/** USER_HZ: 100 on Linux for every architecture we run on. */
const CLOCK_TICKS = 100

/** Stage milliseconds: the profile's shares of non-idle samples times the main thread's CPU. */
export function scaleToCpu (b: StageCost, mainCpuMs: number): Record<Stage, number> {
  const sampled = STAGES.reduce((a, s) => a + b.ms[s], 0)
  return Object.fromEntries(STAGES.map((s) => [s, sampled > 0 ? mainCpuMs * b.ms[s] / sampled : NaN])) as Record<Stage, number>
}

/** Monotonic now in µs, on the clock V8's profiles use. */
export function monoUs (): number { return Number(process.hrtime.bigint() / 1000n) }

/** Syscall counts of one process over a window: strace -c -f (every thread) attached to it. */
export interface SyscallTrace { stop: () => Promise<Record<string, number>> }

/** How long strace gets to attach to every thread of a node before the counted window starts. */
export const STRACE_ATTACH_MS = 1_000

export function straceCounts (pid: number, outFile: string): SyscallTrace {
  mkdirSync(dirname(outFile), { recursive: true })
  const p: ChildProcess = spawn('strace', ['-c', '-f', '-q', '-o', outFile, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  p.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const exited = new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.once('error', () => resolve()) })
  return {
    stop: async () => {
      p.kill('SIGINT') // strace detaches and writes its summary
      await exited
      if (!existsSync(outFile)) throw new Error(`strace -p ${pid} wrote no summary: ${err.trim() || 'no output'}`)
      return parseStraceSummary(readFileSync(outFile, 'utf8'))
    }
  }
}

/** strace -c's table: `% time  seconds  usecs/call  calls  errors  syscall`. */
export function parseStraceSummary (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line)
    if (m != null && m[2] !== 'total') out[m[2]] = Number(m[1])
  }
  return out
}

/** Syscall groups the write path is about; the rest go to `other`. */
export const SYSCALL_GROUPS: Record<string, string[]> = {
  // write(2) also carries libuv's eventfd wakeups (uv_async_send) and log lines: -c cannot tell fds apart
  'write, writev, sendmsg, sendto (sockets, eventfd)': ['write', 'writev', 'sendmsg', 'sendto', 'sendmmsg'],
  'read, readv, recvmsg, recvfrom': ['read', 'readv', 'recvmsg', 'recvfrom', 'recvmmsg'],
  'file writes (pwrite64, pwritev: WAL batches, LMDB pages)': ['pwrite64', 'pwritev', 'pwritev2'],
  'fsync (fsync, fdatasync, msync, sync_file_range)': ['fsync', 'fdatasync', 'msync', 'sync_file_range'],
  'epoll (epoll_wait, epoll_pwait, epoll_ctl)': ['epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'epoll_ctl'],
  'futex (thread wakeups)': ['futex'],
  'mmap/munmap/madvise/mprotect': ['mmap', 'munmap', 'madvise', 'mprotect'],
  // V8's sampling profiler interrupts the main thread with a signal per sample: the cost model's
  // own overhead, counted apart and left out of `total`
  'profiler signals (tgkill, getpid, rt_sig*) [not in total]': ['tgkill', 'getpid', 'rt_sigprocmask', 'rt_sigreturn']
}

/** the profiler's group: shown, but not part of the write's total */
const PROFILER_GROUP = 'profiler signals (tgkill, getpid, rt_sig*) [not in total]'

export function groupSyscalls (counts: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  const seen = new Set<string>()
  for (const [g, names] of Object.entries(SYSCALL_GROUPS)) {
    out[g] = names.reduce((a, n) => a + (counts[n] ?? 0), 0)
    for (const n of names) seen.add(n)
  }
  out.other = Object.entries(counts).filter(([n]) => !seen.has(n)).reduce((a, [, c]) => a + c, 0)
  out.total = Object.entries(counts).filter(([n]) => !SYSCALL_GROUPS[PROFILER_GROUP].includes(n)).reduce((a, [, c]) => a + c, 0)
  return out
}

export interface NodeCost {
  role: 'leader' | 'follower'
  name: string
  /** main-thread CPU per write by stage, ms: the profile's shares of the main thread's CPU */
  stageMsPerWrite: Record<Stage, number>
  /** the share of the main thread's sampled time the event loop sat idle */
  idleShare: number
  /** all threads (user + sys from /proc) per write, ms, and of it the main thread's and the rest:
   * the libuv pool (fsync), V8's GC and compiler threads, LMDB */
  procMsPerWrite: number
  mainMsPerWrite: number
  offMainMsPerWrite: number
  /** the off-main CPU per write by thread name (a lower bound per row: see threadCpuMsByName) */
  threadsMsPerWrite: Record<string, number>
  /** per Raft entry committed in the strace window, by group, and the raw counts */
  syscallsPerWrite: Record<string, number>
  syscalls: Record<string, number>
}

export interface CostModel {
  clients: number
  writes: number
  perSec: number
  windowMs: number
  /** Raft entries committed while strace counted (leader's applied index, before and after) */
  straceEntries: number
  straceMs: number
  nodes: NodeCost[]
}

export function costReport (c: CostModel): string[] {
  const f = (x: number, d: number): string => Number.isFinite(x) ? x.toFixed(d) : '—'
  const w = 60
  const head = c.nodes.map((n) => `${n.role} ${n.name}`.padStart(16)).join(' ')
  const lines = [
    `Cost model (--cost-model): ${c.clients} clients to the leader of a fresh, profiled cluster, ${c.writes} writes in ${f(c.windowMs / 1000, 1)} s (${f(c.perSec, 0)}/s, slowed by the profiler).`,
    `CPU ms per write by stage: the main thread's CPU (/proc) split by the shares of V8's samples (${PROFILE_INTERVAL_US} µs) per stage, by script URL.`,
    `${'stage'.padEnd(w)} ${head}`
  ]
  for (const s of STAGES) lines.push(`${STAGE_NAMES[s].padEnd(w)} ${c.nodes.map((n) => f(n.stageMsPerWrite[s], 3).padStart(16)).join(' ')}`)
  lines.push(`${'= main thread'.padEnd(w)} ${c.nodes.map((n) => f(n.mainMsPerWrite, 3).padStart(16)).join(' ')}`)
  lines.push(`${'+ other threads (/proc all − main thread)'.padEnd(w)} ${c.nodes.map((n) => f(n.offMainMsPerWrite, 3).padStart(16)).join(' ')}`)
  const threadNames = [...new Set(c.nodes.flatMap((n) => Object.keys(n.threadsMsPerWrite ?? {})))]
    .filter((t) => c.nodes.some((n) => (n.threadsMsPerWrite?.[t] ?? 0) >= 0.005))
    .sort((a, b) => Math.max(...c.nodes.map((n) => n.threadsMsPerWrite?.[b] ?? 0)) - Math.max(...c.nodes.map((n) => n.threadsMsPerWrite?.[a] ?? 0)))
  // V8's profiler thread is the cost model's own overhead, like the profiler signals below
  const label = (t: string): string => t.startsWith('v8:Prof') ? `    of which thread "${t}" (the profiler's own)` : `    of which thread "${t}"`
  for (const t of threadNames) lines.push(`${label(t).padEnd(w)} ${c.nodes.map((n) => f(n.threadsMsPerWrite?.[t] ?? 0, 3).padStart(16)).join(' ')}`)
  lines.push(`${'= process, all threads (/proc user+sys)'.padEnd(w)} ${c.nodes.map((n) => f(n.procMsPerWrite, 3).padStart(16)).join(' ')}`)
  lines.push(`${'(event loop idle, % of sampled time)'.padEnd(w)} ${c.nodes.map((n) => f(100 * n.idleShare, 0).padStart(16)).join(' ')}`)
  lines.push('')
  lines.push(`Syscalls per write (strace -c -f, every thread, ${f(c.straceMs / 1000, 1)} s; ${c.straceEntries} Raft entries committed meanwhile; ptrace slows the nodes):`)
  const groups = Object.keys(c.nodes[0]?.syscallsPerWrite ?? {})
  for (const g of groups) lines.push(`${g.padEnd(w)} ${c.nodes.map((n) => f(n.syscallsPerWrite[g], 2).padStart(16)).join(' ')}`)
  return lines
}
