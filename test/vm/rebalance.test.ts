// The scheduler moving real guests (issue 19), through real blixard-node processes and real tiny
// guests (QEMU, TCG here) printing a heartbeat counter: `vm migrate --cold` of a running VM goes
// through the release handshake (the target starts its QEMU only after the source reported the guest
// gone; never two QEMUs of it), then a 4th node joins the unbalanced 3-node cluster and the leader's
// rebalancer (BLIXARD_REBALANCE=on) fills it by a live migration: the counter goes on, one QEMU.
// (`rebalance --dry-run`/`--apply` run in test/ops/preempt.test.ts, on a cluster whose automatic
// rebalancer is off: here it would race the operator's plan.)
//
// The numbers: each node offers 1 vCPU (× 4 overcommit) and 192 MiB, so a 96 MiB guest fills a
// quarter of it ((1/4 + 96/192) / 3 = 0.25, the mean of cpu, memory and disk fractions) and two fill
// it. The 4 guests sit 2/1/1: the variance of fill is 0.0139, below the rebalancer's start threshold
// (0.02), and no move could lower it. Node 4 joining empty makes it 0.031: the rebalancer starts and
// one move to the new node ends it at 0. BLIXARD_REBALANCE_HOT_PCT=100: the nodes share this host's
// load average, which would make every one of them too hot to take a VM.
// Ports 27300-27303 (metrics 27400-27403).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, logTime, runCli, vmSpec, waitFor, leaseArgs } from '../cluster/harness.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { cmdline, nodeIndex, qemuPidsFor, runtimeDir, show, vmSuite } from './helpers.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'

const HEARTBEAT_MS = 200
// leases long enough that a host starved on a loaded test machine is not fenced mid-test (15 s
// fenced every guest at load 37); no host is killed here, so a long lease costs nothing
const LEASE = leaseArgs({ leaseMs: 30_000 })
const NODE_ENV = { BLIXARD_REBALANCE: 'on', BLIXARD_REBALANCE_HOT_PCT: '100' }
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

async function create (name: string, group: string | null): Promise<void> {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec(name), memoryMiB: 96, antiAffinityGroup: group, kernelParams: [`blix.heartbeat=${HEARTBEAT_MS}`] } })
  ids.push(vm.id)
  vms[name] = vm
}
const placedOn = async (name: string): Promise<number> => await waitFor(`${name} placed`, 60_000, async () => { const v = await show(c, 0, name); return v.assignedNode == null ? null : nodeIndex(c, v.assignedNode) }, 100)

guard('vm migrate --cold of a running VM: the target starts it only once the source reported it gone; never two QEMUs', async () => {
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

  // r1 moves cold beside r3 (2/1/1 again, nothing for the rebalancer to gain); QEMUs counted meanwhile
  const id = vms.r1.id
  const [oldPid] = qemuPidsFor(id)
  let most = 0
  const counter = setInterval(() => { most = Math.max(most, qemuPidsFor(id).length) }, 20)
  const t1 = Date.now()
  const r = await runCli(['vm', 'migrate', 'r1', '--cold', '--to', c.nodes[y].name, '--wait', '--json'], c.cliEnv(z), 120_000).finally(() => { clearInterval(counter) })
  figures.coldMoveMs = Date.now() - t1
  assert.is(r.code, 0, `vm migrate --cold: ${r.stderr}\n${r.stdout}`)
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { how: string, phase: string, node: string }
  assert.equal([last.how, last.phase, last.node], ['cold', 'running', c.nodes[y].name])
  assert.ok(most <= 1, `at most one QEMU of r1 at any time, saw ${most}`)
  const pid = await waitFor('one QEMU of r1, on its new node', 20_000, () => { const p = qemuPidsFor(id); return p.length === 1 && nodeOfPid(p[0]) === y ? p[0] : null }, 100)
  assert.ok(pid !== oldPid)
  // the handshake in the agents' own logs: the source released it before the target started QEMU
  const released = await waitFor('the source\'s release in its log', 10_000, () => logTime(c.log(x).split('\n').filter((l) => l.includes(id)).join('\n'), 'guest gone: releasing a VM taken off this host'), 100)
  const started = logTime(c.log(y).split('\n').filter((l) => l.includes(id)).join('\n'), 'qemu started')
  assert.ok(started != null && started >= released, `target started ${started} after the source released ${released}`)
  const v = await show(c, 0, 'r1')
  assert.equal([v.assignedNode, v.status.phase, v.releasing ?? null], [c.nodes[y].peerId, 'running', null])
  // a cold move reboots: the counter starts again
  const fresh = await waitFor('r1 counting on its new node', 60_000, () => { const b = beats(y, id); return b.length >= 2 ? b : null }, 200)
  assert.ok(fresh[0] <= 2, `a fresh boot counts from the start: ${fresh.slice(0, 5).join(',')}`)
  console.log(`  cold move ${c.nodes[x].name} → ${c.nodes[y].name}: ${figures.coldMoveMs} ms (CLI included); released at +${released - t1} ms, target QEMU at +${started - t1} ms`)
})

guard('a 4th node joins the unbalanced cluster: the rebalancer fills it by a live migration; the heartbeat goes on, one QEMU', async () => {
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
    // the leader looks every 15 s, then the move itself
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
    console.log(`  node4 joined after ${figures.joinMs} ms; ${moved.spec.name} moved live ${c.nodes[source].name} → node4 ${figures.joinToMovedMs} ms after its start (heartbeat ${lastOnSource} → ${onTarget[0]})`)
  } finally { clearInterval(reader) }
})

test.run()
