// When the rebalancer acts (issue 19), around the greedy plan of rebalance.ts: hysteresis (start
// above one imbalance, stop below a lower one, so a cluster near the threshold does not start and
// stop by turns), a budget (moves in flight at once, moves started per hour), a per-VM cooldown (a
// VM moved lately is not a candidate), a minimum gain per move (no migration for a rounding-sized
// improvement), and gossiped load (a node whose fresh report says it is hot takes no VM).
// Pure: the clock, the load and the history come in as arguments.
//
// The objective is the population variance of node fill over ready nodes (rebalance.ts
// `imbalance`): committed reservations, which a move changes by a known amount. Gossiped load is
// not in it (a move's effect on a host's measured pressure is not known in advance); it only
// keeps VMs off hot nodes.
import type { PlacementCluster, PlacementConfig } from '../types.ts'
import type { PlacementConfigInput } from '../config.ts'
import { resolveConfig } from '../config.ts'
import { imbalance, planRebalance } from './rebalance.ts'

export interface RebalancePolicy {
  /** start moving once the imbalance (variance of fill) exceeds this */
  startAbove: number
  /** once moving, keep on until it is below this (< startAbove: the hysteresis band) */
  stopBelow: number
  /** live migrations of the rebalancer in flight at once */
  maxConcurrent: number
  /** migrations it starts in any hour */
  maxPerHour: number
  /** a VM moved (by anyone) this recently is not moved */
  cooldownMs: number
  /** a move must lower the imbalance by at least this */
  minGain: number
}

/** Defaults: a variance of 0.02 is a fill spread of about ±14 %, 0.005 about ±7 %. */
export const DEFAULT_REBALANCE_POLICY: RebalancePolicy = {
  startAbove: 0.02,
  stopBelow: 0.005,
  maxConcurrent: 2,
  maxPerHour: 20,
  cooldownMs: 30 * 60_000,
  minGain: 1e-4
}

export const HOUR_MS = 3_600_000

/** What the leader remembers between steps (soft state: a new leader starts inactive, empty). */
export interface RebalanceMemory {
  /** inside the hysteresis band: moving until below stopBelow */
  active: boolean
  /** when each move of the last hour started (leader's clock) */
  started: number[]
}

export const FRESH_MEMORY: RebalanceMemory = { active: false, started: [] }

export interface RebalanceInput {
  cluster: PlacementCluster
  /** VMs that may move now (running, live-migratable, not migrating); others stay but count */
  movable: ReadonlySet<string>
  /** the last time each VM moved (ended, or started if still moving), when known */
  lastMoved: ReadonlyMap<string, number>
  /** the rebalancer's own migrations in flight */
  inFlight: number
  now: number
  memory: RebalanceMemory
}

export interface RebalanceStep {
  moves: Array<{ vmId: string, from: string, to: string, gain: number }>
  before: number
  after: number
  memory: RebalanceMemory
  /** why it planned what it did (or nothing) */
  why: string
}

/** Hot by a fresh gossiped report: cpu or memory above hotPct. */
export function hotNodes (cluster: PlacementCluster, config: PlacementConfig): Set<string> {
  const out = new Set<string>()
  for (const n of cluster.nodes) {
    const l = n.load
    if (l !== null && l.ageMs <= config.staleMs && Math.max(l.cpuPct, l.memPct) > config.hotPct) out.add(n.id)
  }
  return out
}

export function planRebalanceStep (input: RebalanceInput, policy: RebalancePolicy = DEFAULT_REBALANCE_POLICY, configIn: PlacementConfigInput | PlacementConfig = {}): RebalanceStep {
  const config = resolveConfig(configIn)
  const before = imbalance(input.cluster.nodes)
  const started = input.memory.started.filter((t) => input.now - t < HOUR_MS)
  let active = input.memory.active
  if (!active && before > policy.startAbove) active = true
  if (active && before < policy.stopBelow) active = false
  const none = (why: string): RebalanceStep => ({ moves: [], before, after: before, memory: { active, started }, why })
  if (!active) return none(`imbalance ${before.toFixed(4)} is not above ${policy.startAbove} (or fell below ${policy.stopBelow}): nothing to do`)
  const budget = Math.min(policy.maxConcurrent - input.inFlight, policy.maxPerHour - started.length)
  if (budget <= 0) return none(input.inFlight >= policy.maxConcurrent ? `${input.inFlight} moves in flight (at most ${policy.maxConcurrent})` : `${started.length} moves started in the last hour (at most ${policy.maxPerHour})`)
  const candidates = { ...input.cluster, placed: input.cluster.placed.filter((p) => input.movable.has(p.request.vmId) && !(input.now - (input.lastMoved.get(p.request.vmId) ?? -Infinity) < policy.cooldownMs)) }
  const plan = planRebalance(candidates, config, { maxMoves: budget, excludeTargets: hotNodes(input.cluster, config) })
  // keep the moves while each one gains enough (the greedy order puts the largest gains first)
  const moves: RebalanceStep['moves'] = []
  let c = input.cluster
  let cur = before
  for (const m of plan.moves) {
    const next = applyMove(c, m.vmId, m.from, m.to)
    const after = imbalance(next.nodes)
    if (!(cur - after >= policy.minGain)) break
    moves.push({ ...m, gain: cur - after })
    c = next
    cur = after
  }
  if (moves.length === 0) return none(`imbalance ${before.toFixed(4)}, but no allowed move lowers it by ${policy.minGain} or more (cooldowns, hot or full targets)`)
  return { moves, before, after: cur, memory: { active, started: [...started, ...moves.map(() => input.now)] }, why: `imbalance ${before.toFixed(4)} → ${cur.toFixed(4)} in ${moves.length} move${moves.length === 1 ? '' : 's'}` }
}

/** The cluster with one VM moved (reservations moved with it). */
export function applyMove (c: PlacementCluster, vmId: string, from: string, to: string): PlacementCluster {
  const p = c.placed.find((x) => x.request.vmId === vmId && x.nodeId === from)
  if (p === undefined) return c
  const r = p.request.resources
  const g = p.request.antiAffinityGroup
  const nodes = c.nodes.map((n) => {
    if (n.id !== from && n.id !== to) return n
    const s = n.id === from ? -1 : 1
    const groups = { ...n.groups }
    if (g !== null) { const k = (groups[g] ?? 0) + s; if (k > 0) groups[g] = k; else delete groups[g] }
    return { ...n, reserved: { cpu: n.reserved.cpu + s * r.cpu, memoryMiB: n.reserved.memoryMiB + s * r.memoryMiB, diskGiB: n.reserved.diskGiB + s * r.diskGiB }, vmCount: n.vmCount + s, groups }
  })
  return { nodes, placed: c.placed.map((x) => x === p ? { ...x, nodeId: to } : x) }
}
