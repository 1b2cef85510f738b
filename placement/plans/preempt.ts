// Priority preemption: when nothing fits, a VM may evict strictly lower-priority VMs from one node. For each
// node that passes the non-capacity filters, evict the least important VMs first (lowest priority, then
// largest, then id) until the request fits, then drop any eviction that turned out unnecessary. Among
// nodes, choose the one whose evictions cost least: highest evicted priority, then count, then memory freed,
// then node id. The evicted VMs are returned for re-queueing. Anti-affinity conflicts with lower-priority
// members of the group are resolved by evicting them too. A VM marked `preemptible: false` is never evicted
// (nor is an anti-affinity member so marked: that node is not an option). The plan says why, in words.
import type { PlacementCluster, PlacementConfig, PlacementNode, PlacementRequest } from '../types.ts'
import type { PlacementConfigInput } from '../config.ts'
import type { PreemptionPlan } from './types.ts'
import { Placer, cloneNode } from '../placer.ts'
import { feasible, stateFilter, constraintFilter, capabilityFilter } from '../filters.ts'
import { reserve } from '../from-model.ts'

function evictionOrder (a: PlacementRequest, b: PlacementRequest): number {
  return (a.priority - b.priority) || (b.resources.memoryMiB - a.resources.memoryMiB) || (b.resources.cpu - a.resources.cpu) || (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0)
}

interface Option { node: PlacementNode, evict: PlacementRequest[], cost: [number, number, number] }

/** Planted bugs for the simulator (sim/, `--bug preempt-equal`): its checker must catch a planner
 * (and an apply re-check: storage/apply-sched.ts) that evicts an equal-priority VM. Never set in a daemon. */
export const PREEMPT_BUGS = ['preempt-equal'] as const
export type PreemptBug = typeof PREEMPT_BUGS[number]
const NO_BUGS: ReadonlySet<PreemptBug> = new Set()

export function planPreemption (cluster: PlacementCluster, req: PlacementRequest, config: PlacementConfigInput | PlacementConfig = {}, bugs: ReadonlySet<PreemptBug> = NO_BUGS): PreemptionPlan {
  const placer = new Placer(cluster, config)
  const d = placer.place(req)
  if (d.nodeId !== null) return { vmId: req.vmId, nodeId: d.nodeId, evictions: [], requeue: [], reason: `fits on ${d.nodeId} without evicting anything` }
  const onNode = new Map<string, PlacementRequest[]>()
  for (const p of cluster.placed) {
    const list = onNode.get(p.nodeId) ?? []
    list.push(p.request)
    onNode.set(p.nodeId, list)
  }
  let best: Option | null = null
  let candidates = 0
  for (const node of placer.nodes) {
    if (!stateFilter.passes(node, req) || !constraintFilter.passes(node, req) || !capabilityFilter.passes(node, req)) continue
    candidates++
    const vms = onNode.get(node.id) ?? []
    const g = req.antiAffinityGroup
    const forced = g === null ? [] : vms.filter((v) => v.antiAffinityGroup === g)
    if (forced.some((v) => !evictable(v, req, bugs))) continue
    const work = cloneNode(node)
    const evict: PlacementRequest[] = []
    for (const v of forced) { reserve(work, v, -1); evict.push(v) }
    const order = vms.filter((v) => evictable(v, req, bugs) && !evict.includes(v)).sort(evictionOrder)
    for (const v of order) {
      if (feasible(work, req)) break
      reserve(work, v, -1)
      evict.push(v)
    }
    if (!feasible(work, req)) continue
    // keep VMs whose eviction was not needed after all (try the most important first)
    for (let k = evict.length - 1; k >= forced.length; k--) {
      reserve(work, evict[k], 1)
      if (feasible(work, req)) evict.splice(k, 1)
      else reserve(work, evict[k], -1)
    }
    const cost: [number, number, number] = [Math.max(...evict.map((v) => v.priority)), evict.length, evict.reduce((s, v) => s + v.resources.memoryMiB, 0)]
    if (best === null || lessCost(cost, node.id, best.cost, best.node.id)) best = { node, evict, cost }
  }
  if (best === null) {
    const reason = candidates === 0
      ? 'no node passes its state, constraint and capability filters: evicting VMs would not help'
      : `no node would fit it even after evicting every preemptible VM of priority below ${req.priority} (${candidates} node${candidates === 1 ? '' : 's'} tried)`
    return { vmId: req.vmId, nodeId: null, evictions: [], requeue: [], reason }
  }
  const evict = [...best.evict].sort((a, b) => a.vmId < b.vmId ? -1 : 1)
  const reason = `evicts ${evict.map((v) => `${v.vmId} (priority ${v.priority})`).join(', ')} on ${best.node.id}: the cheapest node (highest evicted priority ${best.cost[0]}, ${best.cost[1]} VM${best.cost[1] === 1 ? '' : 's'}, ${best.cost[2]} MiB freed)`
  return { vmId: req.vmId, nodeId: best.node.id, evictions: evict.map((v) => v.vmId), requeue: evict, reason }
}

/** May `v` be evicted to make room for `req`? Strictly lower priority, and not marked non-preemptible. */
export function evictable (v: PlacementRequest, req: PlacementRequest, bugs: ReadonlySet<PreemptBug> = NO_BUGS): boolean {
  const below = bugs.has('preempt-equal') ? v.priority <= req.priority : v.priority < req.priority
  return below && v.preemptible !== false
}

function lessCost (a: [number, number, number], aId: string, b: [number, number, number], bId: string): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i]
  return aId < bId
}
