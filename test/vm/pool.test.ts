// Warm pools through 3 real blixard-node processes and real tiny guests (QEMU, TCG here). The pool
// is confined by a label constraint to node 0 (the only one labelled pool=yes, offering 384 MiB), so
// the test pays for 2 pool boots and 2 refills, not 6 and 6: `pool set fn --size 2 --constraint
// pool==yes --image tiny` makes node 0 boot two guests of the pool's image and shape and pause them, and no other node any;
// `vm explain` of a VM of that shape shows the warm scorer choosing node 0; two creates without
// constraints are placed there by it and each handed a paused guest (the VM's QEMU is a pool guest's,
// alive before the create; its console shows the one boot from before the create; its status says it
// was claimed) and run without a boot; the pool refills to two paused guests. Pool guests reserve
// nothing: a VM no pool serves placed on node 0 takes the room of one, which node 0 stops before the
// VM boots and does not refill while the VM is there. `pool delete` leaves no pool guest and no QEMU
// of one, and the VMs' deletes leave no QEMU. Ports 26900-26902 (metrics 27000-27002).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, runCli, vmSpec, waitFor } from '../cluster/harness.ts'
import { MARKER, markerCount, nodeIndex, pidFile, qemuPidsFor, runtimeDir, vmSuite, waitPhase } from './helpers.ts'
import type { WarmPoolRecord } from '../../protocols/pools.ts'

const MEMORY = 96
const SIZE = 2
/** node 0's memory: the pool's two guests and two claimed ones, then a VM takes one guest's room */
const POOL_NODE_MEMORY = 4 * MEMORY
const c = new TestCluster({ nodes: 3, basePort: 26900 }, 'vm-pool')
const ids: string[] = []
const figures: Record<string, number> = {}
const guard = vmSuite(test, c, {
  vmIds: () => [...ids, 'warm.fn.'],
  figures,
  logLines: 40,
  start: (i, extra) => { c.start(i, i === 0 ? [...extra, '--label', 'pool=yes', '--capacity-memory-mib', String(POOL_NODE_MEMORY), '--capacity-cpu', '2'] : extra) }
})

/** the pool guests' runtime dirs on node i */
const warmDirs = (i: number): string[] => { try { return readdirSync(join(c.nodes[i].dir, 'vms')).filter((d) => d.startsWith('warm.fn.')) } catch { return [] } }
/** has node i's log said it paused this pool guest? */
const paused = (i: number, id: string): boolean => c.log(i).split('\n').some((l) => l.includes('"msg":"warm pool guest: pause"') && l.includes(`"${id}"`))
/** node 0 holds `n` pool guests, each booted and paused */
const full = (n = SIZE): boolean => { const w = warmDirs(0); return w.length === n && w.every((id) => paused(0, id)) }
const noneElsewhere = (): void => { assert.equal([warmDirs(1), warmDirs(2)], [[], []], 'no pool guest on the nodes the constraint leaves out') }

guard('a pool of 2 on one node: placement prefers it, two creates run without a boot, it refills, gives a VM its room, delete leaves nothing', async () => {
  const set = await runCli(['pool', 'set', 'fn', '--size', String(SIZE), '--image', 'tiny', '--vcpus', '1', '--memory', String(MEMORY), '--constraint', 'pool==yes', '--json'], c.cliEnv(1), 120_000)
  assert.is(set.code, 0, `pool set: ${set.stderr}`)
  const rec = JSON.parse(set.stdout) as WarmPoolRecord
  assert.equal([rec.image, rec.constraints], [{ kind: 'tiny' }, [{ label: 'pool', op: '==', value: 'yes' }]])
  let t0 = Date.now()
  await waitFor('node 0 with 2 paused pool guests', 300_000, () => full(), 250)
  figures.poolFullMs = Date.now() - t0
  noneElsewhere()
  const warmPids = new Set(qemuPidsFor('warm.fn.'))
  assert.is(warmPids.size, SIZE, `one QEMU per pool guest: ${[...warmPids].join(', ')}`)
  const list = await runCli(['pool', 'list', '--json'], c.cliEnv(2), 120_000)
  assert.equal((JSON.parse(list.stdout) as WarmPoolRecord[]).map((p) => [p.name, p.size, p.memoryMiB]), [['fn', SIZE, MEMORY]])

  // every node's view (whichever leads schedules): the warm scorer picks node 0 for a VM of the
  // pool's shape, and only there; a stopped probe VM is never placed
  const client = await c.client(0)
  const probe = await client.call('vm.create', { spec: { ...vmSpec('probe'), memoryMiB: MEMORY }, start: false })
  ids.push(probe.id)
  for (const i of [0, 1, 2]) {
    const e = await waitFor(`node ${i} sees node 0's warm guests`, 30_000, async () => {
      const x = await (await c.client(i)).call('vm.explain', { vm: 'probe' })
      return x.decision.nodeId === c.nodes[0].peerId ? x : null
    }, 250)
    assert.equal((e.decision.nodes ?? []).map((n) => [nodeIndex(c, n.nodeId), n.scores?.warm]).sort(), [[0, 1], [1, 0], [2, 0]], `explain on node ${i}`)
  }
  await client.call('vm.delete', { vm: 'probe' })

  for (const name of ['f1', 'f2']) {
    t0 = Date.now()
    const vm = await client.call('vm.create', { spec: { ...vmSpec(name), memoryMiB: MEMORY } })
    ids.push(vm.id)
    const v = await waitPhase(c, 0, name, 'running', 60_000)
    figures[`${name}CreateToRunningMs`] = Date.now() - t0
    assert.match(v.status.reason, /^claimed warm guest warm\.fn\.\d+ of pool fn: no boot$/, v.status.reason)
    assert.is(nodeIndex(c, v.assignedNode), 0, 'placed on the node holding the warm guests')
    const pid = pidFile(c, 0, vm.id)
    assert.ok(pid != null && warmPids.has(pid), `the VM runs in a pool guest's QEMU, alive before the create (pid ${pid})`)
    assert.is(qemuPidsFor(vm.id).length, 0, 'no QEMU was started for the VM\'s own id')
    const serial = readFileSync(join(runtimeDir(c, 0, vm.id), 'serial.log'), 'utf8')
    assert.is(markerCount(serial), 1, `one ${MARKER} on its console: the boot before the create`)
  }
  t0 = Date.now()
  await waitFor('the pool refilled: 2 paused guests on node 0 again', 300_000, () => full(), 250)
  figures.refillMs = Date.now() - t0
  noneElsewhere()
  assert.ok(qemuPidsFor('warm.fn.').length === SIZE + 2, 'two pool guests and the two claimed ones')

  // 2 claimed VMs + 2 pool guests fill node 0's 384 MiB; pool guests reserve none of it, so a VM
  // no pool serves (a kernel parameter) is placed there, and node 0 stops the newest guest first
  const before = warmDirs(0).sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]))
  t0 = Date.now()
  const cold = await client.call('vm.create', { spec: { ...vmSpec('cold'), memoryMiB: MEMORY, kernelParams: ['blix.nopool=1'], constraints: [{ label: 'pool', op: '==', value: 'yes' }] } })
  ids.push(cold.id)
  const cv = await waitPhase(c, 0, 'cold', 'running', 180_000)
  figures.coldCreateToRunningMs = Date.now() - t0
  assert.is(nodeIndex(c, cv.assignedNode), 0)
  assert.equal(warmDirs(0), [before[0]], `the newest guest (${before[1]}) made room, the oldest stays`)
  const log = c.log(0).split('\n')
  const evicted = log.findIndex((l) => l.includes('"msg":"warm pool guest: remove"') && l.includes(`"${before[1]}"`) && l.includes('VMs placed here need its room'))
  const starting = log.findIndex((l) => l.includes('"msg":"vm status"') && l.includes(`"${cold.id}"`) && l.includes('"phase":"starting"'))
  assert.ok(evicted >= 0 && starting > evicted, `the guest was stopped before the VM booted (lines ${evicted}, ${starting})`)
  // passes run every second: none boots a refill into the room the VM holds
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  assert.equal(warmDirs(0), [before[0]], 'no refill into the room the VM needs')
  assert.is(qemuPidsFor('warm.fn.').length, 1 + 2, 'one pool guest and the two claimed ones')

  const del = await runCli(['pool', 'delete', 'fn', '--json'], c.cliEnv(0), 120_000)
  assert.is(del.code, 0, `pool delete: ${del.stderr}`)
  await waitFor('no pool guest left on any node', 60_000, () => [0, 1, 2].every((i) => warmDirs(i).length === 0), 200)
  // the claimed VMs' QEMUs (launched as pool guests) are all that is left of the pool's QEMUs
  await waitFor('only the two VMs\' QEMUs', 30_000, () => qemuPidsFor('warm.fn.').length === 2, 200)
  assert.match((await waitPhase(c, 0, 'f1', 'running', 10_000)).status.reason, /^claimed warm guest/, 'the claimed VMs run on')

  for (const name of ['f1', 'f2', 'cold']) await client.call('vm.delete', { vm: name })
  await waitFor('no QEMU and no runtime dir of the VMs', 60_000, () =>
    qemuPidsFor('warm.fn.').length === 0 && ids.every((id) => qemuPidsFor(id).length === 0 && [0, 1, 2].every((i) => !existsSync(runtimeDir(c, i, id)))), 200)
})

test.run()
