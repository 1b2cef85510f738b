// VM memory snapshots in the replicated state (storage/apply-snapshots.ts), with real signatures:
// only an admin asks for a snapshot, a restore or a delete; only the holding host reports, as
// itself; the rules refuse what the host could not carry out (a VM with volumes, not running, on
// another host than the file, at another spec generation, a second operation at once), and a
// refused command changes nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import { seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { SyncSigner } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import type { VmSnapshotRecord } from '../../protocols/snapshots.ts'
import { MAX_SNAPSHOTS_PER_VM, cloneSpec } from '../../protocols/snapshots.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { requestFromVm } from '../../placement/from-model.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { errorKind, harness, registerNode, spec } from './sm-fixtures.ts'

const key = (n: number): SyncSigner => seededSigner(new Uint8Array(32).fill(n))
const admin = key(21)
const na = key(22)
const nb = key(23)

function value<T> (r: ApplyResult): T {
  if (!r.ok) throw new Error(`${r.error.kind}: ${r.error.message}`)
  return r.value as T
}

type H = { sm: StateMachine, run: (s: SyncSigner, cmd: Command) => ApplyResult }

/** admin, nodes a and b, VM v1 running on a */
function cluster (): H {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  const run = (s: SyncSigner, cmd: Command): ApplyResult => {
    const v = validateCommand(cmd)
    if (!v.ok) return { ok: false, error: v.error }
    const env: CommandEnvelope = { cmd: v.cmd, at: (i + 1) * 1000, auth: signCommandSync(s, v.cmd, `n${i}`, i + 100) }
    return sm.apply(++i, encodeEnvelope(env), 1)
  }
  value(run(na, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }))
  for (const [s, name] of [[na, 'a'], [nb, 'b']] as const) value(run(s, registerNode(s.peerId, { name })))
  value(run(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }))
  const assign = validateCommand({ type: 'AssignVm', id: 'v1', node: na.peerId, term: 1 })
  if (!assign.ok) throw new Error('bad AssignVm')
  assert.ok(sm.apply(++i, encodeEnvelope({ cmd: assign.cmd, at: i * 1000, auth: signCommandSync(na, assign.cmd, 'assign', i + 100) }), 1).ok)
  value(run(na, { type: 'ReportVmStatus', reports: [{ id: 'v1', node: na.peerId, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  return { sm, run }
}

const refused = (r: ApplyResult, kind: string, re: RegExp): void => {
  assert.is(errorKind(r), kind, r.ok ? 'applied' : r.error.message)
  if (!r.ok) assert.match(r.error.message, re)
}
const snap = (h: H, name = 's1'): VmSnapshotRecord | undefined => h.sm.listVmSnapshots('v1').find((s) => s.name === name)
const report = (node: SyncSigner, event: string, extra: Record<string, unknown> = {}, name = 's1'): Command =>
  ({ type: 'ReportVmSnapshot', vm: 'v1', name, node: node.peerId, event, ...extra }) as Command

test('snapshot → taken → restore → restored → delete → removed: the record says where the state is, then is gone', () => {
  const h = cluster()
  const taking = value<VmSnapshotRecord>(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  assert.is(taking.phase, 'taking')
  assert.is(taking.node, na.peerId, 'taken by the VM\'s host')
  assert.is(taking.generation, 1)
  value(h.run(na, report(na, 'taken', { sizeBytes: 5_000_000, pausedMs: 300, path: '/d/snapshots/v1/s1.state' })))
  assert.equal(snap(h)?.location, { kind: 'local-file', path: '/d/snapshots/v1/s1.state' })
  assert.is(snap(h)?.sizeBytes, 5_000_000)
  assert.is(snap(h)?.disks, 'none')
  value(h.run(admin, { type: 'RestoreVm', vm: 'v1', name: 's1' }))
  assert.is(snap(h)?.restore?.phase, 'requested')
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's2' }), 'Conflict', /a restore from snapshot s1 is running; one snapshot operation per VM/)
  refused(h.run(admin, { type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /restore .* is running/)
  value(h.run(na, report(na, 'restored', { ms: 900 })))
  assert.equal(snap(h)?.restore, { requestedAt: snap(h)?.restore?.requestedAt, node: na.peerId, phase: 'done', at: snap(h)?.restore?.at, ms: 900 })
  assert.is(value<VmSnapshotRecord>(h.run(admin, { type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' })).phase, 'deleting')
  refused(h.run(admin, { type: 'RestoreVm', vm: 'v1', name: 's1' }), 'Conflict', /is deleting, not ready/)
  value(h.run(na, report(na, 'removed')))
  assert.is(snap(h), undefined)
})

test('authority: only an admin asks; only the holding host reports, as itself', () => {
  const h = cluster()
  refused(h.run(na, { type: 'SnapshotVm', vm: 'v1', name: 's1' }), 'Unauthorized', /needs an admin's signature/)
  value(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  const before = h.sm.stateHash()
  refused(h.run(nb, report(na, 'taken', { sizeBytes: 1, path: '/x' })), 'Unauthorized', /may not report on snapshots for node/)
  refused(h.run(nb, report(nb, 'taken', { sizeBytes: 1, path: '/x' })), 'Unauthorized', /this step is .*'s, not /)
  refused(h.run(admin, report(na, 'failed')), 'Unauthorized', /may not report on snapshots for node/)
  refused(h.run(na, report(na, 'restored')), 'Conflict', /stale report restored .* no restore of it is running/)
  refused(h.run(na, report(na, 'taken', { path: '/x' })), 'InvalidCommand', /a taken report carries sizeBytes and where the state is/)
  refused(h.run(na, report(na, 'taken', { sizeBytes: 1, path: '/x', pool: 'rbd', image: 'blixard-state.v1.s1' })), 'InvalidCommand', /path .* or pool and image .*, not both/)
  refused(h.run(na, report(na, 'taken', { sizeBytes: 1, image: 'blixard-state.v1.s1' })), 'InvalidCommand', /where the state is/)
  refused(h.run(na, report(na, 'taken', { sizeBytes: 1, pool: 'rbd', image: 'x'.repeat(129) })), 'TooLarge', /image is longer than 128/)
  // a host may name only the one state image a delete later removes, never another VM's disk
  refused(h.run(na, report(na, 'taken', { sizeBytes: 1, pool: 'rbd', image: 'victim-disk' })), 'InvalidCommand', /is named blixard-state\.v1\.s1, not victim-disk/)
  assert.is(h.sm.stateHash(), before, 'refused commands changed nothing')
  value(h.run(na, report(na, 'failed', { reason: 'qemu said no' })))
  assert.is(snap(h)?.phase, 'failed')
  assert.is(snap(h)?.reason, 'qemu said no')
  refused(h.run(admin, { type: 'RestoreVm', vm: 'v1', name: 's1' }), 'Conflict', /is failed, not ready \(qemu said no\)/)
})

test('refusals name why: a volume without its image, not running, another host, another generation, duplicates, the per-VM limit', () => {
  const h = cluster()
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 'Bad_Name' }), 'InvalidSpec', /must be a DNS label/)
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'nope', name: 's1' }), 'NotFound', /VM nope not found/)
  value(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's2' }), 'Conflict', /snapshot s1 is being taken/)
  value(h.run(na, report(na, 'taken', { sizeBytes: 1, path: '/x' })))
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's1' }), 'AlreadyExists', /already has a snapshot named s1/)
  refused(h.run(admin, { type: 'RestoreVm', vm: 'v1', name: 'zz' }), 'NotFound', /has no snapshot named zz/)
  // a spec change: other devices
  value(h.run(admin, { type: 'UpdateVmSpec', id: 'v1', spec: spec('web', { vcpus: 2 }) }))
  refused(h.run(admin, { type: 'RestoreVm', vm: 'v1', name: 's1' }), 'Conflict', /spec changed since snapshot s1 \(generation 1 → 2\)/)
  // a VM with volumes, and a stopped one
  value(h.run(admin, { type: 'CreateVm', id: 'v2', spec: spec('db'), desired: 'stopped' }))
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v2', name: 's1' }), 'Conflict', /VM db is not running \(pending, desired stopped\)/)
  value(h.run(admin, { type: 'CreateVolume', name: 'disk1', pool: 'rbd', sizeGiB: 1 }))
  value(h.run(admin, { type: 'CreateVm', id: 'v3', spec: spec('withdisk', { volumes: ['disk1'] }) }))
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v3', name: 's1' }), 'Conflict', /VM withdisk is not running/)
})

/** A cluster of nodes a and b with Ceph, VM v1 with volume disk1 (its image made), running on a. */
function withDisk (): ReturnType<typeof harness> {
  const h = harness()
  for (const n of ['a', 'b']) {
    const reg = registerNode(n) as Extract<Command, { type: 'RegisterNode' }>
    value(h.run({ ...reg, node: { ...reg.node, capabilities: ['qemu', 'rbd'] } }))
  }
  value(h.run({ type: 'CreateVolume', name: 'disk1', pool: 'rbd', sizeGiB: 1 }))
  value(h.run({ type: 'ReportVolume', name: 'disk1', node: 'a', generation: h.sm.getVolume('disk1')?.generation ?? -1, outcome: 'ready' }))
  value(h.run({ type: 'CreateVm', id: 'v1', spec: spec('web', { volumes: ['disk1'] }) }))
  return h
}
const runningOn = (h: ReturnType<typeof harness>, n: string): void => {
  const from = h.sm.getVm('v1')?.assignedNode
  value(h.run({ type: 'AssignVm', id: 'v1', node: n }))
  // the host it left says its guest stopped (the release a VM with volumes waits for)
  const since = h.sm.getVm('v1')?.releasing?.since
  if (from != null && since != null) value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: from, generation: 1, released: since, status: { phase: 'stopped', reason: '', at: 1 } }] }))
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: n, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
}

test('a volume whose image is not made yet is refused by name', () => {
  const h = withDisk()
  value(h.run({ type: 'CreateVolume', name: 'disk2', pool: 'rbd', sizeGiB: 1 }))
  value(h.run({ type: 'CreateVm', id: 'v2', spec: spec('two', { volumes: ['disk2'] }) }))
  value(h.run({ type: 'AssignVm', id: 'v2', node: 'a' }))
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v2', node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  refused(h.run({ type: 'SnapshotVm', vm: 'v2', name: 's1' }), 'Conflict', /VM two's volume disk2 has no RBD image yet \(pending\)/)
})

test('a VM with volumes: the record names each disk\'s RBD snapshot; state in an RBD image restores on any host, which alone reports it', () => {
  const h = withDisk()
  runningOn(h, 'a')
  const taking = value<VmSnapshotRecord>(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  assert.equal(taking.disks, [{ volume: 'disk1', pool: 'rbd', image: 'disk1', snapshot: 'blixard-vm.s1' }])
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'a', event: 'taken', sizeBytes: 9, pausedMs: 5, pool: 'rbd', image: 'blixard-state.v1.s1' }))
  assert.equal(h.sm.listVmSnapshots('v1')[0].location, { kind: 'rbd', pool: 'rbd', image: 'blixard-state.v1.s1' })
  // the VM moved to b: b restores it (a local file would have been refused)
  runningOn(h, 'b')
  assert.equal(value<VmSnapshotRecord>(h.run({ type: 'RestoreVm', vm: 'v1', name: 's1' })).restore?.node, 'b')
  refused(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's2' }), 'Conflict', /a restore from snapshot s1 is running/)
  refused(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /restore .* is running/)
  refused(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'a', event: 'restored', ms: 1 }), 'Unauthorized', /this step is b's, not a's/)
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'b', event: 'restored', ms: 400 }))
  assert.is(h.sm.listVmSnapshots('v1')[0].restore?.phase, 'done')
  // a holds it: a removes the image and the disk snapshots; once a left, b takes that over
  value(h.run({ type: 'RemoveNode', id: 'a' }))
  const del = value<VmSnapshotRecord>(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }))
  assert.is(del.phase, 'deleting')
  assert.is(del.node, 'b', 'what lives in Ceph is removed by the VM\'s host when the holder left')
  refused(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'a', event: 'removed' }), 'Unauthorized', /this step is b's/)
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'b', event: 'removed' }))
  assert.is(h.sm.listVmSnapshots('v1').length, 0)
})

test('a local-file snapshot still restores only on its holder', () => {
  const h = withDisk()
  runningOn(h, 'a')
  value(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'a', event: 'taken', sizeBytes: 9, path: '/d/s1.state' }))
  runningOn(h, 'b')
  refused(h.run({ type: 'RestoreVm', vm: 'v1', name: 's1' }), 'Conflict', /is a local file on node-a, and VM web is on node-b: only that host can restore it/)
})

test('the per-VM limit, a VM\'s delete marks its snapshots deleting, and a snapshot of a host that left goes at once', () => {
  const h = cluster()
  for (let i = 0; i < MAX_SNAPSHOTS_PER_VM; i++) {
    value(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: `s${i}` }))
    value(h.run(na, report(na, 'taken', { sizeBytes: 1, path: `/x${i}` }, `s${i}`)))
  }
  refused(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 'one-more' }), 'NoCapacity', new RegExp(`the most a VM keeps \\(${MAX_SNAPSHOTS_PER_VM}\\)`))
  value(h.run(admin, { type: 'DeleteVm', id: 'v1' }))
  assert.ok(h.sm.listVmSnapshots('v1').every((s) => s.phase === 'deleting'), 'the host is told to remove every file')
  value(h.run(na, report(na, 'removed', {}, 's0')))
  assert.is(h.sm.listVmSnapshots('v1').length, MAX_SNAPSHOTS_PER_VM - 1)
  value(h.run(admin, { type: 'RemoveNode', id: na.peerId }))
  const r = value<{ removed: boolean }>(h.run(admin, { type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }))
  assert.is(r.removed, true, 'no host left to remove the file: the record goes')
})

test('a save left on a host the VM moved off (it died mid-save) blocks nothing: the VM is snapshotted on its new host, the old one deleted', () => {
  const h = harness()
  for (const n of ['a', 'b']) value(h.run(registerNode(n)))
  value(h.run({ type: 'CreateVm', id: 'v1', spec: spec('web') }))
  const runningOn = (n: string): void => {
    value(h.run({ type: 'AssignVm', id: 'v1', node: n }))
    value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: n, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  }
  runningOn('a')
  value(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  refused(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /still being taken/)
  refused(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's2' }), 'Conflict', /snapshot s1 is being taken/)
  runningOn('b')
  assert.is(value<VmSnapshotRecord>(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's2' })).node, 'b')
  assert.is(value<VmSnapshotRecord>(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' })).phase, 'deleting', 'its host removes the partial file if it comes back')
  refused(h.run({ type: 'RestoreVm', vm: 'v1', name: 's1' }), 'Conflict', /is deleting, not ready/)
})


test('a clone (CreateVm fromSnapshot): its disks are RBD clones of the snapshot\'s, where the state is on hand; the snapshot cannot go while clones exist; the clone\'s delete removes its disks', () => {
  const h = withDisk()
  runningOn(h, 'a')
  value(h.run({ type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  const from = { vm: 'v1', name: 's1' }
  const src = h.sm.getVm('v1')!.spec
  refused(h.run({ type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: from }), 'Conflict', /snapshot s1 of VM web is taking, not ready/)
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'a', event: 'taken', sizeBytes: 9, pausedMs: 5, pool: 'rbd', image: 'blixard-state.v1.s1' }))
  runningOn(h, 'b')
  value(h.run({ type: 'RestoreVm', vm: 'v1', name: 's1' }))
  value(h.run({ type: 'ReportVmSnapshot', vm: 'v1', name: 's1', node: 'b', event: 'restored', ms: 400 }))
  // refusals by name: a missing VM or snapshot, other devices, volume names it did not choose
  refused(h.run({ type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: { vm: 'nope', name: 's1' } }), 'NotFound', /VM nope not found: nothing to clone snapshot s1 of/)
  refused(h.run({ type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: { vm: 'v1', name: 's9' } }), 'NotFound', /VM web has no snapshot named s9/)
  refused(h.run({ type: 'CreateVm', id: 'h1', spec: { ...cloneSpec(src, 'h'), memoryMiB: 512 }, fromSnapshot: from }), 'InvalidSpec', /has its devices .*h's differ/)
  refused(h.run({ type: 'CreateVm', id: 'h1', spec: { ...cloneSpec(src, 'h'), volumes: ['disk1'] }, fromSnapshot: from }), 'InvalidCommand', /disk 0 of clone h is volume h-d0, not disk1/)
  assert.is(h.sm.getVolume('h-d0'), undefined, 'a refused clone made no volume')
  const vm = value<VmRecord>(h.run({ type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: from }))
  assert.equal(vm.clonedFrom, { vm: 'v1', name: 's1', volumes: ['h-d0'], cachedOn: ['a', 'b'], pinnedTo: null })
  assert.equal(vm.spec.volumes, ['h-d0'])
  const vol = h.sm.getVolume('h-d0')
  assert.equal([vol?.parent, vol?.attachedTo, vol?.phase, vol?.sizeGiB], [{ volume: 'disk1', snapshot: 'blixard-vm.s1' }, 'h1', 'pending', 1], 'an RBD clone of the disk snapshot, for the volume reconciler to make')
  assert.equal(requestFromVm(vm).snapshot, { cachedOn: ['a', 'b'], pinnedTo: null }, 'placement prefers where the state is on hand')
  refused(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /snapshot s1 of VM web has clones: VM h; delete them first/)
  // its first running report: later starts boot its disk, placement no longer cares where the state is
  value(h.run({ type: 'ReportVolume', name: 'h-d0', node: 'a', generation: 1, outcome: 'ready' }))
  value(h.run({ type: 'AssignVm', id: 'h1', node: 'a' }))
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'h1', node: 'a', generation: 1, status: { phase: 'running', reason: 'resumed', at: 1 } }] }))
  const ran = h.sm.getVm('h1')!
  assert.is(typeof ran.clonedFrom?.resumedAt, 'number')
  assert.is(requestFromVm(ran).snapshot, undefined)
  // the clone's delete removes its own disk; the snapshot waits until that disk is gone
  value(h.run({ type: 'DeleteVm', id: 'h1' }))
  assert.equal([h.sm.getVolume('h-d0')?.phase, h.sm.getVolume('h-d0')?.attachedTo], ['deleting', null])
  refused(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /the clone volume h-d0 of its disks is still being removed/)
  value(h.run({ type: 'ReportVolume', name: 'h-d0', node: 'a', generation: h.sm.getVolume('h-d0')?.generation ?? -1, outcome: 'gone' }))
  assert.is(value<VmSnapshotRecord>(h.run({ type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' })).phase, 'deleting')
})

test('a clone of a local-file snapshot is pinned to its holder; the source\'s delete keeps a snapshot that has clones', () => {
  const h = cluster()
  value(h.run(admin, { type: 'SnapshotVm', vm: 'v1', name: 's1' }))
  value(h.run(na, report(na, 'taken', { sizeBytes: 1, path: '/d/s1.state' })))
  const src = h.sm.getVm('v1')!.spec
  // a host cannot create a VM, clone or not
  refused(h.run(na, { type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: { vm: 'v1', name: 's1' } }), 'Unauthorized', /admin/)
  const vm = value<VmRecord>(h.run(admin, { type: 'CreateVm', id: 'h1', spec: cloneSpec(src, 'h'), fromSnapshot: { vm: 'v1', name: 's1' } }))
  assert.equal(vm.clonedFrom, { vm: 'v1', name: 's1', volumes: [], cachedOn: [na.peerId], pinnedTo: na.peerId })
  value(h.run(admin, { type: 'DeleteVm', id: 'v1' }))
  assert.is(h.sm.listVmSnapshots('v1')[0]?.phase, 'ready', 'its clone still needs it')
  refused(h.run(admin, { type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' }), 'Conflict', /has clones: VM h/)
  value(h.run(admin, { type: 'DeleteVm', id: 'h1' }))
  assert.is(value<VmSnapshotRecord>(h.run(admin, { type: 'DeleteVmSnapshot', vm: 'v1', name: 's1' })).phase, 'deleting')
})

test('a clone with networks is refused on apply when the source\'s image does not read the identity line; without networks, or with the tiny image, it is made', () => {
  const h = harness()
  for (const n of ['a', 'b']) value(h.run(registerNode(n)))
  value(h.run({ type: 'CreateNetwork', name: 'lan', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', gateway: '10.0.0.1' }))
  const kernel = { kind: 'kernel', kernel: '/boot/vmlinuz' } as const
  const flake = { kind: 'flake', ref: 'github:acme/fn#guest' } as const
  const sources = [
    ['k1', spec('kvm', { image: kernel, networks: ['lan'] })],
    ['f1', spec('fvm', { image: flake, networks: ['lan'] })],
    ['k2', spec('kquiet', { image: kernel })],
    ['t1', spec('tvm', { networks: ['lan'] })]
  ] as const
  for (const [id, sp] of sources) {
    value(h.run({ type: 'CreateVm', id, spec: sp }))
    value(h.run({ type: 'AssignVm', id, node: 'a' }))
    value(h.run({ type: 'ReportVmStatus', reports: [{ id, node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
    value(h.run({ type: 'SnapshotVm', vm: id, name: 's1' }))
    value(h.run({ type: 'ReportVmSnapshot', vm: id, name: 's1', node: 'a', event: 'taken', sizeBytes: 9, pausedMs: 5, path: `/d/${id}.state` }))
  }
  const clone = (id: string, name: string): ApplyResult => h.run({ type: 'CreateVm', id: `c-${id}`, spec: cloneSpec(h.sm.getVm(id)!.spec, name), fromSnapshot: { vm: id, name: 's1' } })
  // the image named, what would happen, what to do
  refused(clone('k1', 'kc'), 'InvalidSpec', /^snapshot s1 of VM kvm: its image \(kernel \/boot\/vmlinuz\) does not read the blix-identity line, so a clone would resume with VM kvm's MAC and address on network lan; .*clone a snapshot of a VM without networks, or run the source on an image that reads blix-identity \(--image tiny\)$/)
  refused(clone('f1', 'fc'), 'InvalidSpec', /its image \(flake github:acme\/fn#guest\) does not read the blix-identity line/)
  assert.is(h.sm.getVm('c-k1'), undefined, 'a refused clone is no VM')
  assert.is(h.sm.listVms().length, 4)
  // refused whatever the snapshot's state: the same answer before it is ready
  value(h.run({ type: 'ReportVmStatus', reports: [{ id: 'k1', node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  value(h.run({ type: 'SnapshotVm', vm: 'k1', name: 's2' }))
  refused(h.run({ type: 'CreateVm', id: 'c-k1', spec: cloneSpec(h.sm.getVm('k1')!.spec, 'kc'), fromSnapshot: { vm: 'k1', name: 's2' } }), 'InvalidSpec', /snapshot s2 of VM kvm: its image \(kernel/)
  // no network: nothing to collide on; the tiny image takes its own identity after the resume
  assert.equal(value<VmRecord>(clone('k2', 'kqc')).spec.image, kernel)
  assert.equal(value<VmRecord>(clone('t1', 'tc')).spec.networks, ['lan'])
})

test.run()
