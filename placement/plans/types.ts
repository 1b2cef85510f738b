// What plans return: moves and evictions for the leader to propose through Raft, one AssignVm at a time.
import type { Decision, PlacementRequest } from '../types.ts'

export interface Move {
  vmId: string
  from: string
  /** null: no node passes every filter; the VM stays queued for placement */
  to: string | null
}

export interface EvacuationPlan {
  nodeId: string
  moves: Move[]
  decisions: Decision[]
}

export interface RebalancePlan {
  moves: Array<{ vmId: string, from: string, to: string }>
  /** imbalance (variance of node fill over ready nodes) before and after the moves */
  before: number
  after: number
}

export interface PreemptionPlan {
  vmId: string
  nodeId: string | null
  /** VMs to stop and unassign first; strictly lower priority than the request */
  evictions: string[]
  /** the evicted VMs, to be queued again for placement */
  requeue: PlacementRequest[]
  /** why this plan: the node and what it evicts, or why no node can be freed (for events and explain) */
  reason: string
}
