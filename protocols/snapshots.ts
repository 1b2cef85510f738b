// VM memory snapshots in the replicated state (issue 18): the record, the four commands and their
// validation, kept in this one file so that protocols/commands.ts and protocols/command-schema.ts
// only name it (one union member, one dispatch line).
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
import { BlixardError } from './errors.ts'
import type { BlixError } from './errors.ts'

export const SNAPSHOT_PHASES = ['taking', 'ready', 'failed', 'deleting'] as const
export type SnapshotPhase = typeof SNAPSHOT_PHASES[number]

export const SNAPSHOT_REPORTS = ['taken', 'failed', 'restored', 'restore-failed', 'removed'] as const
export type SnapshotReport = typeof SNAPSHOT_REPORTS[number]

/** A VM keeps at most this many snapshots (each is a file the size of its memory on its host). */
export const MAX_SNAPSHOTS_PER_VM = 16
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const ID = /^[\x21-\x7e]{1,128}$/
const MAX_REASON = 1024
const MAX_PATH = 4096

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

export type SnapshotCommand =
  | { type: 'SnapshotVm', vm: string, name: string }
  | { type: 'RestoreVm', vm: string, name: string }
  | { type: 'DeleteVmSnapshot', vm: string, name: string }
  | { type: 'ReportVmSnapshot', vm: string, name: string, node: string, event: SnapshotReport, sizeBytes?: number, pausedMs?: number, ms?: number, path?: string, reason?: string }

export const SNAPSHOT_COMMAND_TYPES: ReadonlySet<string> = new Set(['SnapshotVm', 'RestoreVm', 'DeleteVmSnapshot', 'ReportVmSnapshot'])

/** The table key of a snapshot: VM ids hold no '/', so one VM's snapshots are one key range. */
export function snapshotKey (vm: string, name: string): string { return `${vm}/${name}` }
/** [start, end) of one VM's snapshot keys ('0' follows '/'). */
export function snapshotRange (vm: string): { start: string, end: string } { return { start: `${vm}/`, end: `${vm}0` } }

function fail (kind: BlixError['kind'], message: string): never { throw BlixardError.quiet(kind, message) }
function str (v: unknown, path: string, max: number): string {
  if (typeof v !== 'string') fail('InvalidCommand', `${path} must be a string`)
  if (v.length > max) fail('TooLarge', `${path} is longer than ${max}`)
  return v
}
function id (v: unknown, path: string): string {
  const s = str(v, path, 128)
  if (!ID.test(s)) fail('InvalidCommand', `${path} must be non-empty printable ASCII without spaces`)
  return s
}
/** A snapshot name: a DNS label (it becomes a file name on the VM's host). */
export function snapshotName (v: unknown, path = 'name'): string {
  const s = str(v, path, 63)
  if (!NAME.test(s)) fail('InvalidSpec', `${path} "${s}" must be a DNS label: a-z, 0-9 and inner '-', 1-63 chars`)
  return s
}
function count (v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) fail('InvalidCommand', `${path} must be a non-negative integer`)
  return v
}

/** Validates one of this file's commands (command-schema.ts hands them here): a fresh copy with
 * known fields only, or a thrown BlixardError naming what is wrong. */
export function validateSnapshotCommand (o: Record<string, unknown>): SnapshotCommand {
  const vm = id(o.vm, 'vm')
  const name = snapshotName(o.name)
  switch (o.type) {
    case 'SnapshotVm': return { type: 'SnapshotVm', vm, name }
    case 'RestoreVm': return { type: 'RestoreVm', vm, name }
    case 'DeleteVmSnapshot': return { type: 'DeleteVmSnapshot', vm, name }
    case 'ReportVmSnapshot': {
      const event = o.event
      if (typeof event !== 'string' || !(SNAPSHOT_REPORTS as readonly string[]).includes(event)) fail('InvalidCommand', `event must be one of ${SNAPSHOT_REPORTS.join(', ')}`)
      const c: Extract<SnapshotCommand, { type: 'ReportVmSnapshot' }> = { type: 'ReportVmSnapshot', vm, name, node: id(o.node, 'node'), event: event as SnapshotReport }
      if (o.sizeBytes !== undefined) c.sizeBytes = count(o.sizeBytes, 'sizeBytes')
      if (o.pausedMs !== undefined) c.pausedMs = count(o.pausedMs, 'pausedMs')
      if (o.ms !== undefined) c.ms = count(o.ms, 'ms')
      if (o.path !== undefined) {
        c.path = str(o.path, 'path', MAX_PATH)
        if (!c.path.startsWith('/')) fail('InvalidCommand', 'path must be absolute')
      }
      if (o.reason !== undefined) c.reason = str(o.reason, 'reason', MAX_REASON)
      if (event === 'taken' && (c.sizeBytes === undefined || c.path === undefined)) fail('InvalidCommand', 'a taken report carries sizeBytes and path')
      return c
    }
    default: return fail('InvalidCommand', `unknown snapshot command type ${String(o.type).slice(0, 64)}`)
  }
}
