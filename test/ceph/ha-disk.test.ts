// Failover of a VM with a Ceph data disk: 3 real blixard-node processes on the single-host Ceph, a guest whose
// data disk is an RBD image: it counts its boots on it, and its disk writer appends a record
// `counter host boot-id` every 100 ms (scripts/build-tiny-guest.sh). kill -9 of the VM's host
// daemon, its QEMU left running → the fence watchdog kills the guest there; the VM is rescheduled,
// and before its disk opens on the new host that host fences the old holder (blocklist, lock
// broken: the storage guard), then the guest boots from the same image and reads its data back
// (boots=2). Never two QEMUs of the VM alive at once, and on the disk itself (the image exported and
// judged by node/qemu/disk-writer-log.ts): the counter never goes backwards and the old host wrote
// nothing after the new one started. Lease 6 s (--lease-* flags). Ports 17950-17952.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { TestCluster, waitFor, vmSpec, sleep } from '../cluster/harness.ts'
import { cmdline, nodeIndex, qemuPidsFor } from '../vm/helpers.ts'
import { parseDiskBoots, parseWriterStart } from '../../node/qemu/tiny-guest.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'
import { cephVmSuite } from './ceph-vm.ts'

const LEASE = ['--lease-ms', '6000', '--lease-renew-every-ms', '1000', '--lease-fence-margin-ms', '500', '--lease-down-margin-ms', '500']
const c = new TestCluster({ nodes: 3, basePort: 17950, extraArgs: LEASE }, 'ha-disk')
const VOL = `hadata${process.pid % 10000}`
const figures: Record<string, number> = {}
/** records the new writer must have put down before the disk is judged (one per 100 ms, plus its dd) */
const NEW_WRITER_RECORDS = 3

const s = cephVmSuite(test, c, {
  vm: 'havm',
  figures,
  cleanup: () => {
    for (const n of c.nodes) {
      try { const pid = Number(readFileSync(watchdogPaths(n.dir).pidFile, 'utf8').trim()); if (cmdline(pid)?.some((a) => a.includes('fence-watchdog')) === true) process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
})

let host = -1

s.guard('a VM with an RBD data disk boots, counts its first boot there, and its disk writer starts naming its host', async () => {
  const cl = await c.client(1)
  await cl.call('volume.create', { name: VOL, sizeGiB: 1 })
  const created = await cl.call('vm.create', { spec: { ...vmSpec('havm'), memoryMiB: 96, volumes: [VOL], restartPolicy: 'always' } })
  s.setVmId(created.id)
  host = nodeIndex(c, (await s.runningOn(1, null, 180_000)).assignedNode)
  assert.is(await waitFor('boots= on the console', 60_000, () => parseDiskBoots(s.serial(host)), 250), 1)
  assert.equal(await waitFor('the disk writer started', 60_000, () => parseWriterStart(s.serial(host)), 250), { host: c.nodes[host].name, region: 0, from: 1 })
  assert.ok(await s.rbd().lockHolder('rbd', VOL) != null, 'the guest holds the image\'s exclusive lock')
})

s.guard('kill -9 of its host daemon: fenced there, the new host fences the old disk holder, the guest reads its data back; never two QEMUs, never two writers on the disk', async () => {
  const vmId = s.vmId()
  const [oldPid] = qemuPidsFor(vmId)
  const ask = [0, 1, 2].find((i) => i !== host)!
  let max = 0
  const sampler = setInterval(() => { max = Math.max(max, qemuPidsFor(vmId).length) }, 25)
  let to = -1
  try {
    const t0 = Date.now()
    c.kill(host, 'SIGKILL')
    await waitFor('the orphaned QEMU killed by the watchdog', 30_000, () => cmdline(oldPid) == null, 25)
    figures.killToFencedMs = Date.now() - t0
    const vm = await s.runningOn(ask, host, 180_000)
    to = nodeIndex(c, vm.assignedNode)
    const boots = await waitFor('boots= on the new host\'s console', 60_000, () => parseDiskBoots(s.serial(to)), 250)
    figures.killToRunningElsewhereMs = Date.now() - t0
    console.log(`  kill -9 → fenced ${figures.killToFencedMs} ms, running on node ${to} with its disk after ${figures.killToRunningElsewhereMs} ms, boots=${boots}`)
    assert.is(boots, 2, 'the same disk: the guest found its first boot recorded')
    assert.match(c.log(to), /fenced the previous holder of a volume/, 'the new host cut off the old holder before opening the disk')
    const start = await waitFor('the new disk writer started', 60_000, () => parseWriterStart(s.serial(to)), 250)
    assert.equal([start.host, start.region], [c.nodes[to].name, 1])
    await sleep(NEW_WRITER_RECORDS * 200)
  } finally { clearInterval(sampler) }
  assert.is(max, 1, 'never two QEMUs of the VM alive at once')
  const t1 = Date.now()
  const v = await s.judgeDisk(VOL)
  figures.judgeDiskMs = Date.now() - t1
  console.log(`  disk writer log: ${v.writers.map((w) => `${w.host} ${w.first}..${w.last}`).join(', ')} (exported and judged in ${figures.judgeDiskMs} ms)`)
  assert.equal(v.problems, [], 'the counter never goes backwards, no two writers interleave')
  assert.equal(v.writers.map((w) => w.host), [c.nodes[host].name, c.nodes[to].name], 'the old host wrote, then the new one')
  assert.ok(v.writers[0].count >= 5 && v.writers[1].count >= NEW_WRITER_RECORDS, `both wrote: ${JSON.stringify(v.writers)}`)
})

test.run()
