// The host side of a VM against a real state machine and a fake host: the address comes
// from Raft (AllocateIp through propose, the same one again on a restart), the VXLAN
// network is built with the other nodes as peers, the TAP and MAC are the VM's, volumes
// become QEMU rbd drives; reconcile follows node-list changes and removes deleted networks.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { HostResources } from '../../node/host-resources.ts'
import { HostNet } from '../../node/net-host/host-net.ts'
import { bridgeName, macFor, tapName } from '../../node/net-host/names.ts'
import { launchSpecFromVm } from '../../node/qemu/launch-spec.ts'
import type { CommandEnvelope } from '../../protocols/commands.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { FakeHost } from './fake-host.ts'

function setup (ceph: { conf: string, pool: string } | null = null, fence: ((pool: string, image: string) => Promise<string[]>) | null = null) {
  const h = harness()
  const proposed: CommandEnvelope[] = []
  const propose = async (env: CommandEnvelope) => { proposed.push(env); return h.run(env.cmd, env.key) }
  h.run(registerNode('me', { addrs: ['/ip4/10.0.0.1/tcp/7000'] }))
  h.run(registerNode('b', { addrs: ['/ip4/127.0.0.1/tcp/7000', '/ip4/10.0.0.2/tcp/7000'] }))
  h.run({ type: 'CreateNetwork', name: 'ovl', kind: { type: 'vxlan', vni: 4242 }, subnet: '10.60.0.0/24', gateway: '10.60.0.1' })
  const host = new FakeHost()
  const net = new HostNet({ underlayIp: '10.0.0.1', run: host.run })
  const res = new HostResources({ nodeId: 'me', sm: h.sm, propose, net, ceph, fence, now: () => 5 })
  return { h, host, net, res, proposed }
}

test('a VM on a VXLAN network: address through Raft, network and TAP on the host, guest params', async () => {
  const { h, host, res, proposed } = setup()
  assert.ok(h.run({ type: 'CreateVm', id: 'vm-1', spec: spec('web', { networks: ['ovl'] }) }).ok)
  const b = await res.bindings(h.sm.getVm('vm-1')!)
  assert.equal(proposed.map((e) => e.cmd), [{ type: 'AllocateIp', network: 'ovl', vm: 'vm-1' }])
  assert.equal(b, { nics: [{ tap: tapName('vm-1', 0), mac: macFor('vm-1', 0) }], drives: [], ip: '10.60.0.2/24', gw: '10.60.0.1' })
  assert.equal(h.sm.getNetwork('ovl')!.allocations, { '10.60.0.2': 'vm-1' })
  assert.equal([...host.fdb.get('blxx-4242')!], ['10.0.0.2'], 'the other node is the VXLAN peer; loopback and self skipped')
  assert.is(host.links.get(tapName('vm-1', 0))?.master, bridgeName('ovl'))
  // a restart of the guest keeps its address and proposes nothing
  const again = await res.bindings(h.sm.getVm('vm-1')!)
  assert.is(again.ip, '10.60.0.2/24')
  assert.is(proposed.length, 1)
  const launch = launchSpecFromVm(h.sm.getVm('vm-1')!, { tinyGuest: { kernel: 'k', initrd: 'i', kernelVersion: 'v' }, ...again })
  assert.ok(launch.boot.params!.includes('blix.ip=10.60.0.2/24') && launch.boot.params!.includes('blix.gw=10.60.0.1'))
  // a second VM gets the next address
  h.run({ type: 'CreateVm', id: 'vm-2', spec: spec('db', { networks: ['ovl'] }) })
  assert.is((await res.bindings(h.sm.getVm('vm-2')!)).ip, '10.60.0.3/24')
})

test('reconcile: a node joins (flood list grows); a deleted network loses its devices', async () => {
  const { h, host, res } = setup()
  h.run({ type: 'CreateVm', id: 'vm-1', spec: spec('web', { networks: ['ovl'] }) })
  h.run({ type: 'AssignVm', id: 'vm-1', node: 'me' })
  await res.reconcile()
  assert.equal([...host.fdb.get('blxx-4242')!], ['10.0.0.2'])
  h.run(registerNode('c', { addrs: ['/ip4/10.0.0.3/tcp/7000'] }))
  await res.reconcile()
  assert.equal([...host.fdb.get('blxx-4242')!].sort(), ['10.0.0.2', '10.0.0.3'])
  assert.ok(h.run({ type: 'DeleteVm', id: 'vm-1' }).ok)
  assert.ok(h.run({ type: 'DeleteNetwork', name: 'ovl' }).ok)
  await res.reconcile()
  assert.equal([...host.links.keys()].filter((n) => n.startsWith('blx')), [])
})

test('volumes become rbd drives; without a Ceph config the VM cannot start here', async () => {
  const { h, res } = setup()
  h.run({ type: 'CreateVolume', name: 'data1', pool: 'vms', sizeGiB: 1 })
  h.run({ type: 'CreateVm', id: 'vm-3', spec: spec('store', { volumes: ['data1'] }) })
  try { await res.bindings(h.sm.getVm('vm-3')!); assert.unreachable() } catch (e) { assert.is((e as { kind: string }).kind, 'Unavailable') }
  const fenced: string[] = []
  const withCeph = setup({ conf: '/etc/ceph/ceph.conf', pool: 'rbd' }, async (pool, image) => { fenced.push(`${pool}/${image}`); return ['127.0.0.1:0/1'] })
  withCeph.h.run({ type: 'CreateVolume', name: 'data1', pool: 'vms', sizeGiB: 1 })
  withCeph.h.run({ type: 'CreateVm', id: 'vm-3', spec: spec('store', { volumes: ['data1'] }) })
  const b = await withCeph.res.bindings(withCeph.h.sm.getVm('vm-3')!)
  assert.equal(b.drives, [{ kind: 'rbd', pool: 'vms', image: 'data1', conf: '/etc/ceph/ceph.conf' }])
  assert.equal(fenced, ['vms/data1'], 'the previous holder is fenced before the drive is handed to qemu')
  // the volume is attached to the VM in Raft: deleting it is refused
  const r = withCeph.h.run({ type: 'DeleteVolume', name: 'data1' })
  assert.ok(!r.ok && r.error.kind === 'InUse', JSON.stringify(r))
})

test.run()
