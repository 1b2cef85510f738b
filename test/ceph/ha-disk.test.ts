// Issue 14 with a real disk: 3 real blixard-node processes on the single-host Ceph, a guest whose
// data disk is an RBD image (it counts its boots on it). kill -9 of the VM's host daemon, its QEMU
// left running → the fence watchdog kills the guest there; the VM is rescheduled, and before its
// disk opens on the new host that host fences the old holder (blocklist, lock broken: the storage
// guard), then the guest boots from the same image and reads its data back (boots=2); never two
// QEMUs of the VM alive at once. Lease 6 s (--lease-* flags). Ports 17950-17952.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec } from '../cluster/harness.ts'
import { cmdline, nodeIndex, qemuPidsFor, show, vmSuite } from '../vm/helpers.ts'
import { parseDiskBoots } from '../../node/qemu/tiny-guest.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'

const LEASE = ['--lease-ms', '6000', '--lease-renew-every-ms', '1000', '--lease-fence-margin-ms', '500', '--lease-down-margin-ms', '500']
const c = new TestCluster({ nodes: 3, basePort: 17950, extraArgs: LEASE }, 'ha-disk')
const VOL = `hadata${process.pid % 10000}`
let ceph: TestCeph | null = null
let rbd: RbdClient
let vmId = ''
const figures: Record<string, number> = {}

const guard = vmSuite(test, c, {
  vmIds: () => vmId === '' ? [] : [vmId],
  logLines: 30,
  figures,
  prepare: async () => {
    ceph = await startTestCeph()
    console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
    rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
    return ['--ceph-conf', ceph.conf, '--ceph-keyring', ceph.keyring, '--ceph-id', 'admin']
  },
  ready: async () => { await waitFor('3 nodes registered', 30_000, async () => (await (await c.client(0)).call('node.list', {})).length === 3, 200) },
  cleanup: async () => {
    for (const n of c.nodes) {
      try { const pid = Number(readFileSync(watchdogPaths(n.dir).pidFile, 'utf8').trim()); if (cmdline(pid)?.some((a) => a.includes('fence-watchdog')) === true) process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await ceph?.destroy()
  }
})

function serial (node: number): string {
  try { return readFileSync(join(c.nodes[node].dir, 'vms', vmId, 'serial.log'), 'utf8') } catch { return '' }
}

async function runningOn (ask: number, notOn: number | null, timeoutMs: number): Promise<VmRecord> {
  return await waitFor(`VM running${notOn == null ? '' : ` away from node ${notOn}`}`, timeoutMs, async () => {
    const v = await show(c, ask, 'havm')
    return v.status.phase === 'running' && v.assignedNode != null && nodeIndex(c, v.assignedNode) !== notOn ? v : null
  }, 250)
}

let host = -1

guard('a VM with an RBD data disk boots and counts its first boot there', async () => {
  const cl = await c.client(1)
  await cl.call('volume.create', { name: VOL, sizeGiB: 1 })
  const created = await cl.call('vm.create', { spec: { ...vmSpec('havm'), memoryMiB: 96, volumes: [VOL], restartPolicy: 'always' } })
  vmId = created.id
  host = nodeIndex(c, (await runningOn(1, null, 180_000)).assignedNode)
  assert.is(await waitFor('boots= on the console', 60_000, () => parseDiskBoots(serial(host)), 250), 1)
  assert.ok(await rbd.lockHolder('rbd', VOL) != null, 'the guest holds the image\'s exclusive lock')
})

guard('kill -9 of its host daemon: fenced there, the new host fences the old disk holder, the guest reads its data back; never two QEMUs', async () => {
  const [oldPid] = qemuPidsFor(vmId)
  const ask = [0, 1, 2].find((i) => i !== host)!
  let max = 0
  const sampler = setInterval(() => { max = Math.max(max, qemuPidsFor(vmId).length) }, 25)
  try {
    const t0 = Date.now()
    c.kill(host, 'SIGKILL')
    await waitFor('the orphaned QEMU killed by the watchdog', 30_000, () => cmdline(oldPid) == null, 25)
    figures.killToFencedMs = Date.now() - t0
    const vm = await runningOn(ask, host, 180_000)
    const to = nodeIndex(c, vm.assignedNode)
    const boots = await waitFor('boots= on the new host\'s console', 60_000, () => parseDiskBoots(serial(to)), 250)
    figures.killToRunningElsewhereMs = Date.now() - t0
    console.log(`  kill -9 → fenced ${figures.killToFencedMs} ms, running on node ${to} with its disk after ${figures.killToRunningElsewhereMs} ms, boots=${boots}`)
    assert.is(boots, 2, 'the same disk: the guest found its first boot recorded')
    assert.match(c.log(to), /fenced the previous holder of a volume/, 'the new host cut off the old holder before opening the disk')
  } finally { clearInterval(sampler) }
  assert.is(max, 1, 'never two QEMUs of the VM alive at once')
})

test.run()
