// Host networking without a kernel: names, MACs, the exact commands for each
// network kind (the VLAN path included, which this machine cannot run), and the
// executor's idempotency and cleanup against a fake host.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { HostNet } from '../../node/net-host/host-net.ts'
import { bridgeName, macFor, tapName, vlanIfName, vxlanName } from '../../node/net-host/names.ts'
import { checkIpv4, hostNetwork, planEnsureNetwork, planPeers } from '../../node/net-host/plan.ts'
import { parseIpv4 } from '../../protocols/command-schema.ts'
import { parseFloodList, parseLinks } from '../../node/net-host/observe.ts'
import { underlayPeers } from '../../node/net-host/peers.ts'
import type { NodeRecord } from '../../protocols/model.ts'
import { FakeHost } from './fake-host.ts'

const VM = '3f0c5a8e-1b2d-4c6e-9f10-123456789abc'

test('names: ≤ 15 bytes, deterministic, distinct', () => {
  const t0 = tapName(VM, 0)
  assert.is(t0, tapName(VM, 0))
  assert.ok(t0.length <= 15 && /^blxt[0-9a-f]{8}n0$/.test(t0), t0)
  assert.is.not(t0, tapName(VM, 1))
  assert.is.not(t0, tapName('another-vm', 0))
  const b = bridgeName('a-network-name-much-longer-than-fifteen-bytes')
  assert.ok(b.length <= 15 && b.startsWith('blxb-'), b)
  assert.is.not(b, bridgeName('other'))
  assert.is(vxlanName(16_777_215), 'blxx-16777215')
  assert.is(vlanIfName('eth0', 100), 'eth0.100')
  const long = vlanIfName('enp0s31f6abcd', 4094)
  assert.ok(long.length <= 15 && long.endsWith('.4094'), long)
  assert.throws(() => vxlanName(0))
  assert.throws(() => vlanIfName('eth0', 4095))
  assert.throws(() => tapName(VM, 10))
})

test('MAC: locally administered unicast, stable per VM and NIC', () => {
  const seen = new Set<string>()
  for (let i = 0; i < 500; i++) {
    const m = macFor(`vm-${i}`, i % 3)
    assert.match(m, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/)
    const first = parseInt(m.slice(0, 2), 16)
    assert.is(first & 1, 0, `unicast ${m}`)
    assert.is(first & 2, 2, `locally administered ${m}`)
    seen.add(m)
  }
  assert.is(seen.size, 500)
  assert.is(macFor(VM), macFor(VM, 0))
})

test('VLAN network: the exact commands on an empty host, then none', async () => {
  const host = new FakeHost(['lo', 'eth0'])
  const net = new HostNet({ uplink: 'eth0', run: host.run })
  const rec = { name: 'lan100', kind: { type: 'vlan' as const, vlan: 100 } }
  const br = bridgeName('lan100')
  const { commands } = await net.ensureNetwork(rec)
  assert.equal(commands.map((c) => c.join(' ')), [
    `ip link add ${br} type bridge`,
    `ip link set ${br} up`,
    'ip link add link eth0 name eth0.100 type vlan id 100',
    `ip link set eth0.100 master ${br}`,
    'ip link set eth0.100 up'
  ])
  assert.equal((await net.ensureNetwork(rec)).commands, [], 'idempotent')
  const nic = await net.ensureTap(VM, 0, rec)
  assert.equal(host.log.slice(-3), [`ip tuntap add dev ${nic.tap} mode tap`, `ip link set ${nic.tap} master ${br}`, `ip link set ${nic.tap} up`])
  assert.is(nic.mac, macFor(VM, 0))
  const n = host.log.length
  await net.ensureTap(VM, 0, rec)
  assert.is(host.log.length, n, 'TAP idempotent')
  await net.removeTap(nic.tap)
  await net.removeTap(nic.tap)
  assert.equal(await net.removeNetwork(rec), [['ip', 'link', 'del', 'eth0.100'], ['ip', 'link', 'del', br]])
  assert.equal(await net.removeNetwork(rec), [])
  assert.equal(await net.ourLinks(), [])
  assert.equal([...host.links.keys()], ['lo', 'eth0'], 'the uplink is left alone')
})

test('IPv4: the host plan and the command schema accept and refuse the same addresses (no leading zeros)', () => {
  for (const ip of ['10.0.0.1', '0.0.0.0', '255.255.255.255', '192.168.100.7']) {
    assert.is(checkIpv4(ip, 'peer'), ip)
    assert.ok(parseIpv4(ip) !== null, ip)
  }
  for (const ip of ['010.0.0.1', '10.0.0.01', '10.00.0.1', '256.0.0.1', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '']) {
    assert.throws(() => checkIpv4(ip, 'peer'), (e: unknown) => (e as { kind?: string }).kind === 'InvalidSpec', ip)
    assert.is(parseIpv4(ip), null, ip)
  }
})

test('VLAN network: no uplink configured or present is Unavailable', async () => {
  const rec = { name: 'lan', kind: { type: 'vlan' as const, vlan: 7 } }
  try { await new HostNet({ run: new FakeHost().run }).ensureNetwork(rec); assert.unreachable() } catch (e) { assert.is((e as { kind: string }).kind, 'Unavailable') }
  try { await new HostNet({ uplink: 'bond0', run: new FakeHost().run }).ensureNetwork(rec); assert.unreachable() } catch (e) { assert.is((e as { kind: string }).kind, 'Unavailable') }
})

test('VXLAN network: device, flood list kept in sync with the node list, replaced on a changed source', async () => {
  const host = new FakeHost()
  const net = new HostNet({ underlayIp: '10.0.0.1', run: host.run })
  const rec = { name: 'overlay', kind: { type: 'vxlan' as const, vni: 4242 } }
  const br = bridgeName('overlay')
  const { commands } = await net.ensureNetwork(rec, ['10.0.0.3', '10.0.0.2', '10.0.0.1'])
  assert.equal(commands.map((c) => c.join(' ')), [
    `ip link add ${br} type bridge`,
    `ip link set ${br} up`,
    'ip link add blxx-4242 type vxlan id 4242 local 10.0.0.1 dstport 4789',
    `ip link set blxx-4242 master ${br}`,
    'ip link set blxx-4242 up',
    'bridge fdb append 00:00:00:00:00:00 dev blxx-4242 dst 10.0.0.2',
    'bridge fdb append 00:00:00:00:00:00 dev blxx-4242 dst 10.0.0.3'
  ])
  assert.equal((await net.ensureNetwork(rec, ['10.0.0.2', '10.0.0.3'])).commands, [])
  // a node left, another joined
  assert.equal((await net.syncPeers(rec, ['10.0.0.3', '10.0.0.4'])).map((c) => c.join(' ')), [
    'bridge fdb append 00:00:00:00:00:00 dev blxx-4242 dst 10.0.0.4',
    'bridge fdb del 00:00:00:00:00:00 dev blxx-4242 dst 10.0.0.2'
  ])
  assert.equal([...host.fdb.get('blxx-4242')!].sort(), ['10.0.0.3', '10.0.0.4'])
  // the host's underlay address changed: the device is rebuilt with the new source
  const moved = new HostNet({ underlayIp: '10.0.0.9', run: host.run })
  const again = (await moved.ensureNetwork(rec, ['10.0.0.3'])).commands.map((c) => c.join(' '))
  assert.equal(again.slice(0, 2), ['ip link del blxx-4242', 'ip link add blxx-4242 type vxlan id 4242 local 10.0.0.9 dstport 4789'])
  await moved.removeNetwork(rec)
  assert.equal(await moved.ourLinks(), [])
})

test('a foreign interface with our name is a Conflict, not silently reused', () => {
  const links = parseLinks(JSON.stringify([{ ifname: bridgeName('x'), flags: ['UP'], linkinfo: { info_kind: 'veth' } }]))
  try { planEnsureNetwork(hostNetwork({ name: 'x', kind: { type: 'bridge' } }, {}), links); assert.unreachable() } catch (e) { assert.is((e as { kind: string }).kind, 'Conflict') }
})

test('parse real iproute2 JSON; peers from multiaddrs', () => {
  const links = parseLinks('[{"ifname":"vx9","flags":["BROADCAST","MULTICAST","UP"],"master":"br0","linkinfo":{"info_kind":"vxlan","info_data":{"id":9,"local":"10.1.1.1","port":4789,"learning":true}}}]')
  assert.equal(links.get('vx9'), { name: 'vx9', kind: 'vxlan', up: true, master: 'br0', vxlan: { vni: 9, local: '10.1.1.1', port: 4789 } })
  assert.equal(parseFloodList('[{"mac":"a2:c3:b1:e9:31:16","flags":[],"master":"br0","state":"permanent"},{"mac":"00:00:00:00:00:00","dst":"10.1.1.2","flags":["self"],"state":"permanent"}]'), ['10.1.1.2'])
  assert.equal(planPeers('vx', ['a'], ['a']), [])
  const node = (id: string, addrs: string[]) => ({ id, addrs } as unknown as NodeRecord)
  assert.equal(underlayPeers([
    node('me', ['/ip4/10.0.0.1/tcp/7000']),
    node('b', ['/ip4/127.0.0.1/tcp/7000', '/ip4/10.0.0.2/tcp/7000/p2p/b']),
    node('c', ['/ip4/172.17.0.1/tcp/1', '/ip4/10.0.0.3/tcp/7000']),
    node('d', ['/ip6/::1/tcp/1'])
  ], 'me', (ip) => ip.startsWith('10.')), ['10.0.0.2', '10.0.0.3'])
})

test.run()
