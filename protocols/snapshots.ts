// VM memory snapshots in the replicated state: the record and the value lists; the four
// commands are declared with the others in protocols/command-schema.ts (SNAPSHOT_COMMANDS).
//
// A snapshot is memory + device state saved by the VM's host (node/snapshots/service.ts), with a
// crash-consistent RBD snapshot of each of the VM's volumes taken while the guest is paused for the
// save (so memory and disks match). Where the host has Ceph, the memory state goes into an RBD image
// in the cluster's pool, and the VM's host of the moment restores it wherever the VM runs; a host
// without Ceph keeps it in a local file, and only that host can restore it. The record says which.
// See storage/apply-snapshots.ts for the rules.
//
//   SnapshotVm        admin  record 'taking' on the VM's host (the disk snapshots it will take named)
//   RestoreVm         admin  ask the VM's host to roll the running guest (and its disks) back to a
//                            'ready' snapshot
//   DeleteVmSnapshot  admin  'deleting': the host removes the state and the disk snapshots, then
//                            reports it gone
//   ReportVmSnapshot  node   the host reports (signed by its own key, only on its own steps):
//                            taken | failed | restored | restore-failed | removed
import type { Command } from './commands.ts'
import type { VmSpec } from './model.ts'

export const SNAPSHOT_PHASES = ['taking', 'ready', 'failed', 'deleting'] as const
export type SnapshotPhase = typeof SNAPSHOT_PHASES[number]

export const SNAPSHOT_REPORTS = ['taken', 'failed', 'restored', 'restore-failed', 'removed'] as const
export type SnapshotReport = typeof SNAPSHOT_REPORTS[number]

/** A VM keeps at most this many snapshots (each holds state the size of its memory). */
export const MAX_SNAPSHOTS_PER_VM = 16

export interface SnapshotRestore {
  phase: 'requested' | 'done' | 'failed'
  requestedAt: number
  /** when the host reported (envelope time) */
  at?: number
  reason?: string
  /** the host's figure: stop of the old QEMU → the guest running again (ms) */
  ms?: number
  /** the host asked to carry it out: the VM's host when it was asked (absent: the snapshot's node) */
  node?: string
}

/** Where the memory state lives: a local file on the snapshot's node, or an RBD image any host
 * with Ceph reads. */
export type SnapshotLocation = { kind: 'local-file', path: string } | { kind: 'rbd', pool: string, image: string }

/** One of the VM's volumes as the snapshot holds it: the RBD snapshot taken with the memory. */
export interface SnapshotDisk {
  volume: string
  pool: string
  image: string
  snapshot: string
}

export interface VmSnapshotRecord {
  /** the VM's id */
  vm: string
  name: string
  /** the host that takes, holds and restores the state */
  node: string
  /** the VM's spec generation when taken: a restore needs the same devices */
  generation: number
  phase: SnapshotPhase
  createdAt: number
  updatedAt: number
  /** where the state lives (null until taken) */
  location: SnapshotLocation | null
  sizeBytes: number | null
  /** how long the guest stood still for the save (ms) */
  pausedMs: number | null
  /** the VM's volumes, each with the RBD snapshot taken while the guest was paused; 'none' when
   * the VM has no volumes */
  disks: 'none' | SnapshotDisk[]
  reason?: string
  /** the last restore asked of this snapshot */
  restore?: SnapshotRestore
}

/** The four commands, declared in protocols/command-schema.ts (SNAPSHOT_COMMANDS). */
export type SnapshotCommand = Extract<Command, { type: 'SnapshotVm' | 'RestoreVm' | 'DeleteVmSnapshot' | 'ReportVmSnapshot' }>

export const SNAPSHOT_COMMAND_TYPES: ReadonlySet<string> = new Set(['SnapshotVm', 'RestoreVm', 'DeleteVmSnapshot', 'ReportVmSnapshot'])

/** The RBD snapshot of a volume that VM snapshot `name` takes (a '.' keeps it apart from the
 * volume snapshots an admin names: those are DNS labels). */
export function diskSnapshotName (name: string): string { return `blixard-vm.${name}` }
/** The RBD image a host with Ceph writes VM snapshot `name`'s memory state into. */
export function stateImageName (vm: string, name: string): string { return `blixard-state.${vm}.${name}` }

/** The table key of a snapshot: VM ids hold no '/', so one VM's snapshots are one key range. */
export function snapshotKey (vm: string, name: string): string { return `${vm}/${name}` }
/** [start, end) of one VM's snapshot keys ('0' follows '/'). */
export function snapshotRange (vm: string): { start: string, end: string } { return { start: `${vm}/`, end: `${vm}0` } }

/** The volume made for disk `i` of a clone named `vm` (an RBD clone of the snapshot's disk): a DNS
 * label like every volume name, so the clone's name is cut to leave room for the suffix. */
export function cloneVolumeName (vm: string, i: number): string {
  return `${vm.slice(0, 58).replace(/-+$/, '')}-d${i}`
}

/** What of a VM's spec its memory state depends on: a clone must have the same, or QEMU refuses
 * the state (other devices) or the guest finds other disks and networks. */
export function cloneDevices (spec: VmSpec): string {
  return JSON.stringify([spec.vcpus, spec.memoryMiB, spec.diskGiB, spec.hypervisor, spec.image, spec.networks, spec.kernelParams, spec.requires, spec.volumes.length])
}

/** A clone's spec: the source's, under its own name, with its own disks. */
export function cloneSpec (source: VmSpec, name: string): VmSpec {
  return { ...source, name, volumes: source.volumes.map((_, i) => cloneVolumeName(name, i)) }
}
