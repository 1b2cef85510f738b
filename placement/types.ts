// The data placement works on: a snapshot of nodes (committed reservations plus the freshest gossiped load)
// and the requests to place. Plain data, derived from protocols/model.ts by from-model.ts.
import type { Constraint, HypervisorCapability, NodeState, Resources } from '../protocols/model.ts'

/** Gossiped load of one node; ageMs is computed by the caller from its own clock (placement reads no clock). */
export interface LoadHint {
  cpuPct: number
  memPct: number
  ageMs: number
  /** warm pool name -> paused pool guests on the node, claimable by a create of the pool's shape
   * (absent: none). Pool guests are not reservations: the room they hold is reclaimable, the host
   * stops them when a VM placed there needs it (node/pools/service.ts) */
  warm?: Readonly<Record<string, number>>
}

export interface PlacementNode {
  id: string
  labels: Record<string, string>
  capacity: Resources
  /** reservations may reach capacity × ratio */
  overcommit: { cpu: number, memory: number, disk: number }
  /** sum of the resources of the VMs assigned to this node */
  reserved: Resources
  state: NodeState
  capabilities: HypervisorCapability[]
  maxVms: number | null
  vmCount: number
  /** hard anti-affinity group -> number of its VMs on this node */
  groups: Record<string, number>
  load: LoadHint | null
  /** paused warm guests per pool not yet counted as taken by a placement (from load.warm; each
   * placement of a request with that warmPool takes one); absent: none */
  warm?: Record<string, number>
}

export interface Affinity {
  label: string
  value: string
  /** > 0 attracts, < 0 repels (soft anti-affinity) */
  weight: number
}

export interface PlacementRequest {
  vmId: string
  resources: Resources
  constraints: Constraint[]
  antiAffinityGroup: string | null
  affinity: Affinity[]
  spreadLabel: string | null
  priority: number
  requires: HypervisorCapability[]
  /** false: never evicted by preemption (plans/preempt.ts); absent: it may be */
  preemptible?: boolean
  /** the warm pool whose paused guest a first start of this VM is handed (protocols/pools.ts
   * poolFor, decided by the caller); absent: no pool serves it */
  warmPool?: string
  /** a clone's first start from a memory snapshot (vm create --from-snapshot): the nodes holding
   * the snapshot's state on hand (the snapshot scorer prefers them) and, for a state kept in a local
   * file, the one node that can start it (the snapshot filter); absent: not a clone, or started */
  snapshot?: { cachedOn: readonly string[], pinnedTo: string | null }
}

/** A VM already holding a reservation on a node: what plans (evacuate, rebalance, preempt) move around. */
export interface PlacedVm {
  request: PlacementRequest
  nodeId: string
}

export interface PlacementCluster {
  nodes: PlacementNode[]
  placed: PlacedVm[]
}

export type Strategy = 'binpack' | 'spread'

export interface PlacementConfig {
  strategy: Strategy
  /** each score component lies in a fixed range (fit [0,1], affinity [-1,1], domain [0,1], pressure [-1,0], warm [0,1], snapshot [0,1]) */
  weights: { fit: number, affinity: number, domain: number, pressure: number, warm: number, snapshot: number }
  /** a node is hot when its reported cpu or memory percent exceeds hotPct */
  hotPct: number
  /** load reports older than this are ignored */
  staleMs: number
}

export type FilterName = 'state' | 'cpu' | 'memory' | 'disk' | 'max-vms' | 'constraint' | 'capability' | 'anti-affinity'
  /** not a placement filter: the VM waits for a volume (node/scheduler.ts volumeWait), shown per node by explain */
  | 'volume'
  | 'snapshot'

export interface ScoreComponents {
  fit: number
  affinity: number
  domain: number
  pressure: number
  warm: number
  snapshot: number
}

export type NodeVerdict =
  | { nodeId: string, feasible: false, filter: FilterName, reason: string }
  | { nodeId: string, feasible: true, scores: ScoreComponents, total: number }

export interface Decision {
  vmId: string
  /** null: no node passed every filter */
  nodeId: string | null
  total: number | null
  scores: ScoreComponents | null
  /** on failure or with explain: how many nodes each filter rejected (first failing filter per node) */
  rejections: Partial<Record<FilterName, number>> | null
  /** only with explain: one verdict per node, in node id order */
  nodes: NodeVerdict[] | null
}
