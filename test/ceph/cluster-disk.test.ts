// A VM's disk and address through the whole system: 3 real blixard-node processes, each in its own
// network namespace on one test switch (10.73.0.0/24: libp2p, the test's RPC and CLI, the
// single-host Ceph on .100, and the underlay of the VXLAN overlay), configured with that Ceph
// ([ceph] conf, given as --ceph-conf/--ceph-keyring). `volume create` makes a real RBD image
// through Raft, `network.create` (what `network create --vxlan` sends) a VXLAN overlay. Guest G
// boots with the image as its data disk (QEMU's rbd driver) and an address on the overlay: it
// counts its boots on the disk (boots=1), its disk writer appends a record every 100 ms, and it
// prints a heartbeat. Guest P, on another node (anti-affinity), pings G's address without end.
// `vm migrate G --to B --live --wait` (the CLI) moves G to the third node, QEMU's TLS stream
// (multifd) going to B's own address on the switch, not loopback. What must show: G's heartbeat
// goes on (no reboot, no boot on B's console); its disk writes go on from B (B's Ceph client, at
// B's address, now holds the image's exclusive lock, the same writer's records keep growing after
// A's QEMU is gone) and the clean hand-over fenced nobody (A's client is not on `ceph osd blocklist
// ls`); P's pings resume within a bound, and P's host now sends G's MAC over the VXLAN to B, not
// to A; G kept its TAP name, MAC and address, B's TAP is on the network's bridge and A's is gone.
// (The cold move that fences the old holder and boots from the same image is ha-disk.test.ts's;
// drain and the other live-move cases are test/vm/migrate.test.ts's.)
// Deleting the VMs leaves the volume (and its data); deleting the volume removes the image.
// Needs root, `ip netns`, Ceph 16 and QEMU. Ports 17740-17742 (metrics 17840-17842).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, runCli, sleep, waitFor, vmSpec, leaseArgs } from '../cluster/harness.ts'
import { NetnsSwitch } from '../cluster/netns-switch.ts'
import { nodeIndex, qemuPidsFor, runtimeDir, show } from '../vm/helpers.ts'
import { parseDiskBoots, parseHeartbeats, parsePongs } from '../../node/qemu/tiny-guest.ts'
import { bridgeName, macFor, tapName, vxlanName } from '../../node/net-host/names.ts'
import { DEFAULT_MULTIFD_CHANNELS } from '../../node/migration/tls.ts'
import { cephVmSuite, switchedNodes } from './ceph-vm.ts'

const HEARTBEAT_MS = 100
/** P's ping loop tries every 200 ms (scripts/build-tiny-guest.sh) */
const PING_TRY_MS = 200
/**
 * Tries of P's loop that may go unanswered across the move: QEMU's downtime limit is 300 ms and
 * the target announces the guest at once (1-2 tries); three TCG guests on a loaded 2-core machine
 * stretch that, but seconds of silence would mean the overlay did not follow the guest.
 */
const MAX_LOST_TRIES = 25
/** bound on one write through the RPC API (a loaded 2-core host commits slowly) */
const WRITE_TIMEOUT_MS = 60_000
const VNI = 4373
const SUBNET = '10.64.0'

const net = new NetnsSwitch(`bd${process.pid % 100000}`, '10.73.0')
const NS = [1, 2, 3].map((i) => `${net.tag}n${i}`)
/** the test's own address on the switch (host .100): its RPC client and CLI, and Ceph */
const ROOT_HOST = 100
process.on('exit', () => { net.teardown() })

// leases long enough that a host starved on a loaded test machine is not fenced mid-test (10 s
// fenced P's host at load ~38, 15 s both guests' hosts at load ~47); nothing here waits for a fence
const LEASE = { leaseMs: 30_000, renewEveryMs: 2_000, fenceMarginMs: 1_000, downMarginMs: 1_000 }
const c = new TestCluster({
  nodes: 3,
  basePort: 17740,
  extraArgs: leaseArgs(LEASE)
}, 'disk')
const VOL = `data${process.pid % 10000}`
const NET = `ovl${process.pid % 10000}`
let pingerId = ''
const figures: Record<string, number> = {}
const s = cephVmSuite(test, c, {
  vm: 'diskvm',
  figures,
  net: switchedNodes(c, net, NS, ROOT_HOST),
  cleanup: () => { if (pingerId !== '') for (const pid of qemuPidsFor(pingerId)) process.kill(pid, 'SIGKILL') }
})
const serial = s.serial
const vmConsole = (node: number, vmId: string): string => { try { return readFileSync(join(runtimeDir(c, node, vmId), 'serial.log'), 'utf8') } catch { return '' } }
/** `bridge fdb` of the overlay's VXLAN device in node i's namespace: G's MAC, with the underlay address it is sent to */
const fdbEntry = (i: number, mac: string): string => execFileSync('bridge', ['-n', NS[i], 'fdb', 'show', 'dev', vxlanName(VNI)], { encoding: 'utf8' })
  .split('\n').find((l) => l.startsWith(mac) && l.includes(' dst ')) ?? ''
const linkIn = (i: number, name: string): string | null => { try { return execFileSync('ip', ['-n', NS[i], '-o', 'link', 'show', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }) } catch { return null } }
const dst = (i: number): RegExp => new RegExp(`dst ${net.addr(i + 1).replace(/\./g, '\\.')} `)

let vmId = ''
let gIp = ''
let hostA = -1
let hostP = -1
let firstLocker = ''
let firstAddress = ''

s.guard('an RBD volume and a VXLAN network: G boots with the image as its disk and an address on the overlay, P on another node pings it', async () => {
  const cl = await c.client(1)
  const vol = await cl.call('volume.create', { name: VOL, sizeGiB: 1 }, { timeoutMs: WRITE_TIMEOUT_MS })
  assert.is(vol.name, VOL)
  // through the API, as the CLI's `network create --vxlan` sends it (one CLI start less: seconds under load)
  const made = await cl.call('network.create', { name: NET, kind: { type: 'vxlan', vni: VNI }, subnet: `${SUBNET}.0/24`, gateway: `${SUBNET}.1` }, { timeoutMs: WRITE_TIMEOUT_MS })
  assert.equal(made.kind, { type: 'vxlan', vni: VNI })
  // the volume reconciler (on a node with Ceph) makes the image, then reports it ready
  await waitFor('volume ready', 60_000, async () => (await cl.call('volume.show', { volume: VOL })).phase === 'ready', 250)
  const info = await s.rbd().info(vol.pool, VOL)
  assert.is(info.sizeBytes, 2 ** 30, 'the image exists in Ceph with the size asked for')
  const t0 = Date.now()
  const spread = { antiAffinityGroup: 'overlay-move', networks: [NET], memoryMiB: 96, restartPolicy: 'always' as const }
  const created = await cl.call('vm.create', { spec: { ...vmSpec('diskvm'), ...spread, volumes: [VOL], kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } }, { timeoutMs: WRITE_TIMEOUT_MS })
  vmId = created.id
  s.setVmId(vmId)
  // G's address is allocated through Raft as its host binds it, before it boots: P is made then
  gIp = await waitFor('an address for G', 120_000, async () => Object.entries((await cl.call('network.show', { network: NET })).allocations).find(([, vm]) => vm === vmId)?.[0], 250)
  const pinger = await cl.call('vm.create', { spec: { ...vmSpec('pinger'), ...spread, kernelParams: [`blix.pingloop=${gIp}`] } }, { timeoutMs: WRITE_TIMEOUT_MS })
  pingerId = pinger.id
  const vm = await s.runningOn(0, null, 180_000)
  hostA = nodeIndex(c, vm.assignedNode)
  console.log(`  create → running with an RBD disk and an overlay address (${gIp}): ${Date.now() - t0} ms on node ${hostA}`)
  assert.is(vm.status.ip, gIp, 'the guest came up with the address Raft gave it')
  const boots = await waitFor('boots= on the console', 60_000, () => parseDiskBoots(serial(hostA)), 250)
  assert.is(boots, 1, 'a blank image: the guest made a filesystem and counted boot 1')
  assert.is((await cl.call('volume.show', { volume: VOL })).attachedTo, vmId)
  const holder = await waitFor('the exclusive lock held', 60_000, async () => await s.rbd().lockHolder(vol.pool, VOL), 250)
  firstLocker = holder.locker
  firstAddress = holder.address
  assert.ok(firstAddress.startsWith(`${net.addr(hostA + 1)}:`), `the lock holder is A's client, from A's namespace: ${firstAddress}`)
  const p = await waitFor('P running', 180_000, async () => { const v = await show(c, 0, 'pinger'); return v.status.phase === 'running' ? v : null }, 250)
  hostP = nodeIndex(c, p.assignedNode)
  assert.is.not(hostP, hostA, 'anti-affinity: P on another node')
  await waitFor('P\'s pings answered by G on A', 120_000, () => parsePongs(vmConsole(hostP, pingerId), gIp).length >= 3, 250)
  // the overlay carries it: P's host learned G's MAC behind A's underlay address
  assert.match(fdbEntry(hostP, macFor(vmId, 0)), dst(hostA), `P's host sends G's MAC to A: ${fdbEntry(hostP, macFor(vmId, 0))}`)
})

s.guard('vm migrate --to B --wait moves G live: its heartbeat and disk writes go on from B, B takes the disk\'s lock, P\'s pings resume', async () => {
  const B = [0, 1, 2].find((i) => i !== hostA && i !== hostP)!
  const A = hostA
  const mac = macFor(vmId, 0)
  // the source's console, read as it grows: its agent removes it soon after the move
  let onSource: number[] = []
  const reader = setInterval(() => { const b = parseHeartbeats(serial(A)); if (b.length >= onSource.length) onSource = b }, 50)
  const t0 = Date.now()
  const r = await runCli(['vm', 'migrate', 'diskvm', '--to', c.nodes[B].name, '--live', '--wait', '--json'], c.cliEnv(hostP), 120_000).finally(() => { clearInterval(reader) })
  figures.cliMigrateMs = Date.now() - t0
  assert.is(r.code, 0, `vm migrate: ${r.stderr}\n${r.stdout}`)
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { phase: string, nodeId?: string, figures: { downtimeMs: number | null, totalTimeMs: number | null } | null }
  assert.is(last.phase, 'done', r.stdout)
  assert.is(last.nodeId, c.nodes[B].peerId, 'on the node asked for')
  figures.downtimeMs = last.figures?.downtimeMs ?? -1
  figures.totalTimeMs = last.figures?.totalTimeMs ?? -1
  const triesAtDone = Math.max(0, ...parsePongs(vmConsole(hostP, pingerId), gIp))

  // the guest was not rebooted: its counter goes on on B from where it was on A, and B saw no boot
  const onB = await waitFor('heartbeats on B', 30_000, () => { const b = parseHeartbeats(serial(B)); return b.length >= 3 ? b : null }, 100)
  const lastOnA = Math.max(...onSource)
  assert.ok(onB[0] > 1 && onB[0] >= lastOnA && onB[0] <= lastOnA + 2, `the counter went on: last ${lastOnA} on A, first ${onB[0]} on B`)
  assert.is(parseDiskBoots(serial(B)), null, 'no boot on B: the guest moved live')
  await waitFor('one QEMU for G, on B', 30_000, () => { const p = qemuPidsFor(vmId); return p.length === 1 && readFileSync(`/proc/${p[0]}/cmdline`, 'utf8').includes(c.nodes[B].dir + '/') }, 250)

  // the disk: the guest's writes took the image's exclusive lock to B's client (at B's address)
  const holder = await waitFor('the exclusive lock with a new client', 60_000, async () => {
    const h = await s.rbd().lockHolder('rbd', VOL)
    return h != null && h.locker !== firstLocker ? h : null
  }, 250)
  assert.ok(holder.address.startsWith(`${net.addr(B + 1)}:`), `B's client holds the lock: ${holder.address}`)
  // a clean hand-over fences nobody: the source's QEMU quit after the switchover and its librbd
  // released the lock; the source's client is not on the OSDs' blocklist
  const blocklist = await s.rbd().blocklistLs()
  assert.not.ok(blocklist.some((e) => e.addr === firstAddress), `the source's client ${firstAddress} was blocklisted: ${JSON.stringify(blocklist)}`)
  // with A's QEMU gone, records that still appear are B's: one writer (one boot), still writing
  const d1 = await s.judgeDisk(VOL)
  await sleep(1_000)
  const d2 = await s.judgeDisk(VOL)
  for (const d of [d1, d2]) assert.equal(d.problems, [], 'the counter never goes backwards, no two writers interleave')
  assert.is(d2.writers.length, 1, `one writer, no second boot: ${JSON.stringify(d2.writers)}`)
  assert.equal([d2.writers[0].host, d2.writers[0].boot], [d1.writers[0].host, d1.writers[0].boot], 'the same writer')
  assert.ok(d2.writers[0].last > d1.writers[0].last, `it writes on from B: ${d1.writers[0].last} → ${d2.writers[0].last}`)

  // the network: P's pings resume, the overlay sends G's MAC to B, G kept its TAP name and MAC
  await waitFor('P\'s pings answered again, by G on B', 60_000, () => parsePongs(vmConsole(hostP, pingerId), gIp).filter((n) => n > triesAtDone).length >= 3, 250)
  const tries = parsePongs(vmConsole(hostP, pingerId), gIp)
  const gaps = tries.slice(1).map((n, i) => ({ after: tries[i], lost: n - tries[i] - 1 }))
  const worst = gaps.reduce((w, g) => g.lost > w.lost ? g : w, { after: 0, lost: 0 })
  figures.pingTriesLost = worst.lost
  assert.ok(worst.lost <= MAX_LOST_TRIES, `P's pings stopped for ${worst.lost} tries (~${worst.lost * PING_TRY_MS} ms) after try ${worst.after}; at most ${MAX_LOST_TRIES}`)
  assert.match(fdbEntry(hostP, mac), dst(B), `P's host sends G's MAC to B now: ${fdbEntry(hostP, mac)}`)
  assert.match(linkIn(B, tapName(vmId, 0)) ?? '', new RegExp(`master ${bridgeName(NET)}`), 'G\'s TAP (the same name) on the network\'s bridge on B')
  await waitFor('G\'s TAP gone from A', 30_000, () => linkIn(A, tapName(vmId, 0)) == null, 250)
  assert.is((await show(c, 0, 'diskvm')).status.ip, gIp, 'the same address')
  // the memory went to B's own address on the switch (TLS, the default multifd channels), not to loopback
  const sent = c.log(A).split('\n').find((l) => l.includes('"msg":"migrating live (TLS)"') && l.includes(vmId)) ?? '{}'
  const { to, multifd } = JSON.parse(sent) as { to?: string, multifd?: number }
  assert.equal([to?.replace(/:\d+$/, ''), multifd], [net.addr(B + 1), DEFAULT_MULTIFD_CHANNELS], sent)
  assert.is((await show(c, 0, 'diskvm')).migration?.phase, 'done', 'the move was live and finished')
  console.log(`  migrated node ${A} → node ${B}: CLI ${figures.cliMigrateMs} ms, QEMU downtime ${figures.downtimeMs} ms, total ${figures.totalTimeMs} ms; heartbeat ${lastOnA} → ${onB[0]}; lock ${firstLocker} → ${holder.locker} (${holder.address}); disk writer ${d1.writers[0].last} → ${d2.writers[0].last}; P's pings: ${worst.lost} tries unanswered at most (~${worst.lost * PING_TRY_MS} ms)`)
})

s.guard('deleting the VMs keeps the volume and its image; deleting the volume removes the image', async () => {
  const cl = await c.client(2)
  await cl.call('vm.delete', { vm: vmId }, { timeoutMs: WRITE_TIMEOUT_MS })
  await cl.call('vm.delete', { vm: pingerId }, { timeoutMs: WRITE_TIMEOUT_MS })
  await waitFor('no qemu for the VMs', 60_000, () => qemuPidsFor(vmId).length === 0 && qemuPidsFor(pingerId).length === 0, 250)
  await waitFor('volume detached', 30_000, async () => (await cl.call('volume.show', { volume: VOL })).attachedTo === null, 250)
  assert.ok((await s.rbd().info('rbd', VOL)).sizeBytes > 0, 'the image outlives the VM')
  await cl.call('volume.delete', { volume: VOL }, { timeoutMs: WRITE_TIMEOUT_MS })
  await waitFor('volume record gone', 60_000, async () => (await cl.call('volume.list', {})).every((v) => v.name !== VOL), 250)
  const gone = await s.rbd().info('rbd', VOL).then(() => false, () => true)
  assert.ok(gone, 'the image is gone from Ceph')
})

test.run()
