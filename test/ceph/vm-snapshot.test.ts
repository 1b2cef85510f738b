// VM snapshots of a guest with an RBD disk, through 3 real blixard-node processes configured with the
// single-host Ceph: the guest prints a heartbeat counter and has written a marker to its disk; a
// snapshot pauses it, saves memory + devices and takes an RBD snapshot of the disk, and puts the
// state into an RBD image in the cluster's pool (no file left on the host), replacing what a save
// cut short by a restart would have left. The guest then writes
// another marker and counts on; the VM moves live to another host, and `vm restore` there rolls the
// disk back to its RBD snapshot and streams the state image into a new QEMU: the counter and the
// disk are back at the snapshot's point. Before the move, `vm create snapclone --from-snapshot
// snapdisk/s1` (the CLI): the clone H, kept off G's host by G's anti-affinity group (vm explain
// shows the snapshot score per node), its disk an RBD clone of the disk snapshot, resumes the saved
// state (its console counts on from the snapshot's value, no boot) and takes its own name, MAC and
// address; its guest reads G's first marker off its disk; G runs on untouched with its second. The
// attacker's cases: a non-admin's clone, a missing VM or snapshot, bad names. The snapshot cannot be
// deleted while H exists; H's delete removes its clone image; the snapshot's delete at the end
// leaves no state image, no RBD snapshot, no file, and G's one QEMU. The nodes run in network namespaces on a test switch (10.76.0.0/24: libp2p, the test's RPC
// and CLI, the Ceph on .100), the VMs on a bridge network (10.66.0.0/24) in each node's namespace.
// Needs root and `ip netns`. Ports 27600-27602 (metrics 27700-27702).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, runCli, waitFor, vmSpec } from '../cluster/harness.ts'
import { NetnsSwitch } from '../cluster/netns-switch.ts'
import { nodeIndex, qemuPidsFor, runtimeDir } from '../vm/helpers.ts'
import { parseHeartbeats, parseIdentities, parseReadyMarker } from '../../node/qemu/tiny-guest.ts'
import { bridgeName, macFor } from '../../node/net-host/names.ts'
import { cloneVolumeName, diskSnapshotName, stateImageName } from '../../protocols/snapshots.ts'
import { cephVmSuite, switchedNodes } from './ceph-vm.ts'

// A 60 s lease (the default is 9 s; the nodes inherit it): this file is about snapshots, and on a
// starved host the fence watchdog of a daemon late to renew killed the guest mid-test
process.env.BLIXARD_LEASE_MS = '60000'

const HEARTBEAT_MS = 100
/** A sector the guest leaves alone: past its 64 MiB filesystem, before the disk writer's log. */
const MARK_SECTOR = 140_000
const c = new TestCluster({ nodes: 3, basePort: 27600 }, 'ceph-snap')
const VOL = `snapvol${process.pid % 10000}`
const NET = `snapnet${process.pid % 10000}`
const SUBNET = '10.66.0'
const net = new NetnsSwitch(`bn${process.pid % 100000}`, '10.76.0')
const NS = [1, 2, 3].map((i) => `${net.tag}n${i}`)
/** the test's own address on the switch: its RPC client and CLI, and Ceph */
const ROOT_HOST = 100
process.on('exit', () => { net.teardown() })
const figures: Record<string, number> = {}
let cloneId = ''
const s = cephVmSuite(test, c, {
  vm: 'snapdisk',
  figures,
  net: switchedNodes(c, net, NS, ROOT_HOST),
  cleanup: () => { if (cloneId !== '') for (const pid of qemuPidsFor(cloneId)) process.kill(pid, 'SIGKILL') }
})
const vmConsole = (node: number, vmId: string): string => { try { return readFileSync(join(runtimeDir(c, node, vmId), 'serial.log'), 'utf8') } catch { return '' } }
/** three pings from node i's namespace, through the network's bridge there (the test gives it an address) */
const ping = (i: number, addr: string): string => {
  try { return execFileSync('ip', ['netns', 'exec', NS[i], 'busybox', 'ping', '-c', '3', '-W', '2', addr], { encoding: 'utf8', stdio: 'pipe', timeout: 30_000 }) } catch (e) { return String((e as { stdout?: string }).stdout ?? e) }
}
const refusal = async (p: Promise<unknown>): Promise<string> => { try { await p; return 'ok' } catch (e) { return `${(e as { kind?: string }).kind ?? '?'}: ${(e as Error).message}` } }

s.guard('snapshot with an RBD disk → state in the pool; write more; restore on another host → counter and disk back; delete leaves nothing', async () => {
  const cl = await c.client(0)
  await cl.call('volume.create', { name: VOL, sizeGiB: 1 })
  await waitFor('volume ready', 60_000, async () => (await cl.call('volume.show', { volume: VOL })).phase === 'ready', 250)
  await cl.call('network.create', { name: NET, kind: { type: 'bridge' }, subnet: `${SUBNET}.0/24`, gateway: `${SUBNET}.1` })
  const vm = await cl.call('vm.create', { spec: { ...vmSpec('snapdisk'), memoryMiB: 96, volumes: [VOL], networks: [NET], antiAffinityGroup: 'snap', kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  s.setVmId(vm.id)
  let host = nodeIndex(c, (await s.runningOn(0, null, 180_000)).assignedNode)
  const took = host
  const beats = (): number[] => parseHeartbeats(s.serial(host))
  const top = (): number => Math.max(0, ...beats())
  await waitFor('heartbeats', 60_000, () => beats().length >= 3, 100)

  // a guest runs a shell line typed into its console (admin input, on its own host)
  const run = async (vmName: string, node: number, text: () => string, line: string, what: string): Promise<void> => {
    const done = (text().match(/BLIXARD-CMD-DONE rc=0/g) ?? []).length
    await (await c.client(node)).call('vm.consoleInput', { vm: vmName, data: Buffer.from(`${line}\n`).toString('base64') })
    await waitFor(what, 30_000, () => (text().match(/BLIXARD-CMD-DONE rc=0/g) ?? []).length > done, 100)
  }
  const mark = async (text: string): Promise<void> => {
    await run('snapdisk', host, () => s.serial(host), `echo ${text} | dd of=/dev/vda bs=512 seek=${MARK_SECTOR} count=1 conv=sync,notrunc,fsync 2>/dev/null`, `the guest to write ${text}`)
  }
  const onDisk = async (): Promise<string> => (await s.readDisk(VOL, MARK_SECTOR * 512, 512)).toString('latin1').replace(/\0+$/, '').trim()
  await mark('BLXMARK-BEFORE')
  assert.is(await onDisk(), 'BLXMARK-BEFORE')

  // what a save cut short by a daemon restart leaves (a disk snapshot, a small state image) is replaced
  const image = stateImageName(vm.id, 's1')
  await s.rbd().snapshotCreate('rbd', VOL, diskSnapshotName('s1'))
  await s.rbd().createImage('rbd', image, 1 / 1024)
  const before = top()
  let t0 = Date.now()
  await cl.call('vm.snapshot', { vm: 'snapdisk', name: 's1' })
  const rec = await waitFor('s1 ready', 120_000, async () => (await cl.call('vm.snapshotList', { vm: 'snapdisk' })).find((x) => x.phase !== 'taking') ?? null, 100)
  figures.snapshotMs = Date.now() - t0
  const after = top()
  assert.is(rec.phase, 'ready', rec.reason)
  figures.pausedMs = rec.pausedMs ?? -1
  figures.stateMiB = Math.round((rec.sizeBytes ?? 0) / 1048576)
  assert.equal(rec.location, { kind: 'rbd', pool: 'rbd', image }, 'the state is an RBD image in the cluster\'s pool')
  assert.equal(rec.disks, [{ volume: VOL, pool: 'rbd', image: VOL, snapshot: diskSnapshotName('s1') }])
  const held = (await s.rbd().info('rbd', image)).sizeBytes
  assert.ok(rec.sizeBytes != null && held >= rec.sizeBytes, `the state image holds the whole state (${held} bytes for ${rec.sizeBytes}): the 1 MiB leftover was replaced`)
  assert.equal((await s.rbd().snapshotList('rbd', VOL)).map((x) => x.name), [diskSnapshotName('s1')], 'the disk has its RBD snapshot')
  assert.not.ok(existsSync(join(c.nodes[host].dir, 'snapshots', vm.id, 's1.state')), 'no state file left on the host')

  // write more: another marker on the disk, the counter goes on
  await mark('BLXMARK-AFTER')
  assert.is(await onDisk(), 'BLXMARK-AFTER')
  const later = await waitFor('the counter to go on', 30_000, () => { const x = top(); return x >= after + 20 ? x : null }, 100)

  // ---- a clone: H from snapshot s1, on another host than G ----
  const t2 = Date.now()
  const gPid = qemuPidsFor(vm.id)[0]
  assert.is(qemuPidsFor(vm.id).length, 1)
  const gIp = (await cl.call('vm.show', { vm: 'snapdisk' })).status.ip
  // the attacker's cases: a non-admin (a key holder is not an admin), a missing VM or snapshot, bad names
  const stranger = await runCli(['vm', 'create', 'intruder', '--from-snapshot', 'snapdisk/s1'], { ...c.cliEnv(0), BLIXARD_CONFIG_DIR: join(c.dir, 'not-admin') }, 180_000)
  assert.is.not(stranger.code, 0)
  figures.strangerCliMs = stranger.ms
  assert.match(stranger.stderr, /is not an admin; 'cluster\.prepare' changes the cluster/, stranger.stderr)
  assert.match(await refusal(cl.call('vm.clone', { name: 'h2', vm: 'nosuch', snapshot: 's1' })), /^NotFound: --from-snapshot nosuch\/s1: no VM named or with id 'nosuch'/)
  assert.match(await refusal(cl.call('vm.clone', { name: 'h2', vm: 'snapdisk', snapshot: 's9' })), /^NotFound: --from-snapshot snapdisk\/s9: VM snapdisk has no snapshot named s9/)
  assert.match(await refusal(cl.call('vm.clone', { name: 'Bad_Name', vm: 'snapdisk', snapshot: 's1' })), /params\.name/)
  assert.match(await refusal(cl.call('vm.clone', { name: 'h'.repeat(64), vm: 'snapdisk', snapshot: 's1' })), /params\.name/)
  assert.match(await refusal(cl.call('vm.clone', { name: 'h2', vm: 'snapdisk', snapshot: '../s1' })), /params\.snapshot/)
  assert.match(await refusal(cl.call('vm.clone', { name: 'h2', vm: 'x'.repeat(10_000), snapshot: 's1' })), /params\.vm/)
  assert.ok((await cl.call('vm.list', {})).every((v) => v.spec.name === 'snapdisk'), 'nothing was created')

  // the clone, through the CLI, created stopped so that `vm explain` shows its placement before its start
  const made = await runCli(['vm', 'create', 'snapclone', '--from-snapshot', 'snapdisk/s1', '--no-start', '--json'], c.cliEnv(0), 180_000)
  assert.is(made.code, 0, `${made.stderr} ${made.stdout}`)
  figures.cloneCliMs = made.ms
  const h = JSON.parse(made.stdout) as { id: string, spec: { volumes: string[] }, clonedFrom: { cachedOn: string[] } }
  cloneId = h.id
  const hVol = cloneVolumeName('snapclone', 0)
  assert.equal(h.spec.volumes, [hVol])
  assert.equal(h.clonedFrom.cachedOn, [c.nodes[took].peerId], 'on hand where it was taken')
  await waitFor('the clone\'s disk made (an RBD clone of the disk snapshot)', 60_000, async () => (await cl.call('volume.show', { volume: hVol })).phase === 'ready', 250)
  const why = await cl.call('vm.explain', { vm: 'snapclone' })
  const byNode = new Map((why.decision.nodes ?? []).map((v) => [v.nodeId, v]))
  // G's host holds the state but G's anti-affinity group keeps H off it: the others score 0
  assert.is(byNode.get(c.nodes[took].peerId)?.filter, 'anti-affinity', `not beside G: ${JSON.stringify(why.decision.nodes)}`)
  for (const i of [0, 1, 2].filter((i) => i !== took)) assert.is(byNode.get(c.nodes[i].peerId)?.scores?.snapshot, 0)
  assert.ok(why.decision.nodeId != null && why.decision.nodeId !== c.nodes[took].peerId)
  assert.match(await refusal(cl.call('vm.snapshotDelete', { vm: 'snapdisk', name: 's1' })), /^Conflict: snapshot s1 of VM snapdisk has clones: VM snapclone; delete them first/)
  const t3 = Date.now()
  await cl.call('vm.start', { vm: 'snapclone' })
  const hRec = await waitFor('the clone running', 120_000, async () => {
    const v = await cl.call('vm.show', { vm: 'snapclone' })
    if (v.status.phase === 'failed') throw new Error(`the clone failed: ${v.status.reason}`)
    return v.status.phase === 'running' ? v : null
  }, 100)
  figures.cloneStartMs = Date.now() - t3
  const hn = nodeIndex(c, hRec.assignedNode)
  assert.is.not(hn, took, 'on another host than G')
  const hConsole = (): string => vmConsole(hn, cloneId)
  const ident = await waitFor('the clone\'s identity', 30_000, () => parseIdentities(hConsole())[0] ?? null, 100)
  figures.cloneIdentityMs = Date.now() - t3
  assert.ok(gIp != null && hRec.status.ip != null && hRec.status.ip !== gIp, `its own address (${String(hRec.status.ip)}, G's ${String(gIp)})`)
  assert.equal(ident, { hostname: 'snapclone', ip: hRec.status.ip, mac: macFor(cloneId, 0) }, 'its own name, address and MAC')
  assert.is(parseReadyMarker(hConsole()), null, 'no boot: it resumed')
  const hBeats = await waitFor('the clone\'s heartbeats', 30_000, () => { const b = parseHeartbeats(hConsole()); return b.length >= 2 ? b : null }, 100)
  assert.ok(hBeats[0] >= before && hBeats[0] <= after + 2, `its counter continues the snapshot's (${hBeats[0]}, between ${before} and ${after})`)
  // its disk is the snapshot's, read by the guest through its RBD clone
  await run('snapclone', hn, hConsole, `echo DISK:$(dd if=/dev/vda bs=512 skip=${MARK_SECTOR} count=1 2>/dev/null | tr -d '\\000')`, 'the clone to read its disk')
  assert.match(hConsole(), /DISK:BLXMARK-BEFORE\r?\n/, 'the clone\'s disk holds G\'s data as of the snapshot')
  // both answer at their own address (each host's bridge gets a test address to ping from)
  for (const i of [hn, host]) execFileSync('ip', ['-n', NS[i], 'addr', 'add', `${SUBNET}.254/24`, 'dev', bridgeName(NET)])
  assert.match(ping(hn, hRec.status.ip!), /3 packets received/, 'the clone answers at its address')
  assert.match(ping(host, gIp!), /3 packets received/, 'G answers at its address')
  // G untouched: the same QEMU, counting on, its disk as it wrote it, no identity told
  assert.equal(qemuPidsFor(vm.id), [gPid])
  assert.is(parseIdentities(s.serial(host)).length, 0)
  assert.is(await onDisk(), 'BLXMARK-AFTER', 'G\'s disk as G wrote it after the snapshot')
  const gNow = top()
  await waitFor('G counting on', 30_000, () => top() > gNow, 100)

  // H's delete removes its disk; then the snapshot goes
  await cl.call('vm.delete', { vm: 'snapclone' })
  await waitFor('the clone\'s QEMU gone', 60_000, () => qemuPidsFor(cloneId).length === 0, 200)
  await waitFor('the clone\'s volume gone', 120_000, async () => !(await cl.call('volume.list', {})).some((v) => v.name === hVol), 250)
  assert.not.ok(await s.rbd().exists('rbd', hVol), 'no clone image left')
  figures.cloneS = Math.round((Date.now() - t2) / 1000)

  // the VM moves live to another host: the state image restores there
  const to = (host + 1) % 3
  await cl.call('vm.migrate', { vm: 'snapdisk', to: c.nodes[to].peerId })
  await waitFor('the VM running on the other host', 120_000, async () => { const v = await cl.call('vm.show', { vm: 'snapdisk' }); return v.status.phase === 'running' && v.assignedNode === c.nodes[to].peerId && (v.migration == null || v.migration.phase === 'done') }, 250)
  host = to
  const oldPids = qemuPidsFor(vm.id)
  assert.is(oldPids.length, 1, `one QEMU after the move: ${oldPids.join(', ')}`)

  t0 = Date.now()
  await (await c.client((to + 1) % 3)).call('vm.restore', { vm: 'snapdisk', name: 's1' })
  const restored = await waitFor('the restore', 120_000, async () => (await cl.call('vm.snapshotList', { vm: 'snapdisk' })).find((x) => x.name === 's1' && x.restore?.phase !== 'requested') ?? null, 100)
  figures.restoreMs = Date.now() - t0
  assert.is(restored.restore?.phase, 'done', restored.restore?.reason)
  assert.is(restored.restore?.node, c.nodes[to].peerId, 'carried out by the VM\'s host of the moment')
  figures.hostRestoreMs = restored.restore?.ms ?? -1
  const back = await waitFor('heartbeats after the restore', 30_000, () => { const b = beats(); return b.length >= 2 ? b : null }, 100)
  assert.ok(back[0] >= before && back[0] <= after + 2, `the first counter after the restore (${back[0]}) is the snapshot's (between ${before} and ${after})`)
  assert.ok(back[0] < later, `below where the guest had got to (${later})`)
  assert.is(await onDisk(), 'BLXMARK-BEFORE', 'the disk is back at the snapshot\'s point')
  const pids = qemuPidsFor(vm.id)
  assert.is(pids.length, 1, `one QEMU runs the guest: ${pids.join(', ')}`)
  assert.is.not(pids[0], oldPids[0], 'a new QEMU, started from the state image')
  assert.ok(existsSync(runtimeDir(c, to, vm.id)))

  // delete: no state image, no RBD snapshot, no file, the guest's one QEMU
  await cl.call('vm.snapshotDelete', { vm: 'snapdisk', name: 's1' })
  await waitFor('the snapshot removed', 60_000, async () => (await cl.call('vm.snapshotList', { vm: 'snapdisk' })).length === 0, 100)
  assert.not.ok(await s.rbd().exists('rbd', image), 'the state image is gone')
  assert.equal(await s.rbd().snapshotList('rbd', VOL), [], 'the disk\'s RBD snapshot is gone')
  for (let i = 0; i < 3; i++) assert.not.ok(existsSync(join(c.nodes[i].dir, 'snapshots', vm.id, 's1.state')), `no state file on node ${i}`)
  assert.equal(qemuPidsFor(vm.id), pids, 'the guest\'s one QEMU, nothing left of the restore')
  assert.ok(readFileSync(join(runtimeDir(c, to, vm.id), 'serial.log'), 'utf8').length > 0)

  await cl.call('vm.delete', { vm: 'snapdisk' })
  await waitFor('no QEMU', 60_000, () => qemuPidsFor(vm.id).length === 0, 200)
})

test.run()
