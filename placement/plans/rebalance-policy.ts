// When the rebalancer acts, around the greedy plan of rebalance.ts, in one of two modes:
// - `join` (the default): only new or emptied nodes are filled. A node that joined or became ready
//   (from a drain, say) with no VM at all while the other ready nodes are loaded is remembered as
//   filling; moves go only into filling nodes and only out of the others, until no
//   allowed move into a filling node gains enough, and then it is an ordinary node again.
// - `skew` (opt-in): any move that lowers the imbalance, with hysteresis (start above one
//   imbalance, stop below a lower one, so a cluster near the threshold does not start and stop by
//   turns).
// Both keep a budget (moves in flight at once, moves started per hour), a per-VM cooldown (a VM
// moved lately, live or cold, is not a candidate), a minimum gain per move (no migration for a
// rounding-sized improvement), and gossiped load (a node whose fresh report says it is hot takes
// no VM). Pure: the clock, the load and the history come in as arguments.
//
// The objective is the population variance of node fill over ready nodes (rebalance.ts
// `imbalance`): committed reservations, which a move changes by a known amount. Gossiped load is
// not in it (a move's effect on a host's measured pressure is not known in advance); it only
// keeps VMs off hot nodes. Every move lowers it, so on a cluster that does not change the moves
// end (it is bounded below), and none undoes another: no oscillation, whatever the mode.
import type { PlacementCluster, PlacementConfig, PlacementNode } from '../types.ts'
import { fill } from '../scorers.ts'
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
  /** a move must lower the sum over ready nodes of the squared distance from the mean fill (the
   * imbalance × the number of ready nodes) by at least this: the same bar on 4 nodes and on 1 000,
   * where one move changes the variance itself 250 times less */
  minGain: number
  /** join mode: an empty node is filled only while the other ready nodes' mean fill is above this
   * (a cluster barely used gains nothing from moving guests onto a new node) */
  joinLoadedAbove: number
}

/** off: the leader moves nothing by itself; join: it fills new and emptied nodes; skew: it evens
 * out any imbalance above the policy's start threshold. */
export const REBALANCE_MODES = ['off', 'join', 'skew'] as const
export type RebalanceMode = typeof REBALANCE_MODES[number]
export const DEFAULT_REBALANCE_MODE: RebalanceMode = 'join'

/** Defaults: a variance of 0.02 is a fill spread of about ±14 %, 0.005 about ±7 %. */
export const DEFAULT_REBALANCE_POLICY: RebalancePolicy = {
  startAbove: 0.02,
  stopBelow: 0.005,
  maxConcurrent: 2,
  maxPerHour: 20,
  cooldownMs: 30 * 60_000,
  minGain: 1e-4,
  joinLoadedAbove: 0.1
}

export const HOUR_MS = 3_600_000

/** What the leader remembers between steps (soft state: a new leader starts inactive, empty). */
export interface RebalanceMemory {
  /** inside the hysteresis band: moving until below stopBelow */
  active: boolean
  /** when each move of the last hour started (leader's clock) */
  started: number[]
  /** join mode: the nodes being filled (seen empty while the others were loaded), in that order */
  filling: string[]
}

export const FRESH_MEMORY: RebalanceMemory = { active: false, started: [], filling: [] }

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
  /** which moves are allowed (default skew: any that lowers the imbalance) */
  mode?: Exclude<RebalanceMode, 'off'>
  /** join mode: nodes that joined or became ready since the last step (candidates for filling) */
  noted?: readonly string[]
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
  const mode = input.mode ?? 'skew'
  const before = imbalance(input.cluster.nodes)
  const started = input.memory.started.filter((t) => input.now - t < HOUR_MS)
  const ready = input.cluster.nodes.filter((n) => n.state === 'ready')
  let active = input.memory.active
  let filling: string[] = []
  if (mode === 'skew') {
    if (!active && before > policy.startAbove) active = true
    if (active && before < policy.stopBelow) active = false
  } else {
    filling = joinTargets(ready, input.memory.filling, input.noted ?? [], policy)
    active = filling.length > 0
  }
  const none = (why: string, keep = filling): RebalanceStep => ({ moves: [], before, after: before, memory: { active: mode === 'join' ? keep.length > 0 : active, started, filling: keep }, why })
  if (!active) {
    return none(mode === 'skew'
      ? `imbalance ${before.toFixed(4)} is not above ${policy.startAbove} (or fell below ${policy.stopBelow}): nothing to do`
      : `no new node to fill (join mode: a node that joins or becomes ready with no VM is filled while the other nodes' mean fill is above ${policy.joinLoadedAbove})`)
  }
  const budget = Math.min(policy.maxConcurrent - input.inFlight, policy.maxPerHour - started.length)
  if (budget <= 0) return none(input.inFlight >= policy.maxConcurrent ? `${input.inFlight} moves in flight (at most ${policy.maxConcurrent})` : `${started.length} moves started in the last hour (at most ${policy.maxPerHour})`)
  const candidates = { ...input.cluster, placed: input.cluster.placed.filter((p) => input.movable.has(p.request.vmId) && !(input.now - (input.lastMoved.get(p.request.vmId) ?? -Infinity) < policy.cooldownMs)) }
  const hot = hotNodes(input.cluster, config)
  const fillingSet = new Set(filling)
  // join: into the filling nodes only, out of the others only
  const excludeTargets = mode === 'skew' ? hot : new Set([...hot, ...ready.filter((n) => !fillingSet.has(n.id)).map((n) => n.id)])
  const plan = planRebalance(candidates, config, { maxMoves: budget, excludeTargets, ...(mode === 'join' ? { excludeSources: fillingSet } : {}) })
  // keep the moves while each one gains enough (the greedy order puts the largest gains first)
  const moves: RebalanceStep['moves'] = []
  let c = input.cluster
  let cur = before
  for (const m of plan.moves) {
    const next = applyMove(c, m.vmId, m.from, m.to)
    const after = imbalance(next.nodes)
    if (!((cur - after) * ready.length >= policy.minGain)) break
    moves.push({ ...m, gain: cur - after })
    c = next
    cur = after
  }
  // once the plan ran out of moves (not of budget), a filling node none went to is filled (or
  // cannot be, for now: cooldowns, full): an ordinary node from now on; one that is hot keeps its
  // place (it may cool down)
  const into = new Set(moves.map((m) => m.to))
  const kept = moves.length < budget ? filling.filter((id) => into.has(id) || hot.has(id)) : filling
  if (moves.length === 0) return none(`imbalance ${before.toFixed(4)}, but no allowed move ${mode === 'join' ? `into ${filling.length === 1 ? 'the node' : 'the nodes'} being filled ` : ''}lowers it enough (cooldowns, hot or full targets)`, kept)
  return {
    moves, before, after: cur,
    memory: { active: mode === 'join' ? kept.length > 0 : active, started: [...started, ...moves.map(() => input.now)], filling: kept },
    why: `${mode === 'join' ? `filling ${filling.length === 1 ? 'a new node' : `${filling.length} new nodes`}: ` : ''}imbalance ${before.toFixed(4)} → ${cur.toFixed(4)} in ${moves.length} move${moves.length === 1 ? '' : 's'}`
  }
}

/** Join mode's targets: the nodes still being filled (ready ones), then each node that just joined
 * or became ready (`noted`: the shell hears of it as the command applies) if it is ready with no
 * VM at all (none placed, none moving in) while the other ready nodes are loaded. Only those: a
 * node that has long been empty is the operator's business (skew mode evens it out). */
export function joinTargets (ready: readonly PlacementNode[], filling: readonly string[], noted: readonly string[], policy: RebalancePolicy): string[] {
  const byId = new Map(ready.map((n) => [n.id, n]))
  const out = filling.filter((id) => byId.has(id))
  const fresh = noted.filter((id) => byId.get(id)?.vmCount === 0 && !out.includes(id))
  if (fresh.length === 0) return out
  const others = ready.filter((n) => n.vmCount > 0)
  if (others.length === 0) return out
  const mean = others.reduce((s, n) => s + fill(n), 0) / others.length
  if (!(mean > policy.joinLoadedAbove)) return out
  return [...out, ...new Set(fresh)]
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
