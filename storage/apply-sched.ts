// The scheduler's own decisions, applied: a preemption (PreemptVm) and a rebalancing
// move (RebalanceVm). Both are the leader's (protocols/auth.ts); the leader's plan
// (placement/plans/) is re-checked here against the state at this index, so a plan made on a stale
// view, or a forged one, can never evict an equal-or-higher priority VM, a non-preemptible one, or
// overfill a node (checkFits), and never moves a VM again within the cooldown.
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { assignVm, getVm } from './apply-vms.ts'
import { nodeName, refuseWhileMigrating } from './migration-guard.ts'
import { startMigration } from './apply-migration.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

/** A VM moved (by anyone: an admin, an evacuation, the rebalancer, a preemption or HA; live or
 * cold) is not moved again by the rebalancer for this long after its last move ended: a guest pays a pause each move, and a
 * planner that changed its mind on fresh load figures must not shuttle it to and fro. */
export const REBALANCE_COOLDOWN_MS = 30 * 60_000

/** When the VM last moved, by any way: a live migration's end (its start while in flight), a cold
 * move or being taken off its node (movedAt), an HA reschedule; null if it never moved. */
export function lastMovedAt (vm: VmRecord): number | null {
  const m = vm.migration
  const times = [m === undefined ? null : (m.ended ?? m.started), vm.movedAt ?? null, vm.reschedules?.at(-1)?.at ?? null].filter((t): t is number => t !== null)
  return times.length === 0 ? null : Math.max(...times)
}

/** The reason a victim's status carries while it waits: who displaced it, and why it may. */
export function preemptedReason (by: VmRecord, victim: VmRecord, node: string): string {
  return `preempted by VM ${by.spec.name} (priority ${by.spec.priority} > ${victim.spec.priority}) on ${node}; waits for room`
}

export function preemptVm (ctx: ApplyContext, c: Cmd<'PreemptVm'>): VmRecord {
  const vm = getVm(ctx, c.vm)
  const name = vm.spec.name
  if (vm.desired !== 'running') reject('Conflict', `VM ${name} is not meant to run (desired ${vm.desired}): it preempts nobody`)
  if (vm.assignedNode !== null) reject('Conflict', `VM ${name} is already placed on ${nodeName(ctx, vm.assignedNode)}: it preempts nobody`)
  const node = ctx.tx.get<NodeRecord>('nodes', c.node)
  if (node === undefined) reject('NotFound', `node ${c.node} not found`)
  if (node.state !== 'ready') reject('Conflict', `node ${node.name} is ${node.state}: it takes no new VMs`)
  if (node.liveness === 'down') reject('Conflict', `node ${node.name} is down (lease expired): it takes no new VMs`)
  const victims = c.victims.map((id) => {
    if (id === vm.id) reject('InvalidCommand', `VM ${name} cannot preempt itself`)
    const v = getVm(ctx, id)
    if (v.assignedNode !== node.id) reject('Conflict', `VM ${v.spec.name} is not on node ${node.name}: it cannot make room there`)
    const below = ctx.bugs?.has('preempt-equal') === true ? v.spec.priority <= vm.spec.priority : v.spec.priority < vm.spec.priority
    if (!below) reject('Conflict', `VM ${v.spec.name} has priority ${v.spec.priority}, not below ${name}'s ${vm.spec.priority}: only strictly lower priorities are preempted`)
    if (v.spec.preemptible === false) reject('Conflict', `VM ${v.spec.name} is not preemptible`)
    refuseWhileMigrating(ctx, v, 'a preemption')
    return v
  })
  // each victim stays bound to this node until it reports the guest gone or is marked down
  // (storage/release-rules.ts): placed nowhere else before, so it never runs on two hosts
  for (const v of victims) {
    assignVm(ctx, { type: 'AssignVm', id: v.id, node: null, reason: preemptedReason(vm, v, node.name) })
  }
  // checkFits inside: the victims are gone from the node now, so this is "fits once they left"
  return assignVm(ctx, { type: 'AssignVm', id: vm.id, node: node.id, reason: `placed on ${node.name} by preempting ${victims.map((v) => `VM ${v.spec.name} (priority ${v.spec.priority})`).join(', ')}` })
}

export function rebalanceVm (ctx: ApplyContext, c: Cmd<'RebalanceVm'>): VmRecord {
  const vm = getVm(ctx, c.vm)
  const from = vm.assignedNode === null ? undefined : ctx.tx.get<NodeRecord>('nodes', vm.assignedNode)
  // a draining node is the evacuation's (EvacuateVm); a down one is HA's
  if (from?.state !== 'ready') reject('Conflict', `VM ${vm.spec.name} is not on a ready node: the rebalancer moves VMs only between ready nodes`)
  const last = lastMovedAt(vm)
  if (last !== null) {
    const since = ctx.at - last
    if (since < REBALANCE_COOLDOWN_MS) reject('Conflict', `VM ${vm.spec.name} last moved ${Math.round(since / 1000)} s ago: the rebalancer waits ${REBALANCE_COOLDOWN_MS / 60_000} min between moves of one VM`)
  }
  return startMigration(ctx, { type: 'StartMigration', vm: c.vm, target: c.target })
}
