// Live migration in the replicated state: the record lives on the VM (VmRecord.migration)
// and its phases follow protocols/migration-phases.ts. The one invariant: vm.assignedNode is the
// record's owner at every index — the source until the switchover report, the target from that
// same entry on — so the agent, HA (storage/apply-ha.ts) and the scheduler, which all go by
// assignedNode, never see two owners.
//
// Who may write what:
//   StartMigration, CancelMigration — an admin (protocols/auth.ts)
//   ReportMigration — the reporting node's own key (auth.ts checks it is a party of the attempt);
//     here: each party only its own events (target-ready/target-running: the target;
//     progress/source-completed: the source; failed: either)
//   a party's death — MarkNodeDown (the leader's decision, signed for its term) calls
//     failMigrationsOf in the same entry: before switchover it aborts to the source, after it the
//     target owns the VM
// Pure: the only clock is envelope.at.
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import { cannotMigrateLive, isFinal, newMigrationRecord, step } from '../protocols/migration-phases.ts'
import type { MigrationEvent, MigrationRecord } from '../protocols/migration-phases.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { assignVm, byNodeKey, checkFits, getVm } from './apply-vms.ts'
import type { ReportOutcome } from './apply-vms.ts'
import { activeMigration, incomingTo, nodeName, trackIncoming } from './migration-guard.ts'
export { activeMigration, refuseWhileMigrating } from './migration-guard.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

/** A phase report's outcome, as a VM status report's (storage/apply-vms.ts). */
export type MigrationReportOutcome = ReportOutcome

/** The leader's live move of a VM off a node an admin set draining (node/scheduler.ts). */
export function evacuateVm (ctx: ApplyContext, c: Cmd<'EvacuateVm'>): VmRecord {
  const vm = getVm(ctx, c.vm)
  const on = vm.assignedNode === null ? undefined : ctx.tx.get<NodeRecord>('nodes', vm.assignedNode)
  if (on?.state !== 'draining') reject('Conflict', `VM ${vm.spec.name} is not on a draining node: the scheduler moves VMs only off those (an admin migrates others: blixard vm migrate)`)
  return startMigration(ctx, { type: 'StartMigration', vm: c.vm, target: c.target })
}

/** `vm migrate --cold`: the VM is reassigned to the target, as a drain moves a stopped VM; its
 * guest (if any) stops on the old node and boots on the new one (disks fenced there as for any
 * cold start) once the old node released it (VmRecord.releasing, storage/release-rules.ts: the
 * target's agent holds the start until then). Refused while a live move of it is in flight. */
function moveCold (ctx: ApplyContext, vm: VmRecord, c: Cmd<'StartMigration'>): VmRecord {
  const target = ctx.tx.get<NodeRecord>('nodes', c.target)
  if (target === undefined) reject('NotFound', `node ${c.target} not found`)
  if (target.id === vm.assignedNode) reject('InvalidCommand', `VM ${vm.spec.name} is already on ${target.name}: name another node`)
  const from = vm.assignedNode === null ? '' : ` from ${nodeName(ctx, vm.assignedNode)}`
  return assignVm(ctx, { type: 'AssignVm', id: vm.id, node: target.id, reason: `moved cold${from} by an admin` })
}

export function startMigration (ctx: ApplyContext, c: Cmd<'StartMigration'>): VmRecord {
  const vm = getVm(ctx, c.vm)
  const name = vm.spec.name
  const m = activeMigration(vm)
  if (m !== null) reject('Conflict', `VM ${name} is already migrating to ${nodeName(ctx, m.target)} (${m.phase}): wait for it, or cancel it: blixard vm migrate ${name} --cancel`)
  if (c.cold === true) return moveCold(ctx, vm, c)
  const why = cannotMigrateLive(vm, (id) => ctx.tx.get<NodeRecord>('nodes', id))
  if (why !== null) reject(why.kind, why.message)
  const source = vm.assignedNode as string
  const target = ctx.tx.get<NodeRecord>('nodes', c.target)
  if (target === undefined) reject('NotFound', `node ${c.target} not found`)
  if (target.id === source) reject('InvalidCommand', `VM ${name} already runs on ${target.name}: name another node`)
  if (target.state !== 'ready') reject('Conflict', `node ${target.name} is ${target.state}: it takes no new VMs`)
  if (target.liveness === 'down') reject('Conflict', `node ${target.name} is down (lease expired): it takes no new VMs`)
  checkFits(ctx, target, vm.id, vm.spec, incomingTo(ctx.tx, target.id))
  const rec: VmRecord = { ...vm, migration: newMigrationRecord(vm.id, source, target.id, vm.generation, ctx.at), updatedAt: ctx.at }
  trackIncoming(ctx.tx, vm, vm.migration, rec.migration)
  ctx.tx.put('vms', vm.id, rec)
  return rec
}

export function cancelMigration (ctx: ApplyContext, c: Cmd<'CancelMigration'>): VmRecord {
  const vm = getVm(ctx, c.vm)
  const m = activeMigration(vm)
  if (m === null) reject('Conflict', `VM ${vm.spec.name} has no migration in flight`)
  const t = step(m, { type: 'cancel', reason: c.reason ?? 'cancelled by an admin' })
  if (!t.ok) reject('Conflict', t.error)
  return settle(ctx, vm, t.record)
}

/** Which party may report an event. */
function reporterOf (event: Cmd<'ReportMigration'>['event']): 'source' | 'target' | 'either' {
  switch (event) {
    case 'target-ready': case 'target-running': return 'target'
    case 'progress': case 'source-completed': return 'source'
    case 'failed': return 'either'
  }
}

export function reportMigration (ctx: ApplyContext, c: Cmd<'ReportMigration'>): { outcome: MigrationReportOutcome, phase?: MigrationRecord['phase'] } {
  const vm = ctx.tx.get<VmRecord>('vms', c.vm)
  if (vm === undefined) return { outcome: 'notFound' }
  const m = vm.migration
  // a late report of an attempt that ended, or of an earlier attempt: skipped, not an error
  if (m === undefined || m.started !== c.started || isFinal(m.phase)) return { outcome: 'stale', ...(m !== undefined ? { phase: m.phase } : {}) }
  const role = c.node === m.source ? 'source' : c.node === m.target ? 'target' : null
  if (role === null) reject('Unauthorized', `node ${nodeName(ctx, c.node)} takes no part in the migration of VM ${vm.spec.name}`)
  const may = reporterOf(c.event)
  if (may !== 'either' && may !== role) reject('Unauthorized', `${c.event} is the ${may}'s report; node ${nodeName(ctx, c.node)} is the ${role} of the migration of VM ${vm.spec.name}`)
  if (c.event === 'progress') {
    if (m.phase !== 'transferring' || c.figures === undefined) return { outcome: 'stale', phase: m.phase }
    ctx.tx.put('vms', vm.id, { ...vm, migration: { ...m, figures: c.figures }, updatedAt: ctx.at } satisfies VmRecord)
    return { outcome: 'applied', phase: m.phase }
  }
  const e: MigrationEvent = c.event === 'failed'
    ? { type: 'node-failed', node: c.node, reason: `${role} failed: ${c.reason ?? 'no reason given'}` }
    : { type: c.event }
  const t = step(m, e)
  if (!t.ok) return { outcome: 'stale', phase: m.phase }
  const next = c.figures !== undefined ? { ...t.record, figures: c.figures } : t.record
  settle(ctx, vm, next)
  return { outcome: 'applied', phase: next.phase }
}

/** The leader's judgement that an attempt stalled in `phase` (node/migration/service.ts): ends it
 * like a failure (aborted before switchover, done on the target after); stale if it moved on. */
export function expireMigration (ctx: ApplyContext, c: Cmd<'ExpireMigration'>): { outcome: MigrationReportOutcome, phase?: MigrationRecord['phase'] } {
  const vm = ctx.tx.get<VmRecord>('vms', c.vm)
  if (vm === undefined) return { outcome: 'notFound' }
  const m = vm.migration
  if (m === undefined || m.started !== c.started || m.phase !== c.phase || isFinal(m.phase)) return { outcome: 'stale', ...(m !== undefined ? { phase: m.phase } : {}) }
  const t = step(m, { type: 'stalled', reason: c.reason })
  if (!t.ok) return { outcome: 'stale', phase: m.phase }
  settle(ctx, vm, t.record)
  return { outcome: 'applied', phase: t.record.phase }
}

/** Writes the VM with its migration record moved on, and its assignment and status following the
 * record's owner (the switchover moves the VM to the target in this same entry). */
function settle (ctx: ApplyContext, vm: VmRecord, m: MigrationRecord): VmRecord {
  const rec: MigrationRecord = isFinal(m.phase) ? { ...m, ended: ctx.at } : m
  trackIncoming(ctx.tx, vm, vm.migration, rec)
  let out: VmRecord = { ...vm, migration: rec, updatedAt: ctx.at }
  // the guest keeps its address: it moved, it did not boot again
  const ip = vm.status.ip != null ? { ip: vm.status.ip } : {}
  if (vm.assignedNode !== rec.owner) {
    if (vm.assignedNode !== null) ctx.tx.delete('vmsByNode', byNodeKey(vm.assignedNode, vm.id))
    ctx.tx.put('vmsByNode', byNodeKey(rec.owner, vm.id), vm.id)
    out = { ...out, assignedNode: rec.owner, status: { phase: 'starting', reason: `migrated live from ${nodeName(ctx, rec.source)}: resuming`, node: rec.owner, at: ctx.at, ...ip } }
  }
  if (rec.phase === 'done' && rec.reason === undefined && vm.status.node === rec.target) {
    out = { ...out, status: { phase: 'running', reason: `migrated live from ${nodeName(ctx, rec.source)}`, node: rec.target, at: ctx.at, ...ip } }
  }
  ctx.tx.put('vms', vm.id, out)
  return out
}

/** A node was marked down (storage/apply-ha.ts, same entry): every migration it takes part in ends —
 * aborted to the source before switchover, finished on the target after it. Assignments need no
 * change: they already follow the owner, and the mark-down then reschedules what the dead node owned. */
export function failMigrationsOf (ctx: ApplyContext, node: string, reason: string): string[] {
  const ended: string[] = []
  for (const [, vm] of ctx.tx.range<VmRecord>('vms')) {
    const m = activeMigration(vm)
    if (m === null || (m.source !== node && m.target !== node)) continue
    const t = step(m, { type: 'node-failed', node, reason: `${node === m.source ? 'source' : 'target'} ${nodeName(ctx, node)} down: ${reason}` })
    if (!t.ok) continue
    settle(ctx, vm, t.record)
    ended.push(vm.id)
  }
  return ended
}
