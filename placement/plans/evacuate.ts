// Evacuating a draining node and re-placing the VMs of a dead one are the same plan: take the node out of the
// candidate set, release its VMs, and place them (largest, highest priority first) on the rest, each counted
// against the next. Every target passes every filter because the ordinary placer chooses it.
import type { PlacementCluster, PlacementConfig, PlacementRequest } from '../types.ts'
import type { PlacementConfigInput } from '../config.ts'
import type { EvacuationPlan } from './types.ts'
import { Placer } from '../placer.ts'
import { sortQueue } from '../queue.ts'
import { BlixardError } from '../../protocols/errors.ts'

export function planEvacuation (cluster: PlacementCluster, nodeId: string, config: PlacementConfigInput | PlacementConfig = {}, as: 'draining' | 'down' = 'draining'): EvacuationPlan {
  const placer = new Placer(cluster, config)
  if (placer.nodeIndex(nodeId) === undefined) throw new BlixardError('NotFound', `node ${nodeId} is not in the cluster`)
  placer.setState(nodeId, as)
  const leaving: PlacementRequest[] = cluster.placed.filter((p) => p.nodeId === nodeId).map((p) => p.request)
  for (const r of leaving) placer.unassign(r, nodeId)
  const decisions = sortQueue(leaving).map((r) => placer.placeAndCommit(r))
  return { nodeId, moves: decisions.map((d) => ({ vmId: d.vmId, from: nodeId, to: d.nodeId })), decisions }
}

/** Re-place the VMs of a node declared dead (after lease plus margin, by the failure detector). */
export function planDeadNode (cluster: PlacementCluster, nodeId: string, config: PlacementConfigInput | PlacementConfig = {}): EvacuationPlan {
  return planEvacuation(cluster, nodeId, config, 'down')
}
