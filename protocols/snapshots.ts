// VM memory snapshots in the replicated state (issue 18): the record and the value lists; the four
// commands are declared with the others in protocols/command-schema.ts (SNAPSHOT_COMMANDS).
//
// A snapshot is memory + device state saved by the VM's host (node/snapshots/service.ts) into a
// local file on that host: only that host can restore it. RBD disks are not snapshotted with it
// yet, so a VM with volumes is refused (a memory image restored over disks that moved on would
// corrupt the guest's file systems); see storage/apply-snapshots.ts for the rules.
//
//   SnapshotVm        admin  record 'taking' on the VM's host
//   RestoreVm         admin  ask that host to roll the running guest back to a 'ready' snapshot
//   DeleteVmSnapshot  admin  'deleting': the host removes the file, then reports it gone
//   ReportVmSnapshot  node   the host reports (signed by its own key, only on its own snapshots):
//                            taken | failed | restored | restore-failed | removed
import type { Command } from './commands.ts'

export const SNAPSHOT_PHASES = ['taking', 'ready', 'failed', 'deleting'] as const
export type SnapshotPhase = typeof SNAPSHOT_PHASES[number]

export const SNAPSHOT_REPORTS = ['taken', 'failed', 'restored', 'restore-failed', 'removed'] as const
export type SnapshotReport = typeof SNAPSHOT_REPORTS[number]

/** A VM keeps at most this many snapshots (each is a file the size of its memory on its host). */
export const MAX_SNAPSHOTS_PER_VM = 16

export interface SnapshotRestore {
  phase: 'requested' | 'done' | 'failed'
  requestedAt: number
  /** when the host reported (envelope time) */
  at?: number
  reason?: string
  /** the host's figure: stop of the old QEMU → the guest running again (ms) */
  ms?: number
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
  /** where the state lives: a file on `node` (no RBD image yet: only that host can restore it) */
  location: { kind: 'local-file', path: string } | null
  sizeBytes: number | null
  /** how long the guest stood still for the save (ms) */
  pausedMs: number | null
  /** what of the VM's disks the snapshot holds: 'none' (the VM has no volumes; VMs with volumes are
   * refused until RBD snapshots are taken with the memory) */
  disks: 'none'
  reason?: string
  /** the last restore asked of this snapshot */
  restore?: SnapshotRestore
}

/** The four commands, declared in protocols/command-schema.ts (SNAPSHOT_COMMANDS). */
export type SnapshotCommand = Extract<Command, { type: 'SnapshotVm' | 'RestoreVm' | 'DeleteVmSnapshot' | 'ReportVmSnapshot' }>

export const SNAPSHOT_COMMAND_TYPES: ReadonlySet<string> = new Set(['SnapshotVm', 'RestoreVm', 'DeleteVmSnapshot', 'ReportVmSnapshot'])

/** The table key of a snapshot: VM ids hold no '/', so one VM's snapshots are one key range. */
export function snapshotKey (vm: string, name: string): string { return `${vm}/${name}` }
/** [start, end) of one VM's snapshot keys ('0' follows '/'). */
export function snapshotRange (vm: string): { start: string, end: string } { return { start: `${vm}/`, end: `${vm}0` } }
