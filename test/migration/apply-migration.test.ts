// Live migration in the replicated state (storage/apply-migration.ts): the record on the VM, its
// phases, the owner always equal to vm.assignedNode, HA's mark-down ending a migration the right way,
// and who may report what (a forged or misdirected report refused, with real signatures).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { SyncSigner } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { errorKind, harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { stalledMigrations } from '../../node/migration/service.ts'
import { clusterFromModel } from '../../placement/from-model.ts'
import { cannotMigrateLive } from '../../protocols/migration-phases.ts'
import type { StallWatch } from '../../node/migration/service.ts'

type H = ReturnType<typeof harness>

function value<T> (r: ApplyResult): T {
  if (!r.ok) throw new Error(`${r.error.kind}: ${r.error.message}`)
  return r.value as T
}

/** Three nodes a, b, c; VM v1 running on a. */
function running (): H {
  const h = harness()
  for (const n of ['a', 'b', 'c']) value(h.run(registerNode(n)))
  value(h.run({ type: 'CreateVm', id: 'v1', spec: spec('web') }))
  value(h.run({ type: 'AssignVm', id: 'v1', node: 'a' }))
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  return h
}

const vm = (h: H): VmRecord => h.sm.getVm('v1')!
const started = (h: H): number => vm(h).migration!.started
const report = (h: H, node: string, event: Extract<Command, { type: 'ReportMigration' }>['event'], extra: Partial<Extract<Command, { type: 'ReportMigration' }>> = {}): ApplyResult =>
  h.run({ type: 'ReportMigration', vm: 'v1', node, started: started(h), event, ...extra })
const figures = { transferredBytes: 1000, remainingBytes: 500, totalBytes: 2000, dirtyPagesRate: 3, expectedDowntimeMs: 40, downtimeMs: null, totalTimeMs: 300 }

test('the happy path: preparing → transferring → switched (the VM moves in that entry) → done; the owner is always assignedNode', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  const owners: Array<[string, string | null, string]> = []
  const look = (): void => { const v = vm(h); owners.push([v.migration!.phase, v.assignedNode, v.migration!.owner]) }
  look()
  assert.is(value<{ outcome: string }>(report(h, 'b', 'target-ready')).outcome, 'applied'); look()
  value(report(h, 'a', 'progress', { figures })); look()
  assert.equal(vm(h).migration!.figures, figures, 'progress is on the record for the CLI')
  value(report(h, 'a', 'source-completed', { figures: { ...figures, remainingBytes: 0, downtimeMs: 80 } })); look()
  assert.equal(h.sm.listVms({ node: 'b' }).map(v => v.id), ['v1'], 'the by-node index moved with the switchover')
  assert.equal(h.sm.listVms({ node: 'a' }), [])
  assert.is(vm(h).status.phase, 'starting')
  value(report(h, 'b', 'target-running')); look()
  assert.equal(owners, [['preparing', 'a', 'a'], ['transferring', 'a', 'a'], ['transferring', 'a', 'a'], ['switched', 'b', 'b'], ['done', 'b', 'b']])
  const v = vm(h)
  assert.is(v.status.phase, 'running')
  assert.is(v.status.node, 'b')
  assert.match(v.status.reason, /migrated live from node-a/)
  assert.is(v.generation, 1, 'the generation moved, not a new one (no restart)')
  assert.is(v.migration!.ended, h.index() * 1000)
  // a late report of the ended attempt changes nothing
  const before = h.sm.stateHash()
  assert.is(value<{ outcome: string }>(report(h, 'a', 'failed', { reason: 'late' })).outcome, 'stale')
  assert.is(h.sm.stateHash(), before)
})

test('StartMigration refuses what cannot move, each with what to do', () => {
  const h = running()
  const start = (target: string): ApplyResult => h.run({ type: 'StartMigration', vm: 'v1', target })
  const refused = (r: ApplyResult, kind: string, re: RegExp): void => {
    assert.is(errorKind(r), kind)
    if (!r.ok) assert.match(r.error.message, re)
  }
  refused(start('a'), 'InvalidCommand', /already runs on node-a/)
  refused(start('zz'), 'NotFound', /node zz not found/)
  value(h.run({ type: 'UpdateNode', id: 'c', state: 'draining' }))
  refused(start('c'), 'Conflict', /node-c is draining/)
  value(h.run(registerNode('small', { maxVms: 0 })))
  refused(start('small'), 'NoCapacity', /maximum of 0 VMs/)
  value(h.run({ type: 'CreateVm', id: 'v2', spec: spec('idle'), desired: 'stopped' }))
  refused(h.run({ type: 'StartMigration', vm: 'v2', target: 'b' }), 'Conflict', /meant to be stopped/)
  value(h.run({ type: 'CreateVm', id: 'v3', spec: spec('queued') }))
  refused(h.run({ type: 'StartMigration', vm: 'v3', target: 'b' }), 'Conflict', /not placed on any node/)
  value(start('b'))
  refused(start('b'), 'Conflict', /already migrating to node-b \(preparing\).*--cancel/)
})

test('the target holds the VM\'s resources from the start of the move: in apply and in placement\'s view', () => {
  const h = running()
  value(h.run(registerNode('d', { maxVms: 1 })))
  value(h.run({ type: 'CreateVm', id: 'v2', spec: spec('db') }))
  value(h.run({ type: 'AssignVm', id: 'v2', node: 'a' }))
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v2', node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'd' }))
  const r = h.run({ type: 'StartMigration', vm: 'v2', target: 'd' })
  assert.is(errorKind(r), 'NoCapacity', 'a second move into a node with room for one')
  const cluster = clusterFromModel(h.sm.listNodes(), h.sm.listVms(), new Map())
  const d = cluster.nodes.find(n => n.id === 'd')!
  assert.equal([d.vmCount, d.reserved.memoryMiB], [1, 128], 'placement counts the incoming VM on its target')
  assert.equal(cluster.placed.filter(p => p.nodeId === 'd'), [], 'but it is not placed there yet: nothing moves it from there')
  assert.equal(cluster.placed.filter(p => p.nodeId === 'a').map(p => p.request.vmId).sort(), ['v1', 'v2'])
})

test('an assignment, a preemption or a larger spec cannot take the room a move into the node holds (found by the simulator: the switchover then overfilled it)', () => {
  const h = running()
  value(h.run(registerNode('d', { maxVms: 2 })))
  value(h.run({ type: 'CreateVm', id: 'v2', spec: spec('db', { memoryMiB: 3000 }) }))
  value(h.run({ type: 'CreateVm', id: 'v3', spec: spec('batch', { memoryMiB: 4000, priority: 5 }) }))
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'd' }))
  // d: 4096 MiB, 128 promised to v1's move: 3000 more would still fit, but not 3000 + 1000
  value(h.run({ type: 'AssignVm', id: 'v2', node: 'd' }))
  value(h.run({ type: 'CreateVm', id: 'v4', spec: spec('cache', { memoryMiB: 1000 }) }))
  const r = h.run({ type: 'AssignVm', id: 'v4', node: 'd' })
  assert.is(errorKind(r), 'NoCapacity', 'the move\'s room is not free: 128 + 3000 + 1000 > 4096')
  const p = h.run({ type: 'PreemptVm', vm: 'v3', node: 'd', victims: ['v2'] })
  assert.is(errorKind(p), 'NoCapacity', 'evicting v2 makes room for 4000 only if the incoming 128 is forgotten')
  value(h.run({ type: 'UpdateVmSpec', id: 'v2', spec: spec('db', { memoryMiB: 3968 }) }))
  const u = h.run({ type: 'UpdateVmSpec', id: 'v2', spec: spec('db', { memoryMiB: 3969 }) })
  assert.is(errorKind(u), 'NoCapacity', 'a spec one MiB over what the move left')
  // once it switched over, v1 is d's own: the room is counted once, through the by-node index
  value(report(h, 'd', 'target-ready'))
  value(report(h, 'a', 'source-completed'))
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 'v2', spec: spec('db', { memoryMiB: 3969 }) })), 'NoCapacity', 'still over: v1 is on d now')
  value(report(h, 'd', 'target-running'))
  // an aborted move gives its room back
  const h2 = running()
  value(h2.run(registerNode('d', { maxVms: 1 })))
  value(h2.run({ type: 'StartMigration', vm: 'v1', target: 'd' }))
  value(h2.run({ type: 'CreateVm', id: 'v2', spec: spec('db') }))
  assert.is(errorKind(h2.run({ type: 'AssignVm', id: 'v2', node: 'd' })), 'NoCapacity', 'one VM allowed: the incoming one')
  value(h2.run({ type: 'CancelMigration', vm: 'v1' }))
  assert.is(vm(h2).migration!.phase, 'aborted')
  value(h2.run({ type: 'AssignVm', id: 'v2', node: 'd' }))
})

test('while it moves, the VM keeps its spec, desired state, place and existence', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  const before = h.sm.stateHash()
  for (const cmd of [
    { type: 'UpdateVmSpec', id: 'v1', spec: spec('web', { vcpus: 2 }) },
    { type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' },
    { type: 'AssignVm', id: 'v1', node: 'c' },
    { type: 'AssignVm', id: 'v1', node: null },
    { type: 'DeleteVm', id: 'v1' }
  ] satisfies Command[]) {
    const r = h.run(cmd)
    assert.is(errorKind(r), 'Conflict', cmd.type)
    if (!r.ok) assert.match(r.error.message, /is migrating to node-b .*blixard vm migrate web --cancel/)
  }
  assert.is(h.sm.stateHash(), before)
})

test('cancel: while preparing it aborts; while memory moves the source decides; after switchover it is refused', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(h.run({ type: 'CancelMigration', vm: 'v1' }))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['aborted', 'a'])
  // mid-transfer, QEMU completing first: the switchover stands
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(h.run({ type: 'CancelMigration', vm: 'v1', reason: 'changed my mind' }))
  assert.equal([vm(h).migration!.phase, vm(h).migration!.cancelRequested], ['transferring', 'changed my mind'])
  assert.is(errorKind(h.run({ type: 'CancelMigration', vm: 'v1' })), 'Conflict', 'a second cancel')
  value(report(h, 'a', 'source-completed'))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['switched', 'b'])
  value(report(h, 'b', 'target-running'))
  // mid-transfer, the source cancelling first
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'a' }))
  value(report(h, 'a', 'target-ready'))
  value(h.run({ type: 'CancelMigration', vm: 'v1' }))
  value(report(h, 'b', 'failed', { reason: 'cancelled' }))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['aborted', 'b'])
  // the rest on a fresh attempt from b to a... and back to the old shape of this test
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'a' }))
  value(h.run({ type: 'CancelMigration', vm: 'v1' }))
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'a' }))
  value(report(h, 'a', 'target-ready'))
  value(report(h, 'b', 'source-completed'))
  value(report(h, 'a', 'target-running'))
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(h.run({ type: 'CancelMigration', vm: 'v1' }))
  value(report(h, 'a', 'failed', { reason: 'cancelled' }))
  assert.is(vm(h).migration!.phase, 'aborted')
  assert.is(vm(h).assignedNode, 'a')
  assert.is(errorKind(h.run({ type: 'CancelMigration', vm: 'v1' })), 'Conflict', 'nothing in flight')
  // a new attempt; its reports are not confused with the old one's
  const oldStarted = started(h)
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  assert.is(value<{ outcome: string }>(h.run({ type: 'ReportMigration', vm: 'v1', node: 'b', started: oldStarted, event: 'target-ready' })).outcome, 'stale')
  assert.is(vm(h).migration!.phase, 'preparing')
  value(report(h, 'b', 'target-ready'))
  value(report(h, 'a', 'source-completed'))
  const r = h.run({ type: 'CancelMigration', vm: 'v1' })
  assert.is(errorKind(r), 'Conflict')
  if (!r.ok) assert.match(r.error.message, /past switchover/)
  assert.is(vm(h).assignedNode, 'b')
})

test('a failure report: before switchover back to the source, after it the target keeps the VM', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(report(h, 'a', 'failed', { reason: 'Unable to write to socket' }))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode, vm(h).status.node], ['aborted', 'a', 'a'])
  assert.match(vm(h).migration!.reason!, /source failed: Unable to write to socket/)

  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(report(h, 'a', 'source-completed'))
  value(report(h, 'b', 'failed', { reason: 'qemu exited' }))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['done', 'b'], 'the paused source is never resumed: the target (its agent, or HA) owns it')
})

test('HA: the target marked down before switchover → the source keeps it; the source down after switchover → the target owns it', () => {
  const h = running()
  const down = (node: string): ApplyResult => {
    value(h.run({ type: 'RenewLeases', leases: [{ node, epoch: 0 }], leaseMs: 9_000 }))
    return h.run({ type: 'MarkNodeDown', node, epoch: 0, seq: h.sm.getNode(node)!.leaseSeq ?? 0, expiredAt: 0, reason: 'lease expired' })
  }
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(down('b'))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode, vm(h).status.phase], ['aborted', 'a', 'running'], 'the VM stays where it runs: not rescheduled')
  assert.match(vm(h).migration!.reason!, /target node-b down/)

  // c is the next target; the source dies after switchover
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'c' }))
  value(report(h, 'c', 'target-ready'))
  value(report(h, 'a', 'source-completed'))
  value(down('a'))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['done', 'c'], 'not rescheduled off a: it already left')
  assert.match(vm(h).migration!.reason!, /source node-a down/)
})

test('HA: the source down before switchover → aborted, and the VM is rescheduled like any VM of a dead host', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(h.run({ type: 'RenewLeases', leases: [{ node: 'a', epoch: 0 }], leaseMs: 9_000 }))
  value(h.run({ type: 'MarkNodeDown', node: 'a', epoch: 0, seq: 1, expiredAt: 0, reason: 'lease expired' }))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode, vm(h).status.phase], ['aborted', null, 'pending'])
})

test('ExpireMigration (the leader saw no step): ends the phase it judged by the switchover rule, a no-op once it moved on', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  const expire = (phase: 'preparing' | 'transferring' | 'switched'): ApplyResult => h.run({ type: 'ExpireMigration', vm: 'v1', started: started(h), phase, reason: 'no step in phase x for 60 s' })
  value(report(h, 'b', 'target-ready'))
  const before = h.sm.stateHash()
  assert.is(value<{ outcome: string }>(expire('preparing')).outcome, 'stale', 'judged on an older phase')
  assert.is(h.sm.stateHash(), before)
  assert.is(value<{ outcome: string }>(expire('transferring')).outcome, 'applied')
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode], ['aborted', 'a'])

  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  value(report(h, 'b', 'target-ready'))
  value(report(h, 'a', 'source-completed'))
  value(expire('switched'))
  assert.equal([vm(h).migration!.phase, vm(h).assignedNode, vm(h).migration!.reason], ['done', 'b', 'no step in phase x for 60 s'])
})

test('stalledMigrations: a migration whose phase and figures stay the same for the stall time, judged once per period', () => {
  const h = running()
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'b' }))
  const seen: StallWatch = new Map()
  const at = (t: number): string[] => stalledMigrations(h.sm.listVms(), seen, t, 1000).map(m => m.phase)
  assert.equal(at(0), [])
  assert.equal(at(999), [])
  assert.equal(at(1000), ['preparing'])
  assert.equal(at(1500), [], 'not again at once')
  value(report(h, 'b', 'target-ready'))
  assert.equal(at(1600), [], 'a step resets the watch')
  value(report(h, 'a', 'progress', { figures }))
  assert.equal(at(2500), [], 'new figures are a step')
  value(report(h, 'a', 'progress', { figures: { ...figures, totalTimeMs: 999 } }))
  assert.equal(at(3500), ['transferring'], 'only moved bytes count: a stuck stream still reports a growing total time')
  value(h.run({ type: 'CancelMigration', vm: 'v1' }))
  assert.equal(at(3600), [], 'a cancel request is a step')
  value(report(h, 'a', 'failed', { reason: 'cancelled' }))
  assert.equal(at(9000), [])
  assert.is(seen.size, 0, 'ended migrations are forgotten')
})

// ---- authority, with real signatures ----

const key = (n: number): SyncSigner => seededSigner(new Uint8Array(32).fill(n))
const admin = key(11)
const na = key(12)
const nb = key(13)
const nc = key(14)

function signedCluster (): { sm: StateMachine, run: (s: SyncSigner, cmd: Command) => ApplyResult } {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  const run = (s: SyncSigner, cmd: Command): ApplyResult => {
    const v = validateCommand(cmd)
    if (!v.ok) throw new Error(v.error.message)
    const env: CommandEnvelope = { cmd: v.cmd, at: (i + 1) * 1000, auth: signCommandSync(s, v.cmd, `n${i}`, i + 100) }
    return sm.apply(++i, encodeEnvelope(env), 1)
  }
  value(run(na, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }))
  for (const [s, name] of [[na, 'a'], [nb, 'b'], [nc, 'c']] as const) value(run(s, registerNode(s.peerId, { name })))
  value(run(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }))
  // the leader's placement, then the host's report
  const sm2 = sm
  const assign = validateCommand({ type: 'AssignVm', id: 'v1', node: na.peerId, term: 1 })
  if (!assign.ok) throw new Error('bad AssignVm')
  assert.ok(sm2.apply(++i, encodeEnvelope({ cmd: assign.cmd, at: i * 1000, auth: signCommandSync(na, assign.cmd, 'assign', i + 100) }), 1).ok)
  value(run(na, { type: 'ReportVmStatus', reports: [{ id: 'v1', node: na.peerId, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  return { sm, run }
}

test('authority: only an admin starts or cancels; a node reports only as itself, only on its own migration, only its own events', () => {
  const h = signedCluster()
  const refused = (r: ApplyResult, re: RegExp): void => {
    assert.is(errorKind(r), 'Unauthorized')
    if (!r.ok) assert.match(r.error.message, re)
  }
  refused(h.run(na, { type: 'StartMigration', vm: 'v1', target: nb.peerId }), /needs an admin's signature/)
  value(h.run(admin, { type: 'StartMigration', vm: 'v1', target: nb.peerId }))
  const at = h.sm.getVm('v1')!.migration!.started
  const rep = (event: Extract<Command, { type: 'ReportMigration' }>['event'], node: string): Command => ({ type: 'ReportMigration', vm: 'v1', node, started: at, event })
  const before = h.sm.stateHash()
  // forged: c signs a report in b's name
  refused(h.run(nc, rep('target-ready', nb.peerId)), /may not report on migration for node/)
  // c as itself, but it takes no part
  refused(h.run(nc, rep('target-ready', nc.peerId)), /takes no part in the migration of VM v1/)
  refused(h.run(nc, rep('failed', nc.peerId)), /takes no part/)
  // the source claiming the target's event (to skip the target's readiness)
  refused(h.run(na, rep('target-ready', na.peerId)), /target-ready is the target's report; node a is the source/)
  // an admin is not a node
  refused(h.run(admin, rep('target-ready', nb.peerId)), /may not report on migration for node/)
  assert.is(h.sm.stateHash(), before, 'refused reports changed nothing')
  value(h.run(nb, rep('target-ready', nb.peerId)))
  refused(h.run(nb, rep('source-completed', nb.peerId)), /source-completed is the source's report/)
  value(h.run(na, rep('source-completed', na.peerId)))
  assert.is(h.sm.getVm('v1')!.assignedNode, nb.peerId)
  refused(h.run(nc, { type: 'CancelMigration', vm: 'v1' }), /needs an admin's signature/)
})

test('authority: ExpireMigration is the leader\'s decision, signed for its term', () => {
  const h = signedCluster() // a signed AssignVm pinned node a as term 1's leader
  value(h.run(admin, { type: 'StartMigration', vm: 'v1', target: nb.peerId }))
  const at = h.sm.getVm('v1')!.migration!.started
  const expire = (term?: number): Command => ({ type: 'ExpireMigration', vm: 'v1', started: at, phase: 'preparing', reason: 'stalled', ...(term !== undefined ? { term } : {}) })
  const refused = (r: ApplyResult, re: RegExp): void => {
    assert.is(errorKind(r), 'Unauthorized')
    if (!r.ok) assert.match(r.error.message, re)
  }
  refused(h.run(admin, expire(1)), /must be signed by a node \(the leader\)/)
  refused(h.run(nb, expire(1)), /must be signed by that term's leader/)
  refused(h.run(na, expire()), /carries no leader term/)
  refused(h.run(na, expire(2)), /lands in an entry of term 1/)
  assert.is(h.sm.getVm('v1')!.migration!.phase, 'preparing')
  value(h.run(na, expire(1)))
  assert.is(h.sm.getVm('v1')!.migration!.phase, 'aborted')
})

test('vm migrate --cold (StartMigration cold): a reassignment with its reason, no migration record; refused mid-live-move; a VM that cannot move live says why', () => {
  const h = running()
  const nodeOf = (id: string): ReturnType<H['sm']['getNode']> => h.sm.getNode(id)
  assert.is(cannotMigrateLive(vm(h), nodeOf), null, 'a running QEMU guest can move live')
  // cold, running: it leaves a for b at once, to boot there (the agents stop and start it)
  let v = value<VmRecord>(h.run({ type: 'StartMigration', vm: 'v1', target: 'b', cold: true }))
  assert.equal([v.assignedNode, v.status.phase, v.status.reason, v.migration], ['b', 'scheduled', 'moved cold from node-a by an admin', undefined])
  assert.is(errorKind(h.run({ type: 'StartMigration', vm: 'v1', target: 'b', cold: true })), 'InvalidCommand', 'already there')
  // while a live move is in flight, no cold one
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: 'b', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  value(h.run({ type: 'StartMigration', vm: 'v1', target: 'c' }))
  assert.is(errorKind(h.run({ type: 'StartMigration', vm: 'v1', target: 'a', cold: true })), 'Conflict')
  // a stopped VM cannot move live (the reason names --cold) but moves cold
  value(h.run({ type: 'CreateVm', id: 'v2', spec: spec('idle'), desired: 'stopped' }))
  value(h.run({ type: 'AssignVm', id: 'v2', node: 'a' }))
  const why = cannotMigrateLive(h.sm.getVm('v2')!, nodeOf)
  assert.is(why?.kind, 'Conflict')
  assert.match(why?.message ?? '', /meant to be stopped.*--cold/)
  v = value<VmRecord>(h.run({ type: 'StartMigration', vm: 'v2', target: 'c', cold: true }))
  assert.equal([v.assignedNode, v.desired], ['c', 'stopped'])
  // the schema takes cold: true or nothing
  assert.ok(validateCommand({ type: 'StartMigration', vm: 'v1', target: 'b', cold: true }).ok)
  assert.not.ok(validateCommand({ type: 'StartMigration', vm: 'v1', target: 'b', cold: false }).ok)
  assert.not.ok(validateCommand({ type: 'StartMigration', vm: 'v1', target: 'b', cold: 'yes' }).ok)
})

test.run()
