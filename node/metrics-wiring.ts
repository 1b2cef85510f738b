// What feeds node/metrics.ts and the load gossip from a running daemon: this host's load sample,
// the scheduler's load hints (with their age as a gauge), and the gauges read at scrape time.
import { cpus, freemem, loadavg, totalmem } from 'node:os'
import { statfs } from 'node:fs/promises'
import type { StateMachine } from '../storage/state-machine.ts'
import type { LoadHint } from '../placement/types.ts'
import type { RaftStatus } from '../protocols/raft/rawnode.ts'
import type { LoadGossip } from './net/load-gossip.ts'
import type { NodeMetrics } from './metrics.ts'
import type { RpcServerStats } from './net/rpc.ts'
import { partialFrameBytes } from './net/frame-stream.ts'

export interface WarmCount { pool: string, guests: number, paused: number }
export interface LoadSample { cpuPct: number, memPct: number, diskPct: number, vmCount: number, appliedIndex: number, warm?: WarmCount[] }

/** This host's load for the gossip: cpu (1-minute load average over cores), memory, the data
 * dir's disk, the VMs placed here, and its warm pool guests (node/pools/service.ts report(); the
 * field is left out when there are none). */
export async function sampleHostLoad (dataDir: string, sm: StateMachine, self: string, warm: WarmCount[] = []): Promise<LoadSample> {
  let diskPct = 0
  try { const s = await statfs(dataDir); diskPct = 100 * (1 - s.bavail / Math.max(1, s.blocks)) } catch { diskPct = 0 }
  return {
    cpuPct: Math.min(100, 100 * loadavg()[0] / Math.max(1, cpus().length)),
    memPct: Math.min(100, 100 * (1 - freemem() / totalmem())),
    diskPct: Math.min(100, Math.max(0, diskPct)),
    vmCount: sm.listVms({ node: self }).length,
    appliedIndex: sm.applied(),
    ...(warm.length > 0 ? { warm } : {})
  }
}

export interface NodeGaugeSources {
  metrics: NodeMetrics
  load: () => LoadGossip
  connections: () => number
  sm: StateMachine
  raft: () => RaftStatus | undefined
  /** the RPC server's counters (undefined before the host is up) */
  rpc: () => RpcServerStats | undefined
}

export class NodeGauges {
  private gossipRejectedSeen = 0

  constructor (private readonly s: NodeGaugeSources) {}

  /** The freshest gossip load per node, for placement; each report's age is exported too. */
  loadHints (): Map<string, LoadHint> {
    const out = new Map<string, LoadHint>()
    for (const r of this.s.load().reports()) {
      out.set(r.node, { cpuPct: r.cpuPct, memPct: r.memPct, ageMs: r.ageMs, ...(r.warm !== undefined ? { warm: Object.fromEntries(r.warm.map((w) => [w.pool, w.paused])) } : {}) })
      this.s.metrics.gossipReportAge.set({ node: r.node }, r.ageMs / 1000)
    }
    return out
  }

  connectionsChanged (): void { this.s.metrics.libp2pConnections.set(this.s.connections()) }

  /** Gauges read at scrape time (called by /metrics), so they are fresh on every node, leader or not. */
  refresh (): void {
    const m = this.s.metrics
    const load = this.s.load()
    m.gossipReportAge.reset()
    for (const r of load.reports()) m.gossipReportAge.set({ node: r.node }, r.ageMs / 1000)
    const rejected = load.rejected()
    if (rejected > this.gossipRejectedSeen) m.gossipReports.inc({ result: 'rejected' }, rejected - this.gossipRejectedSeen)
    this.gossipRejectedSeen = rejected
    this.connectionsChanged()
    const phases: Record<string, number> = {}
    for (const vm of this.s.sm.eachVm()) phases[vm.status.phase] = (phases[vm.status.phase] ?? 0) + 1
    m.vmsByPhase.reset()
    for (const [p, n] of Object.entries(phases)) m.vmsByPhase.set({ phase: p }, n)
    const st = this.s.raft()
    if (st != null) { m.raftTerm.set(st.term); m.raftCommitIndex.set(st.commit); m.raftIsLeader.set(st.role === 'leader' ? 1 : 0) }
    m.raftAppliedIndex.set(this.s.sm.applied())
    const rpc = this.s.rpc()
    if (rpc != null) {
      m.rpcHeld.set({ what: 'inflight' }, rpc.inflight)
      m.rpcHeld.set({ what: 'queued_answer_bytes' }, rpc.queuedAnswerBytes)
      m.rpcHeld.set({ what: 'streams' }, rpc.streams)
      m.rpcHeld.set({ what: 'connections' }, rpc.connections)
      m.rpcHeld.set({ what: 'watches' }, rpc.watches)
    }
    m.rpcHeld.set({ what: 'partial_frame_bytes' }, partialFrameBytes())
  }
}
