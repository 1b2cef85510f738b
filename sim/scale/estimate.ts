// The estimate table: for each topology and host count, one scale run (run.ts), priced by the
// cost model (cost.ts) calibrated on the leader-fed 3-host run of the same workload.
import { DEFAULT_COST, calibrate, cpuMsPerWrite } from './cost.ts'
import type { Calibration, CostParams, Traffic } from './cost.ts'
import { runScale } from './run.ts'
import type { NodeReport, ScaleOptions, ScaleResult } from './run.ts'
import { TOPOLOGY_LETTER } from './topology.ts'
import type { Topology } from './topology.ts'
import type { Violation } from '../checkers/checker.ts'

export interface EstimateRow {
  topology: Topology
  letter: string
  hosts: number
  voters: number
  learners: number
  watchers: number
  depth: number
  leaderFramesSentPerWrite: number
  leaderFramesRecvPerWrite: number
  leaderBytesSentPerWrite: number
  leaderCpuMsPerWrite: number
  /** the non-leader that costs most per write, and its CPU */
  busiest: { id: string, role: string, cpuMsPerWrite: number } | null
  lagP50Ticks: number
  lagP99Ticks: number
  converged: boolean
  violations: Violation[]
  reattaches: number
  /** linearizable reads from non-leader hosts: the leader's frames per read, latency at the asker */
  readLeaderFrames: number
  readP50Ticks: number
  readP99Ticks: number
  readsAnswered: number
}

export interface Estimate {
  params: CostParams
  calibration: Calibration
  rows: EstimateRow[]
}

export type RunOptions = Partial<Omit<ScaleOptions, 'topology' | 'hosts'>>

function cpuOf (n: NodeReport, c: Calibration, p: CostParams): number {
  return cpuMsPerWrite(n.role === 'leader' ? 'leader' : n.role === 'host' ? 'host' : n.role === 'learner' ? 'learner' : 'follower', n.perWrite, c, p)
}

export function rowOf (r: ScaleResult, c: Calibration, p: CostParams): EstimateRow {
  const lead = r.leader
  let busiest: EstimateRow['busiest'] = null
  for (const n of r.nodes) {
    if (n.role === 'leader') continue
    const cpu = cpuOf(n, c, p)
    if (busiest === null || cpu > busiest.cpuMsPerWrite) busiest = { id: n.id, role: n.role, cpuMsPerWrite: cpu }
  }
  return {
    topology: r.topology,
    letter: TOPOLOGY_LETTER[r.topology],
    hosts: r.hosts,
    voters: r.voters,
    learners: r.learners,
    watchers: r.watchers,
    depth: r.depth,
    leaderFramesSentPerWrite: lead?.perWrite.framesSent ?? NaN,
    leaderFramesRecvPerWrite: lead?.perWrite.framesRecv ?? NaN,
    leaderBytesSentPerWrite: lead?.perWrite.bytesSent ?? NaN,
    leaderCpuMsPerWrite: lead === null ? NaN : cpuOf(lead, c, p),
    busiest,
    lagP50Ticks: r.lagTicks.p50,
    lagP99Ticks: r.lagTicks.p99,
    converged: r.converged,
    violations: r.violations,
    reattaches: r.reattaches,
    readLeaderFrames: r.reads.leaderFramesPerRead,
    readP50Ticks: r.reads.latencyTicks.p50,
    readP99Ticks: r.reads.latencyTicks.p99,
    readsAnswered: r.reads.answered
  }
}

/** The calibration point: the leader-fed 3-host run of the same workload (no faults, no loss). */
export function calibrationOf (o: RunOptions, p: CostParams): Calibration {
  const r = runScale({ ...o, faults: false, loss: 0, topology: 'leader-fed', hosts: 3 })
  const leader = r.leader
  const follower = r.nodes.find((n) => n.role === 'follower')
  if (leader === null || follower === undefined) throw new Error('cost calibration: the 3-host run had no leader or no follower')
  return calibrate(leader.perWrite, follower.perWrite, p)
}

export function estimate (topologies: readonly Topology[], hosts: readonly number[], o: RunOptions = {}, p: CostParams = DEFAULT_COST, progress?: (row: EstimateRow) => void): Estimate {
  const calibration = calibrationOf(o, p)
  const rows: EstimateRow[] = []
  for (const t of topologies) {
    for (const n of hosts) {
      const row = rowOf(runScale({ ...o, topology: t, hosts: n }), calibration, p)
      rows.push(row)
      progress?.(row)
    }
  }
  return { params: p, calibration, rows }
}

const f = (x: number, d: number): string => Number.isFinite(x) ? x.toFixed(d) : '—'

export function estimateTable (e: Estimate): string[] {
  const head = `${'top'.padEnd(17)} ${'hosts'.padStart(5)} ${'V/L/W'.padStart(12)} ${'depth'.padStart(5)} ${'ldr frames/w'.padStart(12)} ${'ldr KiB/w'.padStart(9)} ${'ldr cpu-ms/w'.padStart(12)} ${'busiest other cpu-ms/w'.padStart(26)} ${'lag p50/p99 ticks'.padStart(17)} ${'read: ldr frames'.padStart(16)} ${'p50/p99 ticks'.padStart(13)} ok`
  const lines = [
    `cost model: ${e.params.msgMs} ms per frame sent or received, ${(e.params.byteMs * 1e6).toFixed(1)} ns per byte; fixed per write: leader ${e.calibration.leaderFixedMs.toFixed(3)} ms, replica ${e.calibration.followerFixedMs.toFixed(3)} ms (calibrated to ${e.params.leaderMsPerWrite} / ${e.params.followerMsPerWrite} ms at leader-fed, 3 hosts)`,
    head
  ]
  for (const r of e.rows) {
    const vlw = `${r.voters}/${r.learners}/${r.watchers}`
    const frames = `${f(r.leaderFramesSentPerWrite, 2)}+${f(r.leaderFramesRecvPerWrite, 2)}`
    const busy = r.busiest === null ? '—' : `${f(r.busiest.cpuMsPerWrite, 3)} (${r.busiest.role} ${r.busiest.id})`
    const ok = (r.violations.length === 0 ? 'yes' : `NO: ${r.violations.length} violations`) + (r.reattaches > 0 ? ` (${r.reattaches} moved)` : '')
    lines.push(`${`(${r.letter}) ${r.topology}`.padEnd(17)} ${String(r.hosts).padStart(5)} ${vlw.padStart(12)} ${String(r.depth).padStart(5)} ${frames.padStart(12)} ${f(r.leaderBytesSentPerWrite / 1024, 2).padStart(9)} ${f(r.leaderCpuMsPerWrite, 3).padStart(12)} ${busy.padStart(26)} ${`${f(r.lagP50Ticks, 2)} / ${f(r.lagP99Ticks, 2)}`.padStart(17)} ${f(r.readLeaderFrames, 1).padStart(16)} ${`${f(r.readP50Ticks, 2)} / ${f(r.readP99Ticks, 2)}`.padStart(13)} ${ok}`)
  }
  return lines
}
