// What the other VM commands need to know of a migration in flight (storage/apply-migration.ts):
// a VM being moved keeps its spec, desired state, assignment and existence until the move ends.
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import { isFinal } from '../protocols/migration-phases.ts'
import type { MigrationRecord } from '../protocols/migration-phases.ts'
import type { ApplyContext } from './apply-context.ts'
import type { KvTx } from './kv.ts'
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


/** A live move holds its VM's room on the target from its start until the switchover (the
 * target's QEMU is there, waiting, from the start): one `settings` row per move in flight, keyed
 * by target, so every command that checks a node's room (AssignVm, PreemptVm, UpdateVmSpec,
 * StartMigration) counts it without scanning every VM. Without it an assignment could take the
 * room a move was promised, and the switchover then overfilled the node (found by the simulator
 * with the rebalancer and the scheduler acting at once: sim/sched-model.ts). */
const INCOMING_PREFIX = 'incoming/'
export interface Room { cpu: number, memoryMiB: number, diskGiB: number, vms: number }

function incomingKey (node: string, vm: string): string { return `${INCOMING_PREFIX}${node}/${vm}` }

/** What the moves into `node` that have not switched over yet hold there. */
export function incomingTo (tx: KvTx, node: string): Room {
  const r: Room = { cpu: 0, memoryMiB: 0, diskGiB: 0, vms: 0 }
  // '0' follows '/': the range is every key under `incoming/<node>/`
  for (const [, v] of tx.range<Room>('settings', { start: `${INCOMING_PREFIX}${node}/`, end: `${INCOMING_PREFIX}${node}0` })) {
    r.cpu += v.cpu
    r.memoryMiB += v.memoryMiB
    r.diskGiB += v.diskGiB
    r.vms += v.vms
  }
  return r
}

/** Keeps the incoming row of `vm` in step with its migration record: present while the move is
 * before switchover, gone after (the VM is then the target's own, in vmsByNode). */
export function trackIncoming (tx: KvTx, vm: VmRecord, before: MigrationRecord | undefined, after: MigrationRecord | undefined): void {
  const held = (m: MigrationRecord | undefined): boolean => m !== undefined && !isFinal(m.phase) && m.phase !== 'switched'
  if (before !== undefined && held(before) && !(after !== undefined && held(after) && after.target === before.target)) tx.delete('settings', incomingKey(before.target, vm.id))
  if (after !== undefined && held(after)) tx.put('settings', incomingKey(after.target, vm.id), { cpu: vm.spec.vcpus, memoryMiB: vm.spec.memoryMiB, diskGiB: vm.spec.diskGiB, vms: 1 } satisfies Room)
}
