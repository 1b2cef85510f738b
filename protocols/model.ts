// The replicated metadata model: what the Raft state machine holds. Plain data, CBOR-encodable.
// Each closed set of names is one value list that the validators check against
// (protocols/command-schema.ts) with its type derived from it, so the two cannot drift.

export const NODE_STATES = ['ready', 'cordoned', 'draining', 'down'] as const
export type NodeState = typeof NODE_STATES[number]
/** Liveness by lease, apart from the operator's `state`: a drained node can be alive, a
 * ready one dead. `down` is set only by the leader's MarkNodeDown (storage/apply-ha.ts). */
export type NodeLiveness = 'ready' | 'down'
export const HYPERVISORS = ['qemu', 'cloud-hypervisor', 'firecracker'] as const
export type Hypervisor = typeof HYPERVISORS[number]
/** What a host can do: run KVM, build Nix guests, run QEMU; `rbd`: it has a Ceph client configured
 * (its config's ceph.conf), so it can open RBD volumes and run the volume reconciler. */
export const HYPERVISOR_CAPABILITIES = ['kvm', 'nix', 'qemu', 'rbd'] as const
export type HypervisorCapability = typeof HYPERVISOR_CAPABILITIES[number]

// The shapes commands carry are declared once in protocols/command-schema.ts; their types here are
// derived from those declarations (the records add what the state machine keeps beside them).
import type { Infer } from './schema.ts'
import type { CONSTRAINT, NETWORK_KIND, NODE_REGISTRATION, QUOTA_LIMITS, RESOURCES, VM_SPEC, VM_STATUS } from './command-schema.ts'

export type Resources = Infer<typeof RESOURCES>

export interface NodeRecord extends Omit<Infer<typeof NODE_REGISTRATION>, 'state'> {
  state: NodeState
  registeredAt: number // proposer's clock, ms
  updatedAt: number
  // ---- the liveness lease (storage/apply-ha.ts); absent on a record that never renewed: ready, epoch 0 ----
  liveness?: NodeLiveness
  /** leader's clock (envelope.at) when it was marked down; null once it rejoined */
  downSince?: number | null
  /** why it is down (the leader's judgement, for `blixard nodes`) */
  downReason?: string | null
  /** bumped by every MarkNodeDown: a renewal naming an older epoch is refused */
  leaseEpoch?: number
  /** bumped by every renewal: a MarkNodeDown judged before the latest renewal is a no-op */
  leaseSeq?: number
  /** leader's clock (envelope.at) of the latest renewal, and that plus the lease: for display only,
   * never compared with another host's clock (node/core/lease-rules.ts) */
  leaseRenewedAt?: number
  leaseExpiresAt?: number
  /** while draining: the nodes its drain counted on to take its running VMs (UpdateNode.onto);
   * another drain of one of them is refused while this node still holds such a VM */
  drainOnto?: string[]
}

export const VM_DESIRED_STATES = ['running', 'stopped'] as const
export type VmDesiredState = typeof VM_DESIRED_STATES[number]
export const VM_PHASES = ['pending', 'scheduled', 'starting', 'running', 'stopping', 'stopped', 'failed'] as const
export type VmPhase = typeof VM_PHASES[number]
export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const
export type RestartPolicy = typeof RESTART_POLICIES[number]

/** A placement constraint on node labels: `arch == x86_64`, `zone in [a, b]`, `gpu exists`. */
export type Constraint = Infer<typeof CONSTRAINT>

export type VmSpec = Infer<typeof VM_SPEC>

// ---- quotas: per-project limits, held in Raft, checked on apply ----

/** What a project may hold at most; a limit left out is unlimited. `ips`: network attachments,
 * one address each. `diskGiB`: the VMs' local root disks (spec.diskGiB). */
export type QuotaLimits = Infer<typeof QUOTA_LIMITS>
export const QUOTA_RESOURCES = ['vcpus', 'memoryMiB', 'diskGiB', 'vms', 'ips'] as const
export type QuotaResource = typeof QUOTA_RESOURCES[number]
/** What a project's VMs hold now (every VM of it, running or not: a stopped VM keeps its claim). */
export type QuotaUsage = Record<QuotaResource, number>

/** The project of a VM created without one: every VM counts against some project's quota, so
 * leaving out --project does not dodge one (`quota set default ...` caps those VMs). */
export const DEFAULT_PROJECT = 'default'

/** The project a VM belongs to: a record stored before projects were filled in has none, and
 * reads as the default one. */
export function projectOf (spec: Pick<VmSpec, 'project'>): string {
  return spec.project ?? DEFAULT_PROJECT
}

export interface QuotaRecord {
  project: string
  limits: QuotaLimits
  setAt: number
}

export interface VmStatus extends Infer<typeof VM_STATUS> {
  node: string | null
}

import type { MigrationRecord } from './migration-phases.ts'

export interface VmRecord {
  id: string
  spec: VmSpec
  /** bumped on every spec change so agents restart with the new spec */
  generation: number
  desired: VmDesiredState
  assignedNode: string | null
  status: VmStatus
  createdAt: number
  updatedAt: number
  /** recent reschedules off a down host (storage/apply-ha.ts): the flap backoff counts them */
  reschedules?: Array<{ from: string, at: number }>
  /** the latest live migration (storage/apply-migration.ts): in flight until done or aborted, then
   * kept as the last one; assignedNode is always its owner (source until switchover, then target) */
  migration?: MigrationRecord
  /** the node it was taken off (a preemption, a cold move, an unassignment) whose guest may still
   * run there: the VM is bound to it until that node reports the guest gone or is marked down
   * (storage/release-rules.ts), and is placed nowhere else meanwhile. `since` is the entry's time,
   * which the node's report echoes (so a report made before the release never ends it). */
  releasing?: { node: string, since: number }
  /** when it last left a node other than by a live migration (a cold move, a preemption, an
   * unassignment; HA's reschedules are in `reschedules`): the rebalancer's cooldown counts from the
   * latest of these and of a live move (storage/apply-sched.ts lastMovedAt) */
  movedAt?: number
  /** a clone of another VM's memory snapshot (vm create --from-snapshot): its first start resumes
   * the snapshot's state instead of a boot (node/snapshots/service.ts resumeClone) */
  clonedFrom?: VmCloneSource
}

export interface VmCloneSource {
  /** the source VM's id and the snapshot's name */
  vm: string
  name: string
  /** the volumes made for the clone, RBD clones of the snapshot's disks (removed with the VM) */
  volumes: string[]
  /** hosts with the snapshot's state on hand: the one that took it, the one that last restored it */
  cachedOn: string[]
  /** the state is a local file: only this host can start the clone; null: an RBD image, any host */
  pinnedTo: string | null
  /** when its first running report applied: later starts boot from its disks */
  resumedAt?: number
}

/** Where a volume's RBD image stands (protocols/volume-phases.ts): `pending` until the volume
 * reconciler made the image match the record (created, grown, snapshotted), then `ready`, or
 * `failed` with the reason; `deleting` until it removed the image, then the record goes. */
export type VolumePhase = 'pending' | 'ready' | 'failed' | 'deleting'

export interface VolumeRecord {
  name: string
  pool: string
  /** desired size; the image has it once the phase is ready */
  sizeGiB: number
  /** desired snapshots (each protected, so clonable); the image has them once ready */
  snapshots: string[]
  parent: { volume: string, snapshot: string } | null
  attachedTo: string | null // vm id
  createdAt: number
  // ---- the reconciler's side (storage/apply-volumes.ts); absent on a record made before volumes
  // had phases, whose image the RPC handler made at once: ready, generation 0, image made ----
  phase?: VolumePhase
  /** why it failed, or what it waits for; null when there is nothing to say */
  reason?: string | null
  /** bumped by every change the reconciler must carry out: a report names the one it carried out */
  generation?: number
  /** the RBD image exists (a ready report said so once): a VM may use the volume */
  imageMade?: boolean
}

export type NetworkKind = Infer<typeof NETWORK_KIND>

export interface NetworkRecord {
  name: string
  kind: NetworkKind
  subnet: string // CIDR
  gateway: string | null
  /** ip -> vm id */
  allocations: Record<string, string>
  createdAt: number
}

export interface AdminRecord {
  peerId: string
  name: string
  addedAt: number
}
