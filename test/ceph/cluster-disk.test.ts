// A VM's disk through the whole system: 3 real blixard-node processes configured with the
// single-host Ceph ([ceph] conf, given as --ceph-conf/--ceph-keyring), `volume create` makes a
// real RBD image through Raft, `vm create` with that volume boots a guest whose data disk is the
// image (QEMU's rbd driver); the guest counts its boots on it (boots=1). `node drain` of its host
// moves the running VM live (a clean hand-over: no reboot, no fencing): the guest keeps writing
// its disk from the new host, whose client then holds the image's exclusive lock, and the old
// host's client is not blocklisted (`ceph osd blocklist ls`). (The cold move
// that fences the old holder and boots from the same image is test/ceph/ha-disk.test.ts's.)
// Deleting the VM leaves the volume (and its data); deleting the volume removes the image.
// Ports 17740-17742 (metrics 17840-17842).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, vmSpec } from '../cluster/harness.ts'
import { nodeIndex, qemuPidsFor, show } from '../vm/helpers.ts'
import { parseDiskBoots } from '../../node/qemu/tiny-guest.ts'
import { cephVmSuite } from './ceph-vm.ts'

const c = new TestCluster({ nodes: 3, basePort: 17740 }, 'disk')
const VOL = `data${process.pid % 10000}`
const s = cephVmSuite(test, c, { vm: 'diskvm' })
const serial = s.serial
const runningOn = async (notOn: number | null, timeoutMs: number): ReturnType<typeof s.runningOn> => await s.runningOn(0, notOn, timeoutMs)
let vmId = ''
let firstLocker = ''
let firstAddress = ''
const guard = s.guard

guard('volume create makes a real RBD image; a VM with it boots and counts its first boot on that disk', async () => {
  const cl = await c.client(1)
  const vol = await cl.call('volume.create', { name: VOL, sizeGiB: 1 })
  assert.is(vol.name, VOL)
  // the volume reconciler (on a node with Ceph) makes the image, then reports it ready
  await waitFor('volume ready', 60_000, async () => (await cl.call('volume.show', { volume: VOL })).phase === 'ready', 250)
  const info = await s.rbd().info(vol.pool, VOL)
  assert.is(info.sizeBytes, 2 ** 30, 'the image exists in Ceph with the size asked for')
  const t0 = Date.now()
  const created = await cl.call('vm.create', { spec: { ...vmSpec('diskvm'), memoryMiB: 96, volumes: [VOL], restartPolicy: 'always' } })
  vmId = created.id
  s.setVmId(vmId)
  const vm = await runningOn(null, 180_000)
  const host = nodeIndex(c, vm.assignedNode)
  console.log(`  create → running with an RBD disk: ${Date.now() - t0} ms on node ${host}`)
  const boots = await waitFor('boots= on the console', 60_000, () => parseDiskBoots(serial(host)), 250)
  assert.is(boots, 1, 'a blank image: the guest made a filesystem and counted boot 1')
  assert.is((await cl.call('volume.show', { volume: VOL })).attachedTo, vmId)
  const holder = await s.rbd().lockHolder(vol.pool, VOL)
  assert.ok(holder != null, 'the running guest holds the image\'s exclusive lock')
  firstLocker = holder.locker
  firstAddress = holder.address
})

guard('node drain moves the running VM live: no reboot, and the new host takes the disk\'s lock as the guest writes on', async () => {
  const before = await show(c, 0, 'diskvm')
  const from = nodeIndex(c, before.assignedNode)
  const cl = await c.client(0)
  const t0 = Date.now()
  await cl.call('node.drain', { node: c.nodes[from].peerId })
  const vm = await runningOn(from, 180_000)
  const to = nodeIndex(c, vm.assignedNode)
  assert.is.not(to, from)
  await waitFor('one qemu for the VM', 30_000, () => qemuPidsFor(vmId).length === 1, 250)
  // the guest's disk writer goes on from the new host: its writes move the exclusive lock there
  const holder = await waitFor('the exclusive lock with a new client', 60_000, async () => {
    const h = await s.rbd().lockHolder('rbd', VOL)
    return h != null && h.locker !== firstLocker ? h : null
  }, 250)
  console.log(`  drained node ${from}: running on node ${to} after ${Date.now() - t0} ms; lock ${firstLocker} → ${holder.locker}`)
  assert.is(parseDiskBoots(serial(to)), null, 'no boot on the new host: the guest moved live')
  // a clean hand-over fences nobody: the source's QEMU quit after the switchover and its librbd
  // released the lock; the source's client is not on the OSDs' blocklist
  const blocklist = await s.rbd().blocklistLs()
  assert.not.ok(blocklist.some((e) => e.addr === firstAddress), `the source's client ${firstAddress} was blocklisted: ${JSON.stringify(blocklist)}`)
  assert.is((await show(c, 0, 'diskvm')).migration?.phase, 'done', 'the move was live and finished')
  await cl.call('node.undrain', { node: c.nodes[from].peerId })
})

guard('deleting the VM keeps the volume and its image; deleting the volume removes the image', async () => {
  const cl = await c.client(2)
  await cl.call('vm.delete', { vm: vmId })
  await waitFor('no qemu for the VM', 60_000, () => qemuPidsFor(vmId).length === 0, 250)
  await waitFor('volume detached', 30_000, async () => (await cl.call('volume.show', { volume: VOL })).attachedTo === null, 250)
  assert.ok((await s.rbd().info('rbd', VOL)).sizeBytes > 0, 'the image outlives the VM')
  await cl.call('volume.delete', { volume: VOL })
  await waitFor('volume record gone', 60_000, async () => (await cl.call('volume.list', {})).every((v) => v.name !== VOL), 250)
  const gone = await s.rbd().info('rbd', VOL).then(() => false, () => true)
  assert.ok(gone, 'the image is gone from Ceph')
})

test.run()
