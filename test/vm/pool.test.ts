// Warm pools through 3 real blixard-node processes and real tiny guests (QEMU, TCG here): `pool set
// fn --size 2` makes every node boot two guests of the pool's shape and pause them; two creates of
// that shape are each handed a paused guest (the VM's QEMU is a pool guest's, alive before the
// create; its console shows the one boot from before the create; its status says it was claimed)
// and run without a boot; every node's pool refills to two paused guests; `pool delete` leaves no
// pool guest and no QEMU of one, and the VMs' deletes leave no QEMU. Ports 26900-26902 (metrics 27000-27002).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, runCli, vmSpec, waitFor } from '../cluster/harness.ts'
import { MARKER, markerCount, nodeIndex, pidFile, qemuPidsFor, runtimeDir, vmSuite, waitPhase } from './helpers.ts'
import type { WarmPoolRecord } from '../../protocols/pools.ts'

const MEMORY = 96
const SIZE = 2
const c = new TestCluster({ nodes: 3, basePort: 26900 }, 'vm-pool')
const ids: string[] = []
const figures: Record<string, number> = {}
const guard = vmSuite(test, c, { vmIds: () => [...ids, 'warm.fn.'], figures, logLines: 40 })

/** the pool guests' runtime dirs on node i */
const warmDirs = (i: number): string[] => { try { return readdirSync(join(c.nodes[i].dir, 'vms')).filter((d) => d.startsWith('warm.fn.')) } catch { return [] } }
/** has node i's log said it paused this pool guest? */
const paused = (i: number, id: string): boolean => c.log(i).split('\n').some((l) => l.includes('"msg":"warm pool guest: pause"') && l.includes(`"${id}"`))
/** every node holds SIZE pool guests, each booted and paused */
const full = (): boolean => [0, 1, 2].every((i) => { const w = warmDirs(i); return w.length === SIZE && w.every((id) => paused(i, id)) })

guard('pool set fn --size 2: two creates run without a boot, the pool refills, pool delete leaves no guest', async () => {
  const set = await runCli(['pool', 'set', 'fn', '--size', String(SIZE), '--vcpus', '1', '--memory', String(MEMORY), '--json'], c.cliEnv(1), 120_000)
  assert.is(set.code, 0, `pool set: ${set.stderr}`)
  assert.equal((JSON.parse(set.stdout) as WarmPoolRecord).size, SIZE)
  let t0 = Date.now()
  await waitFor('every node with 2 paused pool guests', 300_000, full, 250)
  figures.poolFullMs = Date.now() - t0
  const warmPids = new Set(qemuPidsFor('warm.fn.'))
  assert.is(warmPids.size, 3 * SIZE, `one QEMU per pool guest: ${[...warmPids].join(', ')}`)
  const list = await runCli(['pool', 'list', '--json'], c.cliEnv(2), 120_000)
  assert.equal((JSON.parse(list.stdout) as WarmPoolRecord[]).map((p) => [p.name, p.size, p.memoryMiB]), [['fn', SIZE, MEMORY]])

  const client = await c.client(0)
  for (const name of ['f1', 'f2']) {
    t0 = Date.now()
    const vm = await client.call('vm.create', { spec: { ...vmSpec(name), memoryMiB: MEMORY } })
    ids.push(vm.id)
    const v = await waitPhase(c, 0, name, 'running', 60_000)
    figures[`${name}CreateToRunningMs`] = Date.now() - t0
    assert.match(v.status.reason, /^claimed warm guest warm\.fn\.\d+ of pool fn: no boot$/, v.status.reason)
    const host = nodeIndex(c, v.assignedNode)
    const pid = pidFile(c, host, vm.id)
    assert.ok(pid != null && warmPids.has(pid), `the VM runs in a pool guest's QEMU, alive before the create (pid ${pid})`)
    assert.is(qemuPidsFor(vm.id).length, 0, 'no QEMU was started for the VM\'s own id')
    const serial = readFileSync(join(runtimeDir(c, host, vm.id), 'serial.log'), 'utf8')
    assert.is(markerCount(serial), 1, `one ${MARKER} on its console: the boot before the create`)
  }
  t0 = Date.now()
  await waitFor('the pools refilled: 2 paused guests on every node again', 300_000, full, 250)
  figures.refillMs = Date.now() - t0
  const f1 = await waitPhase(c, 0, 'f1', 'running', 10_000)
  assert.ok(qemuPidsFor('warm.fn.').length === 3 * SIZE + 2, 'six pool guests and the two claimed ones')

  const del = await runCli(['pool', 'delete', 'fn', '--json'], c.cliEnv(0), 120_000)
  assert.is(del.code, 0, `pool delete: ${del.stderr}`)
  await waitFor('no pool guest left on any node', 60_000, () => [0, 1, 2].every((i) => warmDirs(i).length === 0), 200)
  // the claimed VMs' QEMUs (launched as pool guests) are all that is left of the pool's QEMUs
  await waitFor('only the two VMs\' QEMUs', 30_000, () => qemuPidsFor('warm.fn.').length === 2, 200)
  assert.is((await waitPhase(c, 0, 'f1', 'running', 10_000)).status.reason, f1.status.reason, 'the claimed VMs run on')

  for (const name of ['f1', 'f2']) await client.call('vm.delete', { vm: name })
  await waitFor('no QEMU and no runtime dir of the VMs', 60_000, () =>
    qemuPidsFor('warm.fn.').length === 0 && ids.every((id) => [0, 1, 2].every((i) => !existsSync(runtimeDir(c, i, id)))), 200)
})

test.run()
