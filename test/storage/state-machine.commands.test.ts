// Each command's named errors, and that a rejected command changes nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../../protocols/model.ts'
import { encodeCbor } from '../../storage/codec.ts'
import { harness, registerNode, spec, errorKind } from './sm-fixtures.ts'
import { seededSigner } from '../../protocols/auth.ts'
import { missingRef } from '../../storage/apply-vms.ts'

/** admins are real (Ed25519) peer ids */
const [P1, P2, P9] = [1, 2, 9].map((n) => seededSigner(new Uint8Array(32).fill(n)).peerId)

/** Apply and expect the kind; a rejection must leave the model hash unchanged. */
function expectKind (h: ReturnType<typeof harness>, cmd: Command, kind: string): ApplyResult {
  const before = h.sm.stateHash()
  const r = h.run(cmd)
  assert.is(errorKind(r), kind, `${cmd.type}: ${r.ok ? 'ok' : r.error.message}`)
  if (!r.ok) assert.is(h.sm.stateHash(), before, `${cmd.type} rejected with ${kind} changed nothing`)
  return r
}

test('envelope: empty data is a no-op that advances applied; garbage is BadMessage; old indexes are Conflict', () => {
  const h = harness()
  const before = h.sm.stateHash()
  assert.equal(h.sm.apply(1, new Uint8Array(0)), { ok: true })
  assert.is(h.sm.applied(), 1)
  assert.is(errorKind(h.sm.apply(2, new Uint8Array([0xff, 0x00, 0x13]))), 'BadMessage')
  assert.is(errorKind(h.sm.apply(3, encodeCbor({ cmd: { type: 'AddAdmin' }, at: 1 }))), 'InvalidCommand')
  assert.is(errorKind(h.sm.apply(4, encodeCbor({ cmd: { type: 'AddAdmin', peerId: 'p', name: 'p' } }))), 'InvalidCommand') // no at
  assert.is(errorKind(h.sm.apply(5, new Uint8Array(300 * 1024))), 'TooLarge')
  assert.is(h.sm.applied(), 5)
  assert.is(errorKind(h.sm.apply(5, new Uint8Array(0))), 'Conflict')
  assert.is(h.sm.applied(), 5)
  assert.is(h.sm.stateHash(), before)
})

test('RegisterNode: new, identical re-register refreshes addrs, different settings or taken name is AlreadyExists', () => {
  const h = harness()
  const r = expectKind(h, registerNode('n1'), 'ok')
  assert.is((r as { value: NodeRecord }).value.state, 'ready')
  assert.is((r as { value: NodeRecord }).value.registeredAt, 1000)
  expectKind(h, { type: 'UpdateNode', id: 'n1', state: 'draining' }, 'ok')
  expectKind(h, registerNode('n1', { addrs: ['/ip4/10.0.0.9/tcp/7'] }), 'ok')
  const n = h.sm.getNode('n1')
  assert.equal(n?.addrs, ['/ip4/10.0.0.9/tcp/7'])
  assert.is(n?.state, 'draining', 're-register keeps the state')
  assert.is(n?.registeredAt, 1000)
  assert.is(n?.updatedAt, 3000)
  expectKind(h, registerNode('n1', { cpu: 99 }), 'AlreadyExists')
  expectKind(h, registerNode('n2', { name: 'node-n1' }), 'AlreadyExists')
  expectKind(h, registerNode(''), 'InvalidCommand')
})

test('UpdateNode and RemoveNode', () => {
  const h = harness()
  expectKind(h, { type: 'UpdateNode', id: 'nx', state: 'down' }, 'NotFound')
  expectKind(h, { type: 'RemoveNode', id: 'nx' }, 'NotFound')
  h.run(registerNode('n1'))
  expectKind(h, { type: 'UpdateNode', id: 'n1', labels: { zone: 'b' }, maxVms: 2 }, 'ok')
  assert.equal(h.sm.getNode('n1')?.labels, { zone: 'b' })
  assert.is(h.sm.getNode('n1')?.maxVms, 2)
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('web') })
  h.run({ type: 'AssignVm', id: 'v1', node: 'n1' })
  expectKind(h, { type: 'RemoveNode', id: 'n1' }, 'InUse')
  h.run({ type: 'AssignVm', id: 'v1', node: null })
  // its guest may still run on n1 until n1 says it is gone (storage/release-rules.ts)
  expectKind(h, { type: 'RemoveNode', id: 'n1' }, 'InUse')
  const since = h.sm.getVm('v1')!.releasing!.since
  h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: 'n1', generation: 1, status: { phase: 'stopped', reason: '', at: 1 }, released: since }] })
  expectKind(h, { type: 'RemoveNode', id: 'n1' }, 'ok')
  assert.is(h.sm.getNode('n1'), undefined)
})

test('CreateVm: spec validation, uniqueness, references', () => {
  const h = harness()
  expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('a', { vcpus: 0 }) }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('a', { vcpus: 257 }) }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('a', { memoryMiB: 63 }) }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('Bad_Name') }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('-a') }, 'InvalidSpec')
  const noVol = expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('a', { volumes: ['nope'] }) }, 'NotFound')
  const noNet = expectKind(h, { type: 'CreateVm', id: 'v', spec: spec('a', { networks: ['nope'] }) }, 'NotFound')
  // the words node/api.ts answers vm.create with before proposing come from the same function
  const none = { network: () => false, volume: () => false }
  assert.is(noVol.ok ? '' : noVol.error.message, missingRef(spec('a', { volumes: ['nope'] }), none))
  assert.is(noNet.ok ? '' : noNet.error.message, 'network nope not found')
  h.run({ type: 'CreateVolume', name: 'vol', pool: 'rbd', sizeGiB: 5 })
  const r = expectKind(h, { type: 'CreateVm', id: 'v1', spec: spec('a', { volumes: ['vol'] }), desired: 'stopped' }, 'ok')
  const vm = (r as { value: VmRecord }).value
  assert.is(vm.generation, 1)
  assert.is(vm.desired, 'stopped')
  assert.is(vm.status.phase, 'pending')
  assert.is(vm.createdAt, h.index() * 1000, 'timestamps come from the envelope')
  assert.is(h.sm.getVolume('vol')?.attachedTo, 'v1')
  assert.is(h.sm.getVmByName('a')?.id, 'v1')
  expectKind(h, { type: 'CreateVm', id: 'v1', spec: spec('b') }, 'AlreadyExists')
  expectKind(h, { type: 'CreateVm', id: 'v2', spec: spec('a') }, 'AlreadyExists')
  expectKind(h, { type: 'CreateVm', id: 'v2', spec: spec('b', { volumes: ['vol'] }) }, 'InUse')
})

test('UpdateVmSpec: generation++, rename, volume re-attachment; a failed rename changes nothing', () => {
  const h = harness()
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('a') }, 'NotFound')
  h.run({ type: 'CreateVolume', name: 'v-a', pool: 'rbd', sizeGiB: 5 })
  h.run({ type: 'CreateVolume', name: 'v-b', pool: 'rbd', sizeGiB: 5 })
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a', { volumes: ['v-a'] }) })
  h.run({ type: 'CreateVm', id: 'v2', spec: spec('b') })
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('c', { volumes: ['v-b'] }) }, 'ok')
  assert.is(h.sm.getVm('v1')?.generation, 2)
  assert.is(h.sm.getVmByName('a'), undefined)
  assert.is(h.sm.getVmByName('c')?.id, 'v1')
  assert.is(h.sm.getVolume('v-a')?.attachedTo, null)
  assert.is(h.sm.getVolume('v-b')?.attachedTo, 'v1')
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('b') }, 'AlreadyExists')
  // rename written first, then a missing volume: all of it must roll back
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('d', { volumes: ['missing'] }) }, 'NotFound')
  assert.is(h.sm.getVmByName('c')?.id, 'v1')
  assert.is(h.sm.getVmByName('d'), undefined)
  expectKind(h, { type: 'UpdateVmSpec', id: 'v2', spec: spec('b', { volumes: ['v-b'] }) }, 'InUse')
  // ifGeneration: a read-modify-write based on an older read is refused and changes nothing
  assert.is(h.sm.getVm('v1')?.generation, 2)
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('c', { memoryMiB: 512 }), ifGeneration: 1 }, 'GenerationMismatch')
  assert.is(h.sm.getVm('v1')?.spec.memoryMiB, spec('c').memoryMiB)
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('c', { memoryMiB: 512 }), ifGeneration: 2 }, 'ok')
  assert.is(h.sm.getVm('v1')?.generation, 3)
})

test('SetVmDesiredState', () => {
  const h = harness()
  expectKind(h, { type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' }, 'NotFound')
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a') })
  expectKind(h, { type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' }, 'ok')
  assert.is(h.sm.getVm('v1')?.desired, 'stopped')
  expectKind(h, { type: 'SetVmDesiredState', id: 'v1', desired: 'paused' } as unknown as Command, 'InvalidCommand')
})

test('AssignVm: node must exist and be ready, capacity and maxVms hold, null unassigns', () => {
  const h = harness()
  h.run(registerNode('n1', { cpu: 2, maxVms: 2 }))
  h.run(registerNode('n2'))
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a', { vcpus: 2 }) })
  h.run({ type: 'CreateVm', id: 'v2', spec: spec('b') })
  h.run({ type: 'CreateVm', id: 'v3', spec: spec('c') })
  expectKind(h, { type: 'AssignVm', id: 'vx', node: 'n1' }, 'NotFound')
  expectKind(h, { type: 'AssignVm', id: 'v1', node: 'nx' }, 'NotFound')
  const r = expectKind(h, { type: 'AssignVm', id: 'v1', node: 'n1', reason: 'best fit' }, 'ok')
  assert.equal((r as { value: VmRecord }).value.status, { phase: 'scheduled', reason: 'best fit', node: 'n1', at: h.index() * 1000 })
  expectKind(h, { type: 'AssignVm', id: 'v2', node: 'n1' }, 'NoCapacity') // 2 + 1 vCPUs > 2
  h.run({ type: 'UpdateNode', id: 'n1', capacity: { cpu: 8, memoryMiB: 4096, diskGiB: 100 } })
  expectKind(h, { type: 'AssignVm', id: 'v2', node: 'n1' }, 'ok')
  expectKind(h, { type: 'AssignVm', id: 'v3', node: 'n1' }, 'NoCapacity') // maxVms 2
  for (const state of ['cordoned', 'draining', 'down'] as const) {
    h.run({ type: 'UpdateNode', id: 'n2', state })
    expectKind(h, { type: 'AssignVm', id: 'v3', node: 'n2' }, 'Conflict')
  }
  expectKind(h, { type: 'AssignVm', id: 'v1', node: null }, 'ok')
  assert.is(h.sm.getVm('v1')?.assignedNode, null)
  assert.is(h.sm.getVm('v1')?.status.phase, 'pending')
  assert.equal(h.sm.listVms({ node: 'n1' }).map(v => v.id), ['v2'])
})

test('UpdateVmSpec of a placed VM must still fit on its node (NoCapacity changes nothing)', () => {
  const h = harness()
  h.run(registerNode('n1', { cpu: 2 }))
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a', { vcpus: 1 }) })
  h.run({ type: 'AssignVm', id: 'v1', node: 'n1' })
  const before = h.sm.stateHash()
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { vcpus: 3 }) }, 'NoCapacity')
  assert.is(h.sm.stateHash(), before)
  expectKind(h, { type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { vcpus: 2 }) }, 'ok')
  assert.is(h.sm.getVm('v1')?.generation, 2)
})

test('ReportVmStatus: only the assigned node, current generation; stale reports are skipped, not fatal', () => {
  const h = harness()
  h.run(registerNode('n1'))
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a') })
  h.run({ type: 'AssignVm', id: 'v1', node: 'n1' })
  const st = { phase: 'running' as const, reason: 'booted', at: 5, ip: '10.0.0.2' }
  const r = h.run({ type: 'ReportVmStatus', reports: [
    { id: 'v1', node: 'n1', generation: 1, status: st },
    { id: 'v1', node: 'n2', generation: 1, status: { ...st, phase: 'failed' } },
    { id: 'v1', node: 'n1', generation: 9, status: { ...st, phase: 'failed' } },
    { id: 'gone', node: 'n1', generation: 1, status: st }
  ] })
  assert.equal(r, { ok: true, value: { outcomes: ['applied', 'stale', 'stale', 'notFound'] } })
  assert.equal(h.sm.getVm('v1')?.status, { ...st, node: 'n1' })
  h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { vcpus: 2 }) })
  const r2 = h.run({ type: 'ReportVmStatus', reports: [{ id: 'v1', node: 'n1', generation: 1, status: { ...st, phase: 'stopped' } }] })
  assert.equal(r2, { ok: true, value: { outcomes: ['stale'] } })
  assert.is(h.sm.getVm('v1')?.status.phase, 'running')
  expectKind(h, { type: 'ReportVmStatus', reports: [{ id: 'v1', node: 'n1', generation: 2, status: { ...st, ip: 'not-an-ip' } }] }, 'InvalidCommand')
})

test('DeleteVm releases its volumes and addresses', () => {
  const h = harness()
  expectKind(h, { type: 'DeleteVm', id: 'v1' }, 'NotFound')
  h.run({ type: 'CreateVolume', name: 'vol', pool: 'rbd', sizeGiB: 5 })
  h.run({ type: 'CreateNetwork', name: 'net', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', gateway: '10.0.0.1' })
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a', { volumes: ['vol'], networks: ['net'] }) })
  h.run({ type: 'AllocateIp', network: 'net', vm: 'v1' })
  expectKind(h, { type: 'DeleteVm', id: 'v1' }, 'ok')
  assert.is(h.sm.getVm('v1'), undefined)
  assert.is(h.sm.getVmByName('a'), undefined)
  assert.is(h.sm.getVolume('vol')?.attachedTo, null)
  assert.equal(h.sm.getNetwork('net')?.allocations, {})
  expectKind(h, { type: 'DeleteVolume', name: 'vol' }, 'ok')
  expectKind(h, { type: 'DeleteNetwork', name: 'net' }, 'ok')
})

test('volumes: create, clone, grow only, snapshot, delete', () => {
  const h = harness()
  expectKind(h, { type: 'CreateVolume', name: 'a', pool: 'rbd', sizeGiB: 0 }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVolume', name: 'A', pool: 'rbd', sizeGiB: 1 }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVolume', name: 'a', pool: 'rbd', sizeGiB: 10 }, 'ok')
  expectKind(h, { type: 'CreateVolume', name: 'a', pool: 'rbd', sizeGiB: 10 }, 'AlreadyExists')
  expectKind(h, { type: 'CreateVolume', name: 'c', pool: 'rbd', sizeGiB: 10, parent: { volume: 'x', snapshot: 's' } }, 'NotFound')
  expectKind(h, { type: 'CreateVolume', name: 'c', pool: 'rbd', sizeGiB: 10, parent: { volume: 'a', snapshot: 's' } }, 'NotFound')
  expectKind(h, { type: 'SnapshotVolume', name: 'x', snapshot: 's' }, 'NotFound')
  expectKind(h, { type: 'SnapshotVolume', name: 'a', snapshot: 's' }, 'ok')
  expectKind(h, { type: 'SnapshotVolume', name: 'a', snapshot: 's' }, 'AlreadyExists')
  expectKind(h, { type: 'CreateVolume', name: 'c', pool: 'rbd', sizeGiB: 5, parent: { volume: 'a', snapshot: 's' } }, 'InvalidSpec')
  expectKind(h, { type: 'CreateVolume', name: 'c', pool: 'rbd', sizeGiB: 10, parent: { volume: 'a', snapshot: 's' } }, 'ok')
  assert.equal(h.sm.getVolume('c')?.parent, { volume: 'a', snapshot: 's' })
  expectKind(h, { type: 'ResizeVolume', name: 'a', sizeGiB: 9 }, 'InvalidSpec')
  expectKind(h, { type: 'ResizeVolume', name: 'x', sizeGiB: 9 }, 'NotFound')
  expectKind(h, { type: 'ResizeVolume', name: 'a', sizeGiB: 20 }, 'ok')
  assert.is(h.sm.getVolume('a')?.sizeGiB, 20)
  expectKind(h, { type: 'DeleteVolume', name: 'a' }, 'InUse') // has a clone
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('vm', { volumes: ['c'] }) })
  expectKind(h, { type: 'DeleteVolume', name: 'c' }, 'InUse') // attached
  h.run({ type: 'DeleteVm', id: 'v1' })
  expectKind(h, { type: 'DeleteVolume', name: 'c' }, 'ok')
  // the record stays, deleting, until the volume reconciler reports its image gone
  expectKind(h, { type: 'DeleteVolume', name: 'a' }, 'InUse') // its clone is still being deleted
  h.run(cephNode('n1'))
  expectKind(h, { type: 'ReportVolume', name: 'c', node: 'n1', generation: h.sm.getVolume('c')?.generation ?? -1, outcome: 'gone' }, 'ok')
  expectKind(h, { type: 'DeleteVolume', name: 'a' }, 'ok')
  expectKind(h, { type: 'DeleteVolume', name: 'a' }, 'ok') // already deleting: a retry changes nothing
  expectKind(h, { type: 'ReportVolume', name: 'a', node: 'n1', generation: h.sm.getVolume('a')?.generation ?? -1, outcome: 'gone' }, 'ok')
  expectKind(h, { type: 'DeleteVolume', name: 'a' }, 'NotFound')
})

function cephNode (id: string): Command {
  const c = registerNode(id) as Extract<Command, { type: 'RegisterNode' }>
  return { ...c, node: { ...c.node, capabilities: ['qemu', 'rbd'] } }
}

test('networks: CIDR, VLAN and VNI validation', () => {
  const h = harness()
  const net = (over: Partial<Extract<Command, { type: 'CreateNetwork' }>>): Command => ({ type: 'CreateNetwork', name: 'n', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', ...over })
  expectKind(h, net({ subnet: '10.0.0.1/24' }), 'InvalidSpec')
  expectKind(h, net({ subnet: '10.0.0.0/33' }), 'InvalidSpec')
  expectKind(h, net({ subnet: '10.0.0.0/31' }), 'InvalidSpec')
  expectKind(h, net({ subnet: '300.0.0.0/8' }), 'InvalidSpec')
  expectKind(h, net({ subnet: 'fd00::/64' }), 'InvalidSpec')
  expectKind(h, net({ gateway: '10.0.1.1' }), 'InvalidSpec')
  expectKind(h, net({ gateway: '10.0.0.255' }), 'InvalidSpec')
  expectKind(h, net({ kind: { type: 'vlan', vlan: 0 } }), 'InvalidSpec')
  expectKind(h, net({ kind: { type: 'vlan', vlan: 4095 } }), 'InvalidSpec')
  expectKind(h, net({ kind: { type: 'vxlan', vni: 0 } }), 'InvalidSpec')
  expectKind(h, net({ kind: { type: 'vxlan', vni: 16777216 } }), 'InvalidSpec')
  expectKind(h, net({ kind: { type: 'vlan', vlan: 4094 }, gateway: '10.0.0.1' }), 'ok')
  expectKind(h, net({}), 'AlreadyExists')
  expectKind(h, net({ name: 'x2', kind: { type: 'vxlan', vni: 16777215 }, subnet: '10.0.1.0/24' }), 'ok')
})

test('networks: a subnet overlapping an existing network is refused (Conflict), adjacent ones are not', () => {
  const h = harness()
  const net = (name: string, subnet: string): Command => ({ type: 'CreateNetwork', name, kind: { type: 'bridge' }, subnet })
  expectKind(h, net('a', '10.0.0.0/24'), 'ok')
  expectKind(h, net('same', '10.0.0.0/24'), 'Conflict')
  expectKind(h, net('inside', '10.0.0.128/25'), 'Conflict')
  expectKind(h, net('around', '10.0.0.0/16'), 'Conflict')
  expectKind(h, net('next', '10.0.1.0/24'), 'ok')
  expectKind(h, net('before', '9.255.255.0/24'), 'ok')
})

test('AllocateIp: lowest free host address, skipping network, gateway and broadcast; ReleaseIp', () => {
  const h = harness()
  h.run({ type: 'CreateNetwork', name: 'n', kind: { type: 'bridge' }, subnet: '10.0.0.0/29', gateway: '10.0.0.1' })
  for (const id of ['v1', 'v2', 'v3', 'v4', 'v5', 'v6']) h.run({ type: 'CreateVm', id, spec: spec(`vm-${id}`) })
  expectKind(h, { type: 'AllocateIp', network: 'x', vm: 'v1' }, 'NotFound')
  expectKind(h, { type: 'AllocateIp', network: 'n', vm: 'vx' }, 'NotFound')
  const ips = ['v1', 'v2', 'v3', 'v4', 'v5'].map(vm => (h.run({ type: 'AllocateIp', network: 'n', vm }) as { value: { ip: string } }).value.ip)
  assert.equal(ips, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'])
  assert.equal(h.run({ type: 'AllocateIp', network: 'n', vm: 'v2' }), { ok: true, value: { ip: '10.0.0.3' } }, 'same VM, same address')
  expectKind(h, { type: 'AllocateIp', network: 'n', vm: 'v6' }, 'NoCapacity')
  expectKind(h, { type: 'ReleaseIp', network: 'n', vm: 'v6' }, 'NotFound')
  assert.equal(h.run({ type: 'ReleaseIp', network: 'n', vm: 'v2' }), { ok: true, value: { ip: '10.0.0.3' } })
  assert.equal(h.run({ type: 'AllocateIp', network: 'n', vm: 'v6' }), { ok: true, value: { ip: '10.0.0.3' } })
  expectKind(h, { type: 'DeleteNetwork', name: 'n' }, 'InUse')
  expectKind(h, { type: 'DeleteNetwork', name: 'zz' }, 'NotFound')
})

test('DeleteNetwork is InUse while a VM spec names it', () => {
  const h = harness()
  h.run({ type: 'CreateNetwork', name: 'n', kind: { type: 'bridge' }, subnet: '10.0.0.0/24' })
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a', { networks: ['n'] }) })
  expectKind(h, { type: 'DeleteNetwork', name: 'n' }, 'InUse')
})

test('admins: add, duplicate, remove, never the last one', () => {
  const h = harness()
  expectKind(h, { type: 'AddAdmin', peerId: P1, name: 'alice' }, 'ok')
  expectKind(h, { type: 'AddAdmin', peerId: P1, name: 'alice' }, 'AlreadyExists')
  expectKind(h, { type: 'RemoveAdmin', peerId: P1 }, 'Conflict')
  expectKind(h, { type: 'RemoveAdmin', peerId: P9 }, 'NotFound')
  expectKind(h, { type: 'AddAdmin', peerId: P2, name: 'bob' }, 'ok')
  assert.ok(h.sm.isAdmin(P2))
  expectKind(h, { type: 'RemoveAdmin', peerId: P1 }, 'ok')
  assert.not.ok(h.sm.isAdmin(P1))
  assert.equal(h.sm.listAdmins().map(a => a.peerId), [P2])
  expectKind(h, { type: 'AddAdmin', peerId: 'has space', name: 'x' }, 'InvalidCommand')
})

test('idempotency: a retry with the same key returns the first result, even for a rejection', () => {
  const h = harness()
  const first = h.run({ type: 'AddAdmin', peerId: P1, name: 'a' }, 'req-1')
  assert.is(first.ok, true)
  assert.equal(h.run({ type: 'AddAdmin', peerId: P1, name: 'a' }, 'req-1'), first)
  const rej = h.run({ type: 'RemoveAdmin', peerId: P1 }, 'req-2')
  assert.is(errorKind(rej), 'Conflict')
  h.run({ type: 'AddAdmin', peerId: P2, name: 'b' })
  assert.equal(h.run({ type: 'RemoveAdmin', peerId: P1 }, 'req-2'), rej, 'stored rejection, not re-applied')
  assert.ok(h.sm.isAdmin(P1))
})

test.run()
