// The functional entry points: pure over their inputs (the cluster is never mutated).
import type { Decision, PlacementCluster, PlacementConfig, PlacementRequest } from './types.ts'
import type { PlacementConfigInput } from './config.ts'
import { Placer, cloneNode, type PlaceOptions } from './placer.ts'
import { reserve } from './from-model.ts'
import { takeWarm } from './scorers.ts'
import { BlixardError } from '../protocols/errors.ts'

/** Choose a node for one VM. */
export function placeOne (cluster: PlacementCluster, req: PlacementRequest, config: PlacementConfigInput | PlacementConfig = {}, opts: PlaceOptions = {}): Decision {
  return new Placer(cluster, config).place(req, opts)
}

export interface BatchResult {
  decisions: Decision[]
  /** the cluster with every successful placement reserved */
  cluster: PlacementCluster
}

/**
 * Place many VMs in the given order (see sortQueue), each counted against the next. Equal, by construction,
 * to placeOne + applyPlacement one by one: both run the same deterministic selection on the same state.
 */
export function placeBatch (cluster: PlacementCluster, reqs: readonly PlacementRequest[], config: PlacementConfigInput | PlacementConfig = {}, opts: PlaceOptions = {}): BatchResult {
  const placer = new Placer(cluster, config)
  const decisions: Decision[] = []
  const placed = [...cluster.placed]
  for (const req of reqs) {
    const d = placer.placeAndCommit(req, opts)
    decisions.push(d)
    if (d.nodeId !== null) placed.push({ request: req, nodeId: d.nodeId })
  }
  const byId = new Map(placer.nodes.map((n) => [n.id, n]))
  return { decisions, cluster: { nodes: cluster.nodes.map((n) => cloneNode(byId.get(n.id) ?? n)), placed } }
}

/** The cluster after reserving `req` on `nodeId` (input untouched). */
export function applyPlacement (cluster: PlacementCluster, req: PlacementRequest, nodeId: string): PlacementCluster {
  if (!cluster.nodes.some((n) => n.id === nodeId)) throw new BlixardError('NotFound', `node ${nodeId} is not in the cluster`)
  const nodes = cluster.nodes.map((n) => {
    if (n.id !== nodeId) return n
    const c = cloneNode(n)
    reserve(c, req, 1)
    takeWarm(c, req)
    return c
  })
  return { nodes, placed: [...cluster.placed, { request: req, nodeId }] }
}

/** The cluster without `vmId`'s reservation (input untouched). */
export function releasePlacement (cluster: PlacementCluster, vmId: string): PlacementCluster {
  const p = cluster.placed.find((x) => x.request.vmId === vmId)
  if (p === undefined) throw new BlixardError('NotFound', `vm ${vmId} holds no reservation`)
  const nodes = cluster.nodes.map((n) => {
    if (n.id !== p.nodeId) return n
    const c = cloneNode(n)
    reserve(c, p.request, -1)
    return c
  })
  return { nodes, placed: cluster.placed.filter((x) => x !== p) }
}
