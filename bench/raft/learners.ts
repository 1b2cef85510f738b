// `bench:raft --learners N` (or a list, 0,5,15): what each extra replica costs the leader. After the
// voters form, more blixard-node processes start and join the way any new host does (cluster.join
// through a member, the leader adds it as a learner; node/membership.ts), and at each count the
// bench runs one closed loop against the leader and reads the leader's own CPU (user + sys from
// /proc) per committed write, and the commit latency.
//
// Autopilot (node/autopilot.ts) grows the voter set to 5 once 5 members are healthy, so "3 voters +
// N added nodes" is 5 voters + N-2 learners for N >= 2: the cluster an operator gets by adding N
// hosts. The table says how many of each the leader fed at every level.
import { readFileSync } from 'node:fs'
import { freemem } from 'node:os'
import { join } from 'node:path'
import { targetVoters } from '../../node/autopilot.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import type { RpcClient } from '../../node/net/rpc.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import type { BlixardBench, Status } from './blixard.ts'
import { adminWrite, rpcTo, rssMiB, waitForCluster } from './blixard.ts'
import { closedLoop, processCpuMs } from './load.ts'
import type { WriteFn } from './load.ts'

/** The most added nodes the bench starts: 15 × ~100–140 MiB RSS is ~2 GiB on top of the rest. */
export const MAX_LEARNERS = 15
/** A node starts every this many ms: libp2p takes 5 new connections a second from one IP
 * (inboundConnectionThreshold) and every node here is 127.0.0.1, each dialing all the others. */
const LEARNER_START_EVERY_MS = 700
/** How long the added nodes get to become members, settle the voter set and catch up. */
const LEARNER_SETTLE_MS = 180_000
/** Quiet time after the cluster settled, before the closed loop: catch-up traffic has drained. */
const LEARNER_QUIET_MS = 2_000
/** Then the leader's idle CPU is read over this long (no client writes; heartbeats, gossip, leases). */
const LEARNER_IDLE_MS = 4_000

export interface LearnerLevel {
  /** nodes added to the 3 voters for this level */
  added: number
  /** the configuration the leader fed during the level (from its cluster.status) */
  voters: number
  learners: number
  /** the configuration settled (all added nodes members and caught up) before the level */
  settled: boolean
  clients: number
  writes: number
  errors: number
  perSec: number
  p50Ms: number
  p99Ms: number
  /** the leader process's CPU (user + sys, all its threads) per committed write */
  leaderCpuMsPerWrite: number
  leaderCpuPct: number
  /** the leader's CPU with no client writes, just before the loop (what every write is charged a
   * share of), and the CPU per write above that idle rate */
  leaderIdleCpuPct: number
  leaderCpuMsPerWriteAboveIdle: number
  /** Raft messages the leader sent and received per committed write (its /metrics, by type) */
  leaderMsgsSentPerWrite: number
  leaderMsgsReceivedPerWrite: number
  /** of the sent: appends and heartbeats to learners would show here as MsgApp/MsgHeartbeat */
  leaderSentByType: Record<string, number>
  /** CPU of every blixard-node process (leader, followers, learners) per committed write */
  allNodesCpuMsPerWrite: number
  leaderRssMiB: number
  /** RSS summed over every running blixard-node process, and the machine's free memory */
  allNodesRssMiB: number
  freeMiB: number
}

export interface LearnerRun {
  b: BlixardBench
  /** the nodes to add, in order (their dirs and ports prepared, not started) */
  extra: LocalNode[]
  control: BlixardHost
  /** load hosts and the admin peer ids they sign as (parallel arrays), clients share them 32 to one */
  hosts: BlixardHost[]
  admins: string[]
  perConn: number
  clients: number
  warmupMs: number
  durationMs: number
  leader: () => Promise<LocalNode>
  say: (s: string) => void
}

/** Parses `--learners`: one count or a comma list; 0 is always measured first (the baseline). */
export function learnerCounts (arg: string | undefined): number[] {
  if (arg == null || arg.trim() === '') throw new Error(`--learners needs a count or a list (e.g. 15 or 0,5,15), from 0 to ${MAX_LEARNERS}`)
  const xs = arg.split(',').map((s) => Number(s.trim()))
  for (const x of xs) {
    if (!Number.isInteger(x) || x < 0 || x > MAX_LEARNERS) throw new Error(`--learners: ${JSON.stringify(arg)} must be counts from 0 to ${MAX_LEARNERS}, comma-separated`)
  }
  return [...new Set([0, ...xs])].sort((a, b) => a - b)
}

/** Started and not ended (exited, or killed by a signal). */
function alive (x: LocalNode): boolean {
  return x.proc != null && x.proc.exitCode == null && x.proc.signalCode == null
}

function lastLines (file: string, n: number): string {
  try { return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join(' | ') } catch { return '(no log)' }
}

export async function learnerScale (o: LearnerRun, counts: number[]): Promise<LearnerLevel[]> {
  const levels: LearnerLevel[] = []
  const reported = new Set<string>()
  let started = 0
  for (const n of counts) {
    for (; started < n; started++) {
      o.b.start(o.extra[started])
      await sleep(LEARNER_START_EVERY_MS)
    }
    const members = o.extra.slice(0, n)
    const settled = await settle(o, members)
    const leader = await o.leader()
    const st = await waitForCluster(o.control, leader, (s) => s.leader != null)
    await sleep(LEARNER_QUIET_MS)
    const running = (): LocalNode[] => o.b.nodes.filter(alive)
    // a node that ended is a finding, not a figure: say how, and what it logged last
    for (const x of o.b.nodes.filter((y) => y.proc != null && !alive(y) && !reported.has(y.name))) {
      reported.add(x.name)
      o.say(`learners: ${x.name} ended (exit ${x.proc?.exitCode ?? '-'}, signal ${x.proc?.signalCode ?? '-'}); its log ends: ${lastLines(join(x.dir, 'log'), 5)}`)
    }
    const pid = leader.proc?.pid
    const idle0 = processCpuMs(pid)
    const idleT0 = Date.now()
    await sleep(LEARNER_IDLE_MS)
    const idlePct = 100 * (processCpuMs(pid) - idle0) / (Date.now() - idleT0)
    const m0 = await raftMessages(leader)
    const conns = Math.ceil(o.clients / o.perConn)
    const rpcs: RpcClient[] = await Promise.all([...Array(o.clients).keys()].map(async (i) => await rpcTo(o.hosts[i % conns], leader)))
    const ws: WriteFn[] = rpcs.map((c, i) => { const w = adminWrite(c, o.admins[i % conns], `l${n}-${i}`); return async () => { await w() } })
    const r = await closedLoop(ws, o.warmupMs, o.durationMs, () => processCpuMs(leader.proc?.pid), () => running().reduce((a, x) => a + processCpuMs(x.proc?.pid), 0))
    const m1 = await raftMessages(leader)
    await Promise.all(rpcs.map(async (c) => { await c.close() }))
    const sentByType: Record<string, number> = {}
    for (const [t, v] of Object.entries(m1.sent)) { const d = v - (m0.sent[t] ?? 0); if (d > 0) sentByType[t] = d / Math.max(1, r.writes) }
    const sum = (x: Record<string, number>): number => Object.values(x).reduce((a, v) => a + v, 0)
    const rss = running().map((x) => rssMiB(x.proc?.pid ?? 0)).filter(Number.isFinite)
    const level: LearnerLevel = {
      added: n,
      voters: st.voters.length,
      learners: st.learners.length,
      settled,
      clients: o.clients,
      writes: r.writes,
      errors: r.errors,
      perSec: r.perSec,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      leaderCpuMsPerWrite: r.serverCpuMsPerWrite,
      leaderCpuPct: r.serverCpuPct,
      leaderIdleCpuPct: idlePct,
      // the loop's window is its duration (warm-up excluded): CPU% above idle, over the write rate
      leaderCpuMsPerWriteAboveIdle: r.perSec > 0 ? 10 * Math.max(0, r.serverCpuPct - idlePct) / r.perSec : NaN,
      leaderMsgsSentPerWrite: (sum(m1.sent) - sum(m0.sent)) / Math.max(1, r.writes),
      leaderMsgsReceivedPerWrite: (sum(m1.received) - sum(m0.received)) / Math.max(1, r.writes),
      leaderSentByType: sentByType,
      allNodesCpuMsPerWrite: r.allCpuMsPerWrite ?? NaN,
      leaderRssMiB: rssMiB(leader.proc?.pid ?? 0),
      allNodesRssMiB: rss.reduce((a, x) => a + x, 0),
      freeMiB: freemem() / 2 ** 20
    }
    levels.push(level)
    o.say(`learners +${n} (${level.voters} voters, ${level.learners} learners${settled ? '' : ', NOT settled'}): ${r.perSec.toFixed(0)}/s p50 ${r.p50Ms.toFixed(1)} p99 ${r.p99Ms.toFixed(1)} ms, leader ${level.leaderCpuMsPerWrite.toFixed(2)} cpu-ms/write (${r.serverCpuPct.toFixed(0)}%; idle ${idlePct.toFixed(1)}%, ${level.leaderCpuMsPerWriteAboveIdle.toFixed(2)} above idle), Raft msgs/write sent ${level.leaderMsgsSentPerWrite.toFixed(2)} ${JSON.stringify(Object.fromEntries(Object.entries(sentByType).map(([t, v]) => [t, Number(v.toFixed(2))])))} received ${level.leaderMsgsReceivedPerWrite.toFixed(2)}, all nodes ${level.allNodesCpuMsPerWrite.toFixed(2)}; RSS leader ${level.leaderRssMiB.toFixed(0)} MiB, all ${level.allNodesRssMiB.toFixed(0)} MiB, free ${level.freeMiB.toFixed(0)} MiB; ${r.errors} errors`)
  }
  return levels
}

/** Waits until every added node is a member, no joint change is in flight, the voter count is
 * autopilot's target, and every added node has applied what the leader had committed. Answers
 * false (and the level is measured anyway, marked) if that takes longer than LEARNER_SETTLE_MS. */
async function settle (o: LearnerRun, added: LocalNode[]): Promise<boolean> {
  const deadline = Date.now() + LEARNER_SETTLE_MS
  const ids = new Set(added.map((x) => x.peerId))
  const total = 3 + added.length
  const confDone = (s: Status): boolean => s.leader != null && s.joint == null && s.voters.length + s.learners.length === total &&
    [...ids].every((id) => s.voters.includes(id) || s.learners.includes(id)) &&
    s.voters.length === targetVoters(s.voters.length + s.learners.length)
  try {
    const lead = await waitForCluster(o.control, await o.leader(), confDone, Math.max(1_000, deadline - Date.now()))
    for (const x of added) await waitForCluster(o.control, x, (s) => s.applied >= lead.commit, Math.max(1_000, deadline - Date.now()))
    return true
  } catch (err) {
    o.say(`learners: ${added.length} added nodes did not settle in ${LEARNER_SETTLE_MS / 1000} s (${(err as Error).message}); measuring anyway`)
    return false
  }
}

/** The table and the target line (leader CPU per write with the most learners <= 2x with none). */
export function learnerReport (levels: LearnerLevel[]): { lines: string[], target: { added: number, ratio: number, want: string, pass: boolean } | null } {
  const base = levels.find((l) => l.added === 0)
  const f = (x: number, d: number): string => Number.isFinite(x) ? x.toFixed(d) : '—'
  const lines = [
    `Replica set (--learners): nodes added to the 3 voters, ${levels[0]?.clients ?? '?'} clients to the leader; leader CPU = the leader process (user + sys) per committed write.`,
    `${'added'.padStart(5)} ${'voters'.padStart(6)} ${'learn'.padStart(5)} ${'writes/s'.padStart(9)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'leader cpu-ms/w'.padStart(15)} ${'x N=0'.padStart(6)} ${'idle %'.padStart(6)} ${'above idle'.padStart(10)} ${'x N=0'.padStart(6)} ${'msgs out/in per w'.padStart(17)} ${'all cpu-ms/w'.padStart(12)} ${'leader RSS'.padStart(10)} ${'all RSS MiB'.padStart(11)} ${'free MiB'.padStart(8)}`
  ]
  for (const l of levels) {
    lines.push(`${String(l.added).padStart(5)} ${String(l.voters).padStart(6)} ${String(l.learners).padStart(5)} ${f(l.perSec, 0).padStart(9)} ${f(l.p50Ms, 1).padStart(7)} ${f(l.p99Ms, 1).padStart(7)} ${f(l.leaderCpuMsPerWrite, 3).padStart(15)} ${(base == null ? '—' : f(l.leaderCpuMsPerWrite / base.leaderCpuMsPerWrite, 2)).padStart(6)} ${f(l.leaderIdleCpuPct, 1).padStart(6)} ${f(l.leaderCpuMsPerWriteAboveIdle, 3).padStart(10)} ${(base == null ? '—' : f(l.leaderCpuMsPerWriteAboveIdle / base.leaderCpuMsPerWriteAboveIdle, 2)).padStart(6)} ${`${f(l.leaderMsgsSentPerWrite, 2)} / ${f(l.leaderMsgsReceivedPerWrite, 2)}`.padStart(17)} ${f(l.allNodesCpuMsPerWrite, 2).padStart(12)} ${f(l.leaderRssMiB, 0).padStart(10)} ${f(l.allNodesRssMiB, 0).padStart(11)} ${f(l.freeMiB, 0).padStart(8)}${l.settled ? '' : '  (not settled)'}${l.errors > 0 ? `  ${l.errors} errors` : ''}`)
  }
  const top = levels[levels.length - 1]
  if (base == null || top == null || top === base) return { lines, target: null }
  const ratio = top.leaderCpuMsPerWrite / base.leaderCpuMsPerWrite
  if (!Number.isFinite(ratio)) {
    lines.push(`target: leader CPU per write with ${top.added} learners <= 2x with 0: not measured (a level committed no write in its window; a longer --duration?)`)
    return { lines, target: null }
  }
  const target = { added: top.added, ratio, want: '<= 2', pass: ratio <= 2 }
  lines.push(`target: leader CPU per write with ${top.added} learners <= 2x with 0: ${f(ratio, 2)}x ${target.pass ? 'PASS' : 'MISS'} (${top.added} added nodes: ${top.voters} voters, ${top.learners} learners)`)
  return { lines, target }
}

/** The leader's Raft messages sent and received so far, by type (blixard_raft_messages_*_total). */
async function raftMessages (x: LocalNode): Promise<{ sent: Record<string, number>, received: Record<string, number> }> {
  const out = { sent: {} as Record<string, number>, received: {} as Record<string, number> }
  try {
    const text = await (await fetch(`http://127.0.0.1:${x.metricsPort}/metrics`)).text()
    for (const line of text.split('\n')) {
      const m = /^blixard_raft_messages_(sent|received)_total\{type="(\w+)"\} (\d+)/.exec(line)
      if (m != null) out[m[1] as 'sent' | 'received'][m[2]] = Number(m[3])
    }
  } catch { /* no metrics: the counts read 0 */ }
  return out
}

async function sleep (ms: number): Promise<void> { await new Promise((resolve) => setTimeout(resolve, ms)) }
