// VM memory snapshots through 3 real blixard-node processes and a real tiny guest (QEMU, TCG here)
// printing a heartbeat counter on its console: a snapshot (vm.snapshot, what `blixard vm snapshot` calls) saves it on its host (a local
// file there, said so in the record), the counter goes on, `blixard vm restore` rolls the guest
// back (its first counter after the restore follows the one at the save, well below where it had
// got to), in exactly one QEMU; a snapshot delete removes the file and leaves the guest's one
// QEMU; a VM's delete removes its snapshots' files and leaves no QEMU. Ports 26700-26702 (metrics 26800-26802).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, runCli, vmSpec, waitFor } from '../cluster/harness.ts'
import { nodeIndex, qemuPidsFor, runtimeDir, show, vmSuite, waitPhase } from './helpers.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'
import type { VmSnapshotRecord } from '../../protocols/snapshots.ts'

// A 60 s lease (the default is 9 s; the nodes inherit it): this file is about snapshots, and at load
// ~43 the fence watchdog of a daemon late to renew killed the guest mid-test
process.env.BLIXARD_LEASE_MS = '60000'

const HEARTBEAT_MS = 100
const c = new TestCluster({ nodes: 3, basePort: 26700 }, 'vm-snapshot')
const ids: string[] = []
const figures: Record<string, number> = {}
const guard = vmSuite(test, c, { vmIds: () => ids, figures, logLines: 40 })

guard('vm snapshot, the counter goes on, vm restore → back at the snapshot point; delete leaves no file and no extra QEMU', async () => {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('snap1'), memoryMiB: 96, kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  ids.push(vm.id)
  const host = nodeIndex(c, (await waitPhase(c, 0, 'snap1', 'running', 120_000)).assignedNode)
  const other = (host + 1) % 3
  const beats = (): number[] => { try { return parseHeartbeats(readFileSync(join(runtimeDir(c, host, vm.id), 'serial.log'), 'utf8')) } catch { return [] } }
  const top = (): number => Math.max(0, ...beats())
  await waitFor('heartbeats', 30_000, () => beats().length >= 3, 100)

  // the save through RPC (what `vm snapshot` calls; a CLI process start costs seconds on a loaded
  // host, so the CLI is run for the restore only)
  const client = await c.client(other)
  const before = top()
  let t0 = Date.now()
  await client.call('vm.snapshot', { vm: 'snap1', name: 's1' })
  const rec = await waitFor('s1 ready', 60_000, async () => (await client.call('vm.snapshotList', { vm: 'snap1' })).find((s) => s.phase !== 'taking') ?? null, 50)
  figures.snapshotMs = Date.now() - t0
  const after = top()
  assert.is(rec.phase, 'ready', rec.reason)
  assert.is(rec.node, c.nodes[host].peerId, 'held by the VM\'s host')
  assert.is(rec.location?.kind, 'local-file')
  const file = rec.location?.kind === 'local-file' ? rec.location.path : ''
  assert.ok(file.startsWith(c.nodes[host].dir + '/') && existsSync(file), `the state is a file on the VM's host: ${file}`)
  assert.ok(rec.sizeBytes != null && rec.sizeBytes > 1024 * 1024, `size ${rec.sizeBytes}`)
  figures.stateMiB = Math.round((rec.sizeBytes ?? 0) / 1048576)
  figures.pausedMs = rec.pausedMs ?? -1

  // the guest runs on after the save
  const later = await waitFor('the counter to go on', 30_000, () => { const t = top(); return t >= after + 20 ? t : null }, 100)
  const pid = qemuPidsFor(vm.id)
  assert.is(pid.length, 1)

  t0 = Date.now()
  const restore = await runCli(['vm', 'restore', 'snap1', 's1', '--json'], c.cliEnv(other), 150_000)
  figures.cliRestoreMs = Date.now() - t0
  assert.is(restore.code, 0, `vm restore: ${restore.stderr}\n${restore.stdout}`)
  const restored = JSON.parse(restore.stdout) as VmSnapshotRecord
  assert.is(restored.restore?.phase, 'done')
  figures.hostRestoreMs = restored.restore?.ms ?? -1
  const back = await waitFor('heartbeats after the restore', 30_000, () => { const b = beats(); return b.length >= 2 ? b : null }, 100)
  assert.ok(back[0] >= before && back[0] <= after + 2, `the first counter after the restore (${back[0]}) is the snapshot's (between ${before} and ${after})`)
  assert.ok(back[0] < later, `below where the guest had got to (${later})`)
  const pids = qemuPidsFor(vm.id)
  assert.is(pids.length, 1, `one QEMU runs the guest: ${pids.join(', ')}`)
  assert.is.not(pids[0], pid[0], 'a new QEMU, started from the file')
  const v = await waitPhase(c, 0, 'snap1', 'running', 20_000)
  assert.is(v.assignedNode, c.nodes[host].peerId)

  // list and delete through RPC, as the CLI calls them
  assert.equal((await client.call('vm.snapshotList', { vm: 'snap1' })).map((s) => [s.name, s.phase]), [['s1', 'ready']])
  await client.call('vm.snapshotDelete', { vm: 'snap1', name: 's1' })
  await waitFor('the snapshot removed', 30_000, async () => (await client.call('vm.snapshotList', { vm: 'snap1' })).length === 0, 100)
  assert.not.ok(existsSync(file), 'the state file is gone')
  assert.equal(qemuPidsFor(vm.id), pids, 'the guest\'s one QEMU, nothing left of the restore')

  // a VM's delete takes its snapshots' files with it, and leaves no QEMU
  const s2 = await (await c.client(0)).call('vm.snapshot', { vm: 'snap1', name: 's2' })
  const s2ready = await waitFor('s2 ready', 30_000, async () => (await (await c.client(0)).call('vm.snapshotList', { vm: 'snap1' })).find((s) => s.name === s2.name && s.phase === 'ready') ?? null, 100)
  const file2 = s2ready.location?.kind === 'local-file' ? s2ready.location.path : ''
  assert.ok(existsSync(file2), file2)
  await (await c.client(0)).call('vm.delete', { vm: 'snap1' })
  await waitFor('no QEMU, no runtime dir, no snapshot file', 30_000, async () =>
    qemuPidsFor(vm.id).length === 0 && !existsSync(runtimeDir(c, host, vm.id)) && !existsSync(file2) &&
    (await (await c.client(0)).call('vm.snapshotList', {})).length === 0, 200)
  assert.not.ok(existsSync(join(c.nodes[host].dir, 'snapshots', vm.id)), 'the VM\'s snapshot dir is gone')
  assert.is((await show(c, 0, 'snap1').catch(() => null)), null)
})

test.run()
