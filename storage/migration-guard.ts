// What the other VM commands need to know of a migration in flight (storage/apply-migration.ts):
// a VM being moved keeps its spec, desired state, assignment and existence until the move ends.
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import { isFinal } from '../protocols/migration-phases.ts'
import type { MigrationRecord } from '../protocols/migration-phases.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'

/** The migration in flight on this VM, or null. */
export function activeMigration (vm: VmRecord): MigrationRecord | null {
  return vm.migration !== undefined && !isFinal(vm.migration.phase) ? vm.migration : null
}

/** Refuses (Conflict) a change that would pull a migrating VM out from under its migration. */
export function refuseWhileMigrating (ctx: ApplyContext, vm: VmRecord, what: string): void {
  const m = activeMigration(vm)
  if (m === null) return
  reject('Conflict', `VM ${vm.spec.name} is migrating to ${nodeName(ctx, m.target)} (${m.phase}): ${what} must wait until it ends; or cancel it: blixard vm migrate ${vm.spec.name} --cancel`)
}

export function nodeName (ctx: ApplyContext, id: string): string {
  return ctx.tx.get<NodeRecord>('nodes', id)?.name ?? id
}

