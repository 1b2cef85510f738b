// Host networking for real, in network namespaces standing in for hosts:
// - two "hosts" (namespaces joined by a veth underlay) with a VXLAN network between
//   them, one guest each (qemu runs inside its host's namespace): the guests ping
//   each other over the overlay;
// - VLAN isolation on one shared bridge with guest-side 802.1Q tagging (this kernel
//   has no host-side VLAN devices; their exact commands are tested in plan.test.ts);
// - after the VMs and the networks are deleted, no interface of ours is left.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { buildTinyGuest, parsePings, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { HostNet } from '../../node/net-host/host-net.ts'
import { underlayPeers } from '../../node/net-host/peers.ts'
import type { NodeRecord } from '../../protocols/model.ts'

const BOOT_WAIT_MS = 150_000
const PING_WAIT_MS = 120_000
const tag = process.pid % 100000
const NS_A = `blxhA${tag}`
const NS_B = `blxhB${tag}`
const root = mkdtempSync(join(tmpdir(), 'blx-nethost-'))
const drivers: QemuDriver[] = []
let guest: TinyGuest
const t0 = Date.now()

const ip = (...a: string[]): string => execFileSync('ip', a, { stdio: 'pipe' }).toString()

function driver (name: string, ns: string, net: HostNet): QemuDriver {
  const d = new QemuDriver({ dataDir: join(root, name), accel: 'auto', spawnPrefix: ['ip', 'netns', 'exec', ns], network: net.driverHook(), stopTimeoutMs: 10_000 })
  drivers.push(d)
  return d
}

async function until<T> (what: string, ms: number, check: () => T | null): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = check()
    if (v != null) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

function consoleOf (d: QemuDriver, vmId: string): string {
  try { return readFileSync(join(d.dataDir, 'vms', vmId, 'serial.log'), 'utf8') } catch { return '' }
}

/** The guest's verdict on pinging target: replies received (0 = fail), once it printed one. */
async function pingResult (d: QemuDriver, vmId: string, target: string): Promise<number> {
  return await until(`${vmId} ping ${target}`, PING_WAIT_MS, () => parsePings(consoleOf(d, vmId)).get(target) ?? null)
}

function node (id: string, addr: string): NodeRecord {
  return { id, addrs: [`/ip4/127.0.0.1/tcp/7000`, `/ip4/${addr}/tcp/7000/p2p/${id}`] } as unknown as NodeRecord
}

test.before(async () => {
  guest = await buildTinyGuest()
  for (const [ns, addr, dev] of [[NS_A, '10.79.1.1/24', 'vA'], [NS_B, '10.79.1.2/24', 'vB']] as const) {
    ip('netns', 'add', ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    void addr; void dev
  }
  ip('link', 'add', `u${tag}a`, 'type', 'veth', 'peer', 'name', `u${tag}b`)
  ip('link', 'set', `u${tag}a`, 'netns', NS_A)
  ip('link', 'set', `u${tag}b`, 'netns', NS_B)
  ip('-n', NS_A, 'addr', 'add', '10.79.1.1/24', 'dev', `u${tag}a`)
  ip('-n', NS_B, 'addr', 'add', '10.79.1.2/24', 'dev', `u${tag}b`)
  ip('-n', NS_A, 'link', 'set', `u${tag}a`, 'up')
  ip('-n', NS_B, 'link', 'set', `u${tag}b`, 'up')
})

test('VXLAN overlay between two hosts: the guests ping each other; everything removed after', async () => {
  const nodes = [node('node-a', '10.79.1.1'), node('node-b', '10.79.1.2')]
  const rec = { name: 'overlay', kind: { type: 'vxlan' as const, vni: 4242 } }
  const hosts = [
    { ns: NS_A, self: 'node-a', net: new HostNet({ netns: NS_A, underlayIp: '10.79.1.1' }), vm: 'vm-ovl-a', ip: '10.60.0.2', peer: '10.60.0.3' },
    { ns: NS_B, self: 'node-b', net: new HostNet({ netns: NS_B, underlayIp: '10.79.1.2' }), vm: 'vm-ovl-b', ip: '10.60.0.3', peer: '10.60.0.2' }
  ]
  const ts = Date.now()
  for (const h of hosts) {
    const { net, commands } = await h.net.ensureNetwork(rec, underlayPeers(nodes, h.self))
    assert.ok(net.kind === 'vxlan' && net.peers.length === 1, JSON.stringify(net))
    assert.ok(commands.some((c) => c.join(' ') === `bridge fdb append 00:00:00:00:00:00 dev blxx-4242 dst ${net.peers[0]}`))
    assert.equal((await h.net.ensureNetwork(rec, underlayPeers(nodes, h.self))).commands, [], 'second ensure changes nothing')
  }
  const vxA = ip('-n', NS_A, '-d', 'link', 'show', 'blxx-4242')
  assert.match(vxA, /vxlan id 4242 local 10\.79\.1\.1 .*dstport 4789/)
  const started = hosts.map((h) => ({ ...h, d: driver(h.vm, h.ns, h.net) }))
  const up = started.map((h) => h.d.waitForEvent(h.vm, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS))
  for (const h of started) {
    const nic = await h.net.ensureTap(h.vm, 0, rec)
    assert.match(ip('-n', h.ns, 'link', 'show', nic.tap), new RegExp(`master ${nic.bridge}`))
    await h.d.start({ vmId: h.vm, generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', nics: [{ tap: nic.tap, mac: nic.mac }], boot: tinyGuestBoot(guest, { hostname: h.vm, ip: `${h.ip}/24`, ping: [h.peer] }) })
  }
  for (const e of await Promise.all(up)) assert.is(e.type, 'running', JSON.stringify(e))
  const [ab, ba] = [await pingResult(started[0].d, 'vm-ovl-a', '10.60.0.3'), await pingResult(started[1].d, 'vm-ovl-b', '10.60.0.2')]
  console.log(`  overlay: guest A → B ${ab}/3 replies, B → A ${ba}/3 replies (${((Date.now() - ts) / 1000).toFixed(1)} s from empty hosts)`)
  assert.ok(ab >= 2 && ba >= 2, `A→B ${ab}, B→A ${ba}`)
  // the other guest's MAC was learned behind the VXLAN device: traffic went over the overlay
  const fdbA = execFileSync('bridge', ['-n', NS_A, 'fdb', 'show', 'dev', 'blxx-4242']).toString()
  assert.match(fdbA, /dst 10\.79\.1\.2/)
  // delete: VMs (driver cleanup removes the TAP through the hook), then the network
  for (const h of started) await h.d.cleanup(h.vm)
  for (const h of started) {
    assert.equal((await h.net.ourLinks()).filter((n) => n.startsWith('blxt')), [], 'TAPs gone')
    await h.net.removeNetwork(rec)
    await h.net.removeNetwork(rec) // idempotent
    assert.equal(await h.net.ourLinks(), [], `nothing of ours left in ${h.ns}`)
    assert.equal(ip('-n', h.ns, '-br', 'link').trim().split('\n').map((l) => l.split(/\s+/)[0].split('@')[0]).sort(), [h.ns === NS_A ? `u${tag}a` : `u${tag}b`, 'lo'].sort())
  }
})

test('VLAN isolation on one bridge with guest-side tagging: same VLAN pings, other VLAN does not', async () => {
  const net = new HostNet({ netns: NS_A })
  const rec = { name: 'shared', kind: { type: 'bridge' as const } }
  await net.ensureNetwork(rec)
  const d = driver('vlan', NS_A, net)
  const up = ['vm-vl-a', 'vm-vl-b', 'vm-vl-c'].map((vm) => d.waitForEvent(vm, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS))
  const guests = [
    { vm: 'vm-vl-a', vlan: 100, ip: '10.61.0.2', ping: ['10.61.0.3'] },
    { vm: 'vm-vl-b', vlan: 100, ip: '10.61.0.3', ping: [] as string[] },
    { vm: 'vm-vl-c', vlan: 200, ip: '10.61.0.4', ping: ['10.61.0.2'] }
  ]
  for (const g of guests) {
    const nic = await net.ensureTap(g.vm, 0, rec)
    await d.start({ vmId: g.vm, generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', nics: [{ tap: nic.tap, mac: nic.mac }], boot: tinyGuestBoot(guest, { hostname: g.vm, ip: `${g.ip}/24`, vlan: g.vlan, ping: g.ping }) })
  }
  for (const e of await Promise.all(up)) assert.is(e.type, 'running', JSON.stringify(e))
  assert.match(consoleOf(d, 'vm-vl-a'), /BLIXARD-GUEST-UP vm-vl-a 10\.61\.0\.2/)
  const same = await pingResult(d, 'vm-vl-a', '10.61.0.3')
  const cross = await pingResult(d, 'vm-vl-c', '10.61.0.2')
  console.log(`  vlan: 100 → 100 ${same}/3 replies; 200 → 100 ${cross} replies (fail expected)`)
  assert.ok(same >= 2, `same VLAN: ${same}`)
  assert.is(cross, 0, 'a guest on VLAN 200 must not reach VLAN 100')
  for (const g of guests) await d.cleanup(g.vm)
  await net.removeNetwork(rec)
  assert.equal(await net.ourLinks(), [])
})

function leaveNothing (): void {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (cmd.startsWith('qemu-system') && cmd.includes(root)) process.kill(Number(name), 'SIGKILL')
    } catch {}
  }
  for (const ns of [NS_A, NS_B]) { try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }) } catch {} }
  rmSync(root, { recursive: true, force: true })
}
process.on('exit', leaveNothing)

test.after(async () => {
  for (const d of drivers) await d.close().catch(() => {})
  leaveNothing()
  console.log(`  net-host namespace tests took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
})

test.run()
