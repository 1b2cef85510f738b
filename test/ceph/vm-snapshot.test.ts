// VM snapshots of a guest with an RBD disk, through 3 real blixard-node processes configured with the
// single-host Ceph: the guest prints a heartbeat counter and has written a marker to its disk; a
// snapshot pauses it, saves memory + devices and takes an RBD snapshot of the disk, and puts the
// state into an RBD image in the cluster's pool (no file left on the host), replacing what a save
// cut short by a restart would have left. The guest then writes
// another marker and counts on; the VM moves live to another host, and `vm restore` there rolls the
// disk back to its RBD snapshot and streams the state image into a new QEMU: the counter and the
// disk are back at the snapshot's point. Deleting the snapshot leaves no state image, no RBD
// snapshot, no file, and the guest's one QEMU. Ports 27600-27602 (metrics 27700-27702).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec } from '../cluster/harness.ts'
import { nodeIndex, qemuPidsFor, runtimeDir } from '../vm/helpers.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'
import { diskSnapshotName, stateImageName } from '../../protocols/snapshots.ts'
import { cephVmSuite } from './ceph-vm.ts'

// A 60 s lease (the default is 9 s; the nodes inherit it): this file is about snapshots, and on a
// starved host the fence watchdog of a daemon late to renew killed the guest mid-test
process.env.BLIXARD_LEASE_MS = '60000'

const HEARTBEAT_MS = 100
/** A sector the guest leaves alone: past its 64 MiB filesystem, before the disk writer's log. */
const MARK_SECTOR = 140_000
const c = new TestCluster({ nodes: 3, basePort: 27600 }, 'ceph-snap')
const VOL = `snapvol${process.pid % 10000}`
const figures: Record<string, number> = {}
const s = cephVmSuite(test, c, { vm: 'snapdisk', figures })

s.guard('snapshot with an RBD disk → state in the pool; write more; restore on another host → counter and disk back; delete leaves nothing', async () => {
  const cl = await c.client(0)
  await cl.call('volume.create', { name: VOL, sizeGiB: 1 })
  await waitFor('volume ready', 60_000, async () => (await cl.call('volume.show', { volume: VOL })).phase === 'ready', 250)
  const vm = await cl.call('vm.create', { spec: { ...vmSpec('snapdisk'), memoryMiB: 96, volumes: [VOL], kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  s.setVmId(vm.id)
  let host = nodeIndex(c, (await s.runningOn(0, null, 180_000)).assignedNode)
  const beats = (): number[] => parseHeartbeats(s.serial(host))
  const top = (): number => Math.max(0, ...beats())
  await waitFor('heartbeats', 60_000, () => beats().length >= 3, 100)

  // the guest writes its disk through its console (admin input, on its own host)
  const mark = async (text: string): Promise<void> => {
    const done = (s.serial(host).match(/BLIXARD-CMD-DONE rc=0/g) ?? []).length
    const line = `echo ${text} | dd of=/dev/vda bs=512 seek=${MARK_SECTOR} count=1 conv=sync,notrunc,fsync 2>/dev/null\n`
    await (await c.client(host)).call('vm.consoleInput', { vm: 'snapdisk', data: Buffer.from(line).toString('base64') })
    await waitFor(`the guest to write ${text}`, 30_000, () => (s.serial(host).match(/BLIXARD-CMD-DONE rc=0/g) ?? []).length > done, 100)
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
