// Rebalance: a bounded list of moves, each strictly lowering the imbalance metric (population variance of
// node fill over ready nodes), each target passing every filter with the moved VM released from its source.
// Greedy: at each step try the VMs of the fullest few nodes against the emptiest few ready nodes and take the
// move that lowers the variance most; stop at maxMoves, when no move helps, or at a goal on the fullest node. Used when a node joins or fill is skewed.
import type { PlacementCluster, PlacementConfig, PlacementNode, PlacementRequest } from '../types.ts'
import type { PlacementConfigInput } from '../config.ts'
import type { RebalancePlan } from './types.ts'
import { Placer } from '../placer.ts'
import { feasible } from '../filters.ts'
import { fill, fillOf } from '../scorers.ts'

export const DEFAULT_MAX_MOVES = 16
/** how many of the fullest nodes are tried as sources at each step (bounds the work per step) */
export const DEFAULT_SOURCES_PER_STEP = 4
/** how many of the emptiest nodes are tried as targets at each step: the best target for a move
 * off a full node is almost always among the emptiest, and trying every node made a plan on
 * 1 000 nodes cost sources × VMs × 1 000 checks per move (bench:placement's rebalancing scenario) */
export const DEFAULT_TARGETS_PER_STEP = 16

export interface RebalanceOptions {
  maxMoves?: number
  sourcesPerStep?: number
  /** nodes that take no VM (hot by gossiped load: plans/rebalance-policy.ts); they may still give */
  excludeTargets?: ReadonlySet<string>
  /** nodes that give no VM (in the join mode, the new nodes being filled) */
  excludeSources?: ReadonlySet<string>
  targetsPerStep?: number
  /** stop once no ready node's fill is above this (a goal on the fullest node, as well as the
   * variance: bench:placement stops at 1.1 × the lower bound of the max fill) */
  stopAtMaxFill?: number
}

/** Population variance of fill over ready nodes; 0 when fewer than two. */
export function imbalance (nodes: readonly PlacementNode[]): number {
  let n = 0; let s1 = 0; let s2 = 0
  for (const node of nodes) {
    if (node.state !== 'ready') continue
    const f = fill(node)
    n++; s1 += f; s2 += f * f
  }
  if (n < 2) return 0
  const mean = s1 / n
  return Math.max(0, s2 / n - mean * mean)
}

export function planRebalance (cluster: PlacementCluster, config: PlacementConfigInput | PlacementConfig = {}, opts: RebalanceOptions = {}): RebalancePlan {
  const maxMoves = opts.maxMoves ?? DEFAULT_MAX_MOVES
  const sources = opts.sourcesPerStep ?? DEFAULT_SOURCES_PER_STEP
  const excluded = opts.excludeTargets ?? new Set<string>()
  const keep = opts.excludeSources ?? new Set<string>()
  const targets = opts.targetsPerStep ?? DEFAULT_TARGETS_PER_STEP
  const placer = new Placer(cluster, config)
  const nodes = placer.nodes
  const onNode = new Map<string, PlacementRequest[]>()
  for (const p of cluster.placed) {
    const list = onNode.get(p.nodeId) ?? []
    list.push(p.request)
    onNode.set(p.nodeId, list)
  }
  for (const list of onNode.values()) list.sort((a, b) => a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0)
  const before = imbalance(nodes)
  let current = before
  const moves: RebalancePlan['moves'] = []
  while (moves.length < maxMoves) {
    const ready = nodes.filter((n) => n.state === 'ready')
    if (ready.length < 2) break
    let s1 = 0; let s2 = 0
    for (const n of ready) { const f = fill(n); s1 += f; s2 += f * f }
    const count = ready.length
    const byFill = [...ready].sort((a, b) => fill(b) - fill(a) || (a.id < b.id ? -1 : 1))
    if (opts.stopAtMaxFill !== undefined && fill(byFill[0]) <= opts.stopAtMaxFill) break
    const fullest: PlacementNode[] = []
    for (let i = 0; i < byFill.length && fullest.length < sources; i++) if (!keep.has(byFill[i].id)) fullest.push(byFill[i])
    const emptiest: PlacementNode[] = []
    for (let i = byFill.length - 1; i >= 0 && emptiest.length < targets; i--) if (!excluded.has(byFill[i].id)) emptiest.push(byFill[i])
    let best: { req: PlacementRequest, from: PlacementNode, to: PlacementNode, metric: number } | null = null
    for (const src of fullest) {
      for (const req of onNode.get(src.id) ?? []) {
        const fs = fill(src)
        placer.unassign(req, src.id)
        const fs2 = fill(src)
        for (const dst of emptiest) {
          if (dst === src || !feasible(dst, req)) continue
          const fd = fill(dst)
          const fd2 = fillOf(dst.reserved.cpu + req.resources.cpu, dst.reserved.memoryMiB + req.resources.memoryMiB, dst.reserved.diskGiB + req.resources.diskGiB, dst)
          const t1 = s1 - fs - fd + fs2 + fd2
          const t2 = s2 - fs * fs - fd * fd + fs2 * fs2 + fd2 * fd2
          const metric = t2 / count - (t1 / count) ** 2
          if (best === null || metric < best.metric) best = { req, from: src, to: dst, metric }
        }
        placer.assign(req, src.id)
      }
    }
    if (best === null || !(best.metric < current)) break
    placer.unassign(best.req, best.from.id)
    placer.assign(best.req, best.to.id)
    const after = imbalance(nodes)
    if (!(after < current)) { // rounding made it no better: undo and stop, so every move strictly helps
      placer.unassign(best.req, best.to.id)
      placer.assign(best.req, best.from.id)
      break
    }
    current = after
    const fromList = onNode.get(best.from.id) ?? []
    fromList.splice(fromList.indexOf(best.req), 1)
    const toList = onNode.get(best.to.id) ?? []
    toList.push(best.req)
    toList.sort((a, b) => a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0)
    onNode.set(best.to.id, toList)
    moves.push({ vmId: best.req.vmId, from: best.from.id, to: best.to.id })
  }
  return { moves, before, after: current }
}
