// The scheduler moving real guests, through real blixard-node processes and real tiny
// guests (QEMU, TCG here) printing a heartbeat counter: `vm migrate --cold` of a running VM goes
// through the release handshake (the target starts its QEMU only after the source reported the guest
// gone; never two QEMUs of it), then a 4th node joins the unbalanced 3-node cluster and the leader's
// rebalancer, in its default mode (join: nothing turns it on), fills it by a live migration woken
// by the join itself: the counter goes on, one QEMU; and the VM moved cold minutes before is not
// the one it moves (the cooldown counts cold moves). (`rebalance --dry-run`/`--apply` run in
// test/ops/preempt.test.ts.)
//
// The numbers: each node offers 1 vCPU (× 4 overcommit) and 192 MiB, so a 96 MiB guest fills a
// quarter of it ((1/4 + 96/192) / 3 = 0.25, the mean of cpu, memory and disk fractions) and two fill
// it. The 4 guests sit 2/1/1, and after the cold move 1/2/1: no move could lower the variance of
// fill. Node 4 joining empty while the others' mean fill is 0.33 (above the join mode's 0.1) makes
// it a node to fill: one of the two VMs of the full node moves, and then every node holds one.
// Which one: they weigh the same, so the plan takes the lower id; the test cold-moves a VM whose id
// is lower than its new neighbour's (when the four ids allow it: 5 runs in 6), so that only the
// cooldown keeps the plan off it. BLIXARD_REBALANCE_HOT_PCT=100 (a test setting, not a switch):
// the nodes share this host's load average, which would make every one of them too hot to take a VM.
// Ports 27300-27303 (metrics 27400-27403).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, logTime, runCli, vmSpec, waitFor, leaseArgs } from '../cluster/harness.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { cmdline, nodeIndex, qemuPidsFor, runtimeDir, show, vmSuite } from './helpers.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'
import { REBALANCE_EVERY_MS } from '../../node/rebalancer.ts'

const HEARTBEAT_MS = 200
// leases long enough that a host starved on a loaded test machine is not fenced mid-test (15 s
// fenced every guest at load 37); no host is killed here, so a long lease costs nothing
const LEASE = leaseArgs({ leaseMs: 30_000 })
const NODE_ENV = { BLIXARD_REBALANCE_HOT_PCT: '100' }
const c = new TestCluster({ nodes: 4, basePort: 27300, extraArgs: [...LEASE, '--capacity-cpu', '1', '--capacity-memory-mib', '192'] }, 'vm-rebalance')
const ids: string[] = []
const figures: Record<string, number> = {}
const guard = vmSuite(test, c, { vmIds: () => ids, figures, logLines: 40, startEnv: NODE_ENV })

const beats = (node: number, vmId: string): number[] => {
  try { return parseHeartbeats(readFileSync(join(runtimeDir(c, node, vmId), 'serial.log'), 'utf8')) } catch { return [] }
}
/** the node whose data dir the QEMU runs from */
const nodeOfPid = (pid: number): number => c.nodes.findIndex((n) => cmdline(pid)?.some((a) => a.includes(n.dir + '/')) === true)
const vms: Record<string, VmRecord> = {}
/** the VM moved cold in the first test (its cooldown runs through the second) */
let coldMoved = ''

async function create (name: string, group: string | null): Promise<void> {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec(name), memoryMiB: 96, antiAffinityGroup: group, kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  ids.push(vm.id)
  vms[name] = vm
}
const placedOn = async (name: string): Promise<number> => await waitFor(`${name} placed`, 60_000, async () => { const v = await show(c, 0, name); return v.assignedNode == null ? null : nodeIndex(c, v.assignedNode) }, 100)

guard('vm migrate --cold of a running VM: the target starts it only once the source reported it gone; never two QEMUs; the move starts its cooldown', async () => {
  const t0 = Date.now()
  // binpack puts r1 and r2 on one node; r3 and r4 may not share one (anti-affinity): 2/1/1
  await create('r1', null)
  await create('r2', null)
  const x = await placedOn('r1')
  assert.is(await placedOn('r2'), x, 'binpack: r2 beside r1')
  await create('r3', 'rb')
  await create('r4', 'rb')
  const y = await placedOn('r3')
  const z = await placedOn('r4')
  assert.equal(new Set([x, y, z]).size, 3, `2/1/1 over the three nodes: ${x} ${y} ${z}`)
  for (const name of ['r1', 'r2', 'r3', 'r4']) {
    const at = await placedOn(name)
    await waitFor(`${name} counting`, 120_000, () => beats(at, vms[name].id).length >= 2, 200)
  }
  figures.fourGuestsUpMs = Date.now() - t0

  // one of r1/r2 moves cold beside r3 or r4 (1/2/1, nothing for the rebalancer to gain): the pair
  // whose moved VM has the lower id, so that the plan's tie-break would pick it but for the cooldown
  const pairs = [['r1', 'r3'], ['r1', 'r4'], ['r2', 'r3'], ['r2', 'r4']].filter(([m, t]) => vms[m].id < vms[t].id)
  const [mover, beside] = pairs[0] ?? ['r1', 'r3']
  figures.cooldownDecides = pairs.length > 0 ? 1 : 0
  coldMoved = mover
  const dest = await placedOn(beside)
  const src = await placedOn(mover)
  assert.is(src, x)
  const id = vms[mover].id
  const [oldPid] = qemuPidsFor(id)
  let most = 0
  const counter = setInterval(() => { most = Math.max(most, qemuPidsFor(id).length) }, 20)
  const t1 = Date.now()
  const r = await runCli(['vm', 'migrate', mover, '--cold', '--to', c.nodes[dest].name, '--wait', '--json'], c.cliEnv(dest === y ? z : y), 120_000).finally(() => { clearInterval(counter) })
  figures.coldMoveMs = Date.now() - t1
  assert.is(r.code, 0, `vm migrate --cold: ${r.stderr}\n${r.stdout}`)
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { how: string, phase: string, node: string }
  assert.equal([last.how, last.phase, last.node], ['cold', 'running', c.nodes[dest].name])
  assert.ok(most <= 1, `at most one QEMU of ${mover} at any time, saw ${most}`)
  const pid = await waitFor(`one QEMU of ${mover}, on its new node`, 20_000, () => { const p = qemuPidsFor(id); return p.length === 1 && nodeOfPid(p[0]) === dest ? p[0] : null }, 100)
  assert.ok(pid !== oldPid)
  // the handshake in the agents' own logs: the source released it before the target started QEMU
  const released = await waitFor('the source\'s release in its log', 10_000, () => logTime(c.log(src).split('\n').filter((l) => l.includes(id)).join('\n'), 'guest gone: releasing a VM taken off this host'), 100)
  const started = logTime(c.log(dest).split('\n').filter((l) => l.includes(id)).join('\n'), 'qemu started')
  assert.ok(started != null && started >= released, `target started ${started} after the source released ${released}`)
  const v = await show(c, 0, mover)
  assert.equal([v.assignedNode, v.status.phase, v.releasing ?? null], [c.nodes[dest].peerId, 'running', null])
  assert.ok(v.movedAt != null && v.movedAt >= t1 - 60_000, `the cold move is on record for the rebalancer's cooldown: ${String(v.movedAt)}`)
  // a cold move reboots: the counter starts again
  const fresh = await waitFor(`${mover} counting on its new node`, 60_000, () => { const b = beats(dest, id); return b.length >= 2 ? b : null }, 200)
  assert.ok(fresh[0] <= 2, `a fresh boot counts from the start: ${fresh.slice(0, 5).join(',')}`)
  console.log(`  cold move of ${mover} ${c.nodes[src].name} → ${c.nodes[dest].name}: ${figures.coldMoveMs} ms (CLI included); released at +${released - t1} ms, target QEMU at +${started - t1} ms`)
})

guard('a 4th node joins the unbalanced cluster: the default rebalancer fills it by a live migration, woken by the join; the heartbeat goes on, one QEMU; the VM moved cold lately stays', async () => {
  const now = await Promise.all(['r1', 'r2', 'r3', 'r4'].map(async (n) => await show(c, 0, n)))
  const full = now.map((v) => v.assignedNode).find((n, i, all) => all.indexOf(n) !== i)!
  const source = nodeIndex(c, full)
  const candidates = now.filter((v) => v.assignedNode === full)
  // the source's consoles, read as they grow: its agent removes them soon after the move
  const onSource = new Map<string, number>()
  const reader = setInterval(() => { for (const v of candidates) { const b = beats(source, v.id); if (b.length > 0) onSource.set(v.id, Math.max(onSource.get(v.id) ?? 0, b[b.length - 1])) } }, 50)
  const t0 = Date.now()
  try {
    c.start(3, [], undefined, NODE_ENV)
    const joiner = c.nodes[3].peerId
    await waitFor('node4 registered and ready', 90_000, async () => (await (await c.client(0)).call('node.list', {})).some((n) => n.id === joiner && n.state === 'ready'), 250)
    figures.joinMs = Date.now() - t0
    // the join wakes the leader's rebalancer (not only its 15 s timer), then the move itself
    const moved = await waitFor('a VM moved live to node4', 120_000, async () => {
      for (const v of candidates) {
        const r = await show(c, 0, v.spec.name)
        if (r.assignedNode === joiner && r.migration?.phase === 'done' && r.status.phase === 'running') return r
      }
      return null
    }, 250)
    figures.joinToMovedMs = Date.now() - t0
    const id = moved.id
    assert.equal([moved.migration?.source, moved.migration?.target], [full, joiner], 'live, from the full node')
    // the cooldown: the VM moved cold in the first test is not moved again (its neighbour is)
    assert.is.not(moved.spec.name, coldMoved, `${coldMoved} moved cold minutes ago: within the cooldown it is not moved again`)
    const stayed = await show(c, 0, coldMoved)
    assert.equal([stayed.assignedNode, stayed.migration ?? null], [full, null], `${coldMoved} stays where its cold move put it`)
    // woken by the join: the move started well before the timer's next round could be counted on
    const registered = (await (await c.client(0)).call('node.list', {})).find((n) => n.id === joiner)!.registeredAt
    figures.registeredToMoveMs = (moved.migration?.started ?? Infinity) - registered
    assert.ok(figures.registeredToMoveMs < REBALANCE_EVERY_MS, `the move started ${figures.registeredToMoveMs} ms after node4 registered`)
    const onTarget = await waitFor('heartbeats on node4', 20_000, () => { const b = beats(3, id); return b.length >= 3 ? b : null }, 100)
    const lastOnSource = onSource.get(id) ?? 0
    assert.ok(lastOnSource > 1 && onTarget[0] >= lastOnSource && onTarget[0] <= lastOnSource + 2, `the counter continued: last ${lastOnSource} on the source, first ${onTarget[0]} on node4`)
    assert.ok(onTarget.every((b, i) => i === 0 || b === onTarget[i - 1] + 1), `it counts on: ${onTarget.slice(0, 20).join(',')}`)
    await waitFor('one QEMU of it, on node4', 20_000, () => { const p = qemuPidsFor(id); return p.length === 1 && nodeOfPid(p[0]) === 3 }, 100)
    for (const other of ids.filter((x) => x !== id)) assert.is(qemuPidsFor(other).length, 1, `one QEMU of ${other}`)
    // the leader's rebalancer did it, and said why
    assert.ok(c.nodes.some((_n, i) => c.log(i).includes('"msg":"rebalancing"')), 'the rebalancer logged its decision')
    const after = await Promise.all(['r1', 'r2', 'r3', 'r4'].map(async (n) => await show(c, 0, n)))
    assert.equal(new Set(after.map((v) => v.assignedNode)).size, 4, 'one VM on each node now')
    console.log(`  node4 joined after ${figures.joinMs} ms; ${moved.spec.name} moved live ${c.nodes[source].name} → node4 ${figures.joinToMovedMs} ms after its start, its move started ${figures.registeredToMoveMs} ms after the registration (heartbeat ${lastOnSource} → ${onTarget[0]}); ${coldMoved} kept by its cooldown${figures.cooldownDecides === 1 ? '' : ' (its id is the higher: the tie-break alone would have kept it this run)'}`)
  } finally { clearInterval(reader) }
})

test.run()
