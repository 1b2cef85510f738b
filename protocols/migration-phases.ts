// The phases of one live migration as the Raft record will hold them, and the
// one rule that makes any failure end with at most one running copy: the
// source owns the VM until QEMU's switchover (the source is paused before the
// target resumes), the target from then on. A failure before switchover aborts
// to the source; after it, the move is finished on the target. Pure: no I/O,
// no clock (the caller passes `at`). Applied by storage/apply-migration.ts; the record lives on
// the VM (VmRecord.migration), so the VM record alone says who owns it.
import type { NodeRecord, VmRecord } from './model.ts'
import type { Infer } from './schema.ts'
import type { MIGRATION_FIGURES } from './command-schema.ts'

export const MIGRATION_PHASES = ['preparing', 'transferring', 'switched', 'done', 'aborted'] as const
export type MigrationPhase = typeof MIGRATION_PHASES[number]

export interface MigrationRecord {
  vm: string
  source: string
  target: string
  /** the VM generation being moved: a record for an older generation is stale */
  generation: number
  phase: MigrationPhase
  /** ms since epoch, from the proposer */
  started: number
  /** who may run the VM now */
  owner: string
  reason?: string
  /** the source's latest figures from QEMU's query-migrate (progress, then the final ones) */
  figures?: MigrationFigures
  /** proposer's clock when it reached done or aborted */
  ended?: number
  /** a cancel asked for while memory moves: the source's QEMU decides (it cancels and reports
   * failed, or it had already completed and the switchover stands) */
  cancelRequested?: string
}

/** What `blixard vm migrate --wait` shows (declared in protocols/command-schema.ts). */
export type MigrationFigures = Infer<typeof MIGRATION_FIGURES>

/** The id of one migration attempt: names its stream (node/migration/stream.ts) and its reports,
 * so a report or a stream of an earlier attempt of the same VM never counts for this one. */
export function migrationId (r: Pick<MigrationRecord, 'vm' | 'generation' | 'started'>): string {
  return `${r.vm}.${r.generation}.${r.started}`
}

export type MigrationEvent =
  | { type: 'target-ready' } // the target's QEMU listens with -incoming
  | { type: 'source-completed' } // the source's query-migrate said completed: it is paused for good
  | { type: 'target-running' } // the target's QEMU reports running
  | { type: 'cancel', reason: string }
  | { type: 'node-failed', node: string, reason: string } // a lease lapsed / daemon died
  | { type: 'stalled', reason: string } // the leader saw no step for too long (nobody is driving it)

export type Transition = { ok: true, record: MigrationRecord } | { ok: false, error: string }

export function newMigrationRecord (vm: string, source: string, target: string, generation: number, at: number): MigrationRecord {
  return { vm, source, target, generation, phase: 'preparing', started: at, owner: source }
}

export function isFinal (p: MigrationPhase): boolean { return p === 'done' || p === 'aborted' }

export function step (r: MigrationRecord, e: MigrationEvent): Transition {
  if (isFinal(r.phase)) return { ok: false, error: `migration of ${r.vm} already ${r.phase}` }
  const to = (phase: MigrationPhase, extra: Partial<MigrationRecord> = {}): Transition => ({ ok: true, record: { ...r, phase, ...extra } })
  switch (e.type) {
    case 'target-ready':
      return r.phase === 'preparing' ? to('transferring') : { ok: false, error: `target-ready in phase ${r.phase}` }
    case 'source-completed':
      // the switchover: ownership passes to the target in the same entry
      return r.phase === 'transferring' ? to('switched', { owner: r.target }) : { ok: false, error: `source-completed in phase ${r.phase}` }
    case 'target-running':
      return r.phase === 'switched' ? to('done') : { ok: false, error: `target-running in phase ${r.phase}` }
    case 'cancel':
      // after the switchover the source is paused with stale memory: too late to cancel
      if (r.phase === 'switched') return { ok: false, error: `migration of ${r.vm} is past switchover: it cannot be cancelled` }
      // while memory moves, QEMU may complete at any moment: aborting here could leave the guest
      // paused on the source and running on the target. The source's QEMU decides.
      if (r.phase === 'transferring') return r.cancelRequested != null ? { ok: false, error: `migration of ${r.vm} is already being cancelled` } : to('transferring', { cancelRequested: e.reason })
      return to('aborted', { owner: r.source, reason: e.reason })
    case 'stalled':
      // the same rule as a failure: the paused source is never resumed after the switchover
      return r.phase === 'switched' ? to('done', { owner: r.target, reason: e.reason }) : to('aborted', { owner: r.source, reason: e.reason })
    case 'node-failed':
      if (e.node !== r.source && e.node !== r.target) return { ok: false, error: `${e.node} takes no part in the migration of ${r.vm}` }
      if (r.phase === 'switched') {
        // the target owns it; if the target died, HA restarts it elsewhere (never the paused source)
        return to('done', { owner: r.target, reason: e.reason })
      }
      return to('aborted', { owner: r.source, reason: e.reason })
  }
}

/** Why a VM cannot migrate live now (what `vm migrate --live` is refused with, and the reason a
 * default move goes cold), or null. Pure over the VM and its node's record. */
export function cannotMigrateLive (vm: VmRecord, nodeOf: (id: string) => NodeRecord | undefined): { kind: 'InvalidCommand' | 'Conflict', message: string } | null {
  const name = vm.spec.name
  const nm = (id: string): string => nodeOf(id)?.name ?? id
  if (vm.spec.hypervisor !== 'qemu') return { kind: 'InvalidCommand', message: `VM ${name} runs on ${vm.spec.hypervisor}: only QEMU guests migrate live` }
  if (vm.desired !== 'running') return { kind: 'Conflict', message: `VM ${name} is meant to be stopped: only a running VM migrates live; start it first (blixard vm start ${name}), or move it cold (--cold)` }
  const source = vm.assignedNode
  if (source === null) return { kind: 'Conflict', message: `VM ${name} is not placed on any node yet: there is nothing to move` }
  if (vm.status.phase !== 'running' || vm.status.node !== source) return { kind: 'Conflict', message: `VM ${name} is ${vm.status.phase}, not running on ${nm(source)}: only a running VM migrates live; wait until it runs, or move it cold (--cold)` }
  if (nodeOf(source)?.liveness === 'down') return { kind: 'Conflict', message: `node ${nm(source)}, which runs VM ${name}, is down: HA restarts the VM elsewhere` }
  return null
}
