// Commands replicated through Raft and applied by the state machine (storage/state-machine.ts).
// Each is validated and applied atomically, or rejected with a named error that changes nothing.
import type { CommandAuth } from './auth.ts'
import type { MigrationFigures, MigrationPhase } from './migration-phases.ts'
import type { SnapshotCommand } from './snapshots.ts'
import type {
  NodeRecord, NodeState, Resources, VmDesiredState, VmSpec, VmStatus,
  NetworkKind, HypervisorCapability
} from './model.ts'

export type Command =
  | { type: 'RegisterNode', node: Omit<NodeRecord, 'registeredAt' | 'updatedAt' | 'state'> & { state?: NodeState } }
  | { type: 'UpdateNode', id: string, labels?: Record<string, string>, capacity?: Resources, addrs?: string[], capabilities?: HypervisorCapability[], maxVms?: number | null, state?: NodeState }
  | { type: 'RemoveNode', id: string }
  | { type: 'CreateVm', id: string, spec: VmSpec, desired?: VmDesiredState }
  /** ifGeneration: apply only if the VM is still at this generation (GenerationMismatch otherwise), so a
   * read-modify-write never overwrites a change made in between */
  | { type: 'UpdateVmSpec', id: string, spec: VmSpec, ifGeneration?: number }
  | { type: 'SetVmDesiredState', id: string, desired: VmDesiredState }
  // term: the term of the leader that decided it, signed with it (protocols/auth.ts: a scheduling
  // decision applies only in an entry of that term, and only one signer places per term)
  | { type: 'AssignVm', id: string, node: string | null, reason?: string, term?: number }
  | { type: 'ReportVmStatus', reports: Array<{ id: string, node: string, generation: number, status: Omit<VmStatus, 'node'> }> }
  | { type: 'DeleteVm', id: string }
  | { type: 'CreateVolume', name: string, pool: string, sizeGiB: number, parent?: { volume: string, snapshot: string } | null }
  | { type: 'ResizeVolume', name: string, sizeGiB: number }
  | { type: 'SnapshotVolume', name: string, snapshot: string }
  | { type: 'DeleteVolume', name: string }
  /** the volume reconciler (`node`, signed by its own key) carried out generation `generation` of
   * a volume: its image is ready, or the change failed (reason), or the image is gone (a delete) */
  | { type: 'ReportVolume', name: string, node: string, generation: number, outcome: VolumeReport, reason?: string }
  | { type: 'CreateNetwork', name: string, kind: NetworkKind, subnet: string, gateway?: string | null }
  | { type: 'DeleteNetwork', name: string }
  | { type: 'AllocateIp', network: string, vm: string }
  | { type: 'ReleaseIp', network: string, vm: string }
  | { type: 'AddAdmin', peerId: string, name: string }
  | { type: 'RemoveAdmin', peerId: string }
  /** which hosts may join: any holder of the cluster key, or only peer ids an admin approved */
  | { type: 'SetJoinPolicy', policy: JoinPolicy }
  | { type: 'ApproveNode', peerId: string }
  /** offline admin recovery: one registered node's vote (signed by its key) to make peerId an
   * admin; applied once every registered node voted (storage/apply-admins.ts) */
  | { type: 'RecoverAdmin', peerId: string }
  /** the leader's batch of liveness renewals it received (each over the renewing node's own
   * authenticated stream) in one interval: one entry for many nodes (storage/apply-ha.ts) */
  | { type: 'RenewLeases', leases: Array<{ node: string, epoch: number }>, leaseMs: number, term?: number }
  /** the leader judged `node`'s lease (at this epoch and renewal seq) expired at `expiredAt`
   * (leader's wall clock, for the reason text): down, and its VMs rescheduled */
  | { type: 'MarkNodeDown', node: string, epoch: number, seq: number, expiredAt: number, reason: string, term?: number }
  /** an admin's move of a VM to `target`: live (a migration record) unless `cold`, which
   * reassigns it the way a drain moves a stopped VM (its guest stops here and boots there) */
  | { type: 'StartMigration', vm: string, target: string, cold?: true }
  /** the leader's evacuation of a draining node (node/scheduler.ts): a live migration of one of its
   * running VMs, as StartMigration but only off a node an admin set draining */
  | { type: 'EvacuateVm', vm: string, target: string, term?: number }
  /** an admin's cancel: aborts to the source unless past switchover (then refused) */
  | { type: 'CancelMigration', vm: string, reason?: string }
  /** a migration's source or target reports on the attempt that started at `started` (signed by
   * `node`'s own key; only the parties of that attempt may report, each only its own events) */
  | { type: 'ReportMigration', vm: string, node: string, started: number, event: MigrationReport, reason?: string, figures?: MigrationFigures }
  /** the leader saw the attempt that started at `started` make no step in `phase` for too long
   * (node/migration/service.ts): ends it by the switchover rule; a no-op if it moved on since */
  | { type: 'ExpireMigration', vm: string, started: number, phase: MigrationPhase, reason: string, term?: number }
  // ---- VM memory snapshots (issue 18): the commands and their validation live in ./snapshots.ts ----
  | SnapshotCommand

export type CommandType = Command['type']

/** What the volume reconciler reports on one generation of a volume (storage/apply-volumes.ts). */
export type VolumeReport = 'ready' | 'failed' | 'gone'
export const VOLUME_REPORTS: readonly VolumeReport[] = ['ready', 'failed', 'gone']

/** What a migration's source or target reports (storage/apply-migration.ts says who may report what):
 * target-ready (target: its QEMU listens with -incoming), progress (source: query-migrate figures),
 * source-completed (source: QEMU completed, the source is paused for good: the switchover),
 * target-running (target: its QEMU runs the guest), failed (either: the move cannot go on). */
export const MIGRATION_REPORTS = ['target-ready', 'progress', 'source-completed', 'target-running', 'failed'] as const
export type MigrationReport = typeof MIGRATION_REPORTS[number]

export const JOIN_POLICIES = ['open', 'approve'] as const
export type JoinPolicy = typeof JOIN_POLICIES[number]
/** The join policy of a cluster that never set one: see README "Security model". */
export const DEFAULT_JOIN_POLICY: JoinPolicy = 'open'

/** What goes into a Raft entry's data: the command, when it was proposed (proposer's clock,
 * so that apply stays deterministic), and an optional client idempotency key. */
export interface CommandEnvelope {
  cmd: Command
  at: number
  /** a retried command with the same key is applied once; the first result is returned again */
  key?: string
  /** the signed authority the command needs (protocols/auth.ts); checked on the leader and on apply */
  auth?: CommandAuth
}

import type { BlixError } from './errors.ts'
export type { BlixError, ErrorKind } from './errors.ts'

/** The message of an Indeterminate answer names the key to retry with in this form. */
export function indeterminateMessage (key: string, why: string): string {
  return `the outcome is unknown (${why}); retry with idempotency key ${key}: it applies at most once`
}

export type ApplyResult =
  | { ok: true, value?: unknown }
  | { ok: false, error: BlixError }
