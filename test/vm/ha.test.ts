// Failover of a VM whose host dies, through 3 real blixard-node processes and a real guest (QEMU, TCG here): kill -9 (and,
// apart, SIGSTOP) of the
// VM's host daemon, its QEMU left running → the fence watchdog kills the guest there and it runs on
// another host, never two QEMUs of that VM alive at once (sampled from /proc every 25 ms); the dead
// host restarted → back `ready` with no old guest; kill -9 of a host with no VM → nothing moves.
// Shorter lease settings through config flags (--lease-ms etc.) keep it short.
// Ports 17900-17902 (metrics 18000-18002).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cpSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec, sleep } from '../cluster/harness.ts'
import { cmdline, nodeIndex, qemuPidsFor, runningElsewhere, show, vmSuite, waitPhase } from './helpers.ts'
import { hostFenceAfterMs, leaderDownAfterMs, DEFAULT_LEASE } from '../../node/core/lease-rules.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'

const LEASE = { leaseMs: 6_000, renewEveryMs: 1_000, fenceMarginMs: 500, downMarginMs: 500 }
const S = { ...DEFAULT_LEASE, ...LEASE }
const c = new TestCluster({
  nodes: 3,
  basePort: 17900,
  extraArgs: ['--lease-ms', String(LEASE.leaseMs), '--lease-renew-every-ms', String(LEASE.renewEveryMs), '--lease-fence-margin-ms', String(LEASE.fenceMarginMs), '--lease-down-margin-ms', String(LEASE.downMarginMs)]
}, 'vm-ha')
const figures: Record<string, number> = {}
const ids: string[] = []
const watchdogPids: number[] = []

// BLIXARD_TEST_KEEP_LOGS=DIR: the nodes' logs are copied there before the cluster's dir goes
test.after(() => {
  const keep = process.env.BLIXARD_TEST_KEEP_LOGS
  if (keep != null) for (const n of c.nodes) cpSync(n.dir, join(keep, n.name), { recursive: true, filter: (f) => !f.includes('/vms/') && !f.endsWith('.mdb') })
})
const guard = vmSuite(test, c, {
  vmIds: () => ids,
  figures,
  logLines: 40,
  cleanup: () => {
    for (const pid of watchdogPids) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
  }
})

/** the most QEMUs of the VM seen alive at one time, sampled from /proc until stopped */
function sampler (vmId: string): { max: () => number, stop: () => void } {
  let max = 0
  const t = setInterval(() => { max = Math.max(max, qemuPidsFor(vmId).length) }, 25)
  return { max: () => max, stop: () => { clearInterval(t) } }
}

async function nodes (i: number): Promise<Array<{ id: string, name: string, liveness?: string, downSince?: number | null }>> {
  return await (await c.client(i)).call('node.list', {})
}

let vmId = ''
let host = -1

guard('a guest boots; every node runs its fence watchdog', async () => {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('ha1'), memoryMiB: 96, restartPolicy: 'always' } })
  vmId = vm.id
  ids.push(vm.id)
  const running = await waitPhase(c, 0, 'ha1', 'running', 120_000)
  host = nodeIndex(c, running.assignedNode)
  assert.is(qemuPidsFor(vmId).length, 1)
  for (let i = 0; i < 3; i++) {
    const pid = Number(readFileSync(watchdogPaths(c.nodes[i].dir).pidFile, 'utf8').trim())
    watchdogPids.push(pid)
    assert.ok(cmdline(pid)?.some((a) => a.includes('fence-watchdog')), `node ${i} watchdog ${pid} alive`)
  }
})

guard('kill -9 of the VM\'s host daemon: its QEMU is killed there, then the VM runs elsewhere; never two at once', async () => {
  const [oldPid] = qemuPidsFor(vmId)
  const other = [0, 1, 2].find((i) => i !== host)!
  const watch = sampler(vmId)
  try {
    const t0 = Date.now()
    c.kill(host, 'SIGKILL')
    await waitFor('the orphaned QEMU killed by the watchdog', 30_000, () => cmdline(oldPid) == null, 25)
    figures.killToFencedMs = Date.now() - t0
    const moved = await runningElsewhere(c, other, 'ha1', vmId, host, oldPid)
    figures.killToRunningElsewhereMs = Date.now() - t0
    console.log(`  kill -9 → fenced ${figures.killToFencedMs} ms (host fences ${hostFenceAfterMs(S)} ms after its last acked renewal was sent), running on ${c.nodes[nodeIndex(c, moved.assignedNode)].name} ${figures.killToRunningElsewhereMs} ms (leader marks down ${leaderDownAfterMs(S)} ms after it last saw a renewal)`)
    assert.ok(figures.killToFencedMs <= hostFenceAfterMs(S) + 2_000, `fenced within the host's deadline: ${figures.killToFencedMs} ms`)
  } finally { watch.stop() }
  assert.is(watch.max(), 1, 'never two QEMUs of the VM alive at once')
  const down = (await nodes(other)).find((n) => n.id === c.nodes[host].peerId)!
  assert.is(down.liveness, 'down')
  assert.type(down.downSince, 'number')
  // the dashboard's view: red `down` with since when
  const state = await (await fetch(`http://127.0.0.1:${18000 + other}/api/state`)).json() as { nodes: Array<{ id: string, state: string, downSince: number | null }> }
  const row = state.nodes.find((n) => n.id === c.nodes[host].peerId)!
  assert.equal([row.state, row.downSince], ['down', down.downSince])
  assert.match(readFileSync(watchdogPaths(c.nodes[host].dir).log, 'utf8'), /lease deadline passed with no renewal: killed QEMU of 1 VM/)
  const events: string[] = []
  const sub = (await c.client(other)).watch('cluster.events', {})
  const stop = setTimeout(() => { sub.cancel() }, 1_500)
  try { for await (const e of sub) events.push(e.text) } catch { /* cancelled */ } finally { clearTimeout(stop) }
  assert.ok(events.some((t) => new RegExp(`node ${c.nodes[host].name} down: lease expired at .*VMs to reschedule: ha1`).test(t)), events.join('\n'))
})

guard('the dead host restarted: back ready, no old guest there, nothing moves back', async () => {
  const before = await show(c, (host + 1) % 3, 'ha1')
  c.start(host)
  await waitFor('the host ready again', 90_000, async () => (await nodes((host + 1) % 3)).find((n) => n.id === c.nodes[host].peerId)?.liveness === 'ready', 250)
  const after = await show(c, (host + 1) % 3, 'ha1')
  assert.is(after.assignedNode, before.assignedNode)
  assert.is(qemuPidsFor(vmId).length, 1)
})

guard('SIGSTOP of the VM\'s host daemon (hung, guest alive): the same; SIGCONT: it rejoins ready with no old guest', async () => {
  const vm = await show(c, 0, 'ha1')
  const hung = nodeIndex(c, vm.assignedNode)
  const ask = [0, 1, 2].find((i) => i !== hung)!
  const [oldPid] = qemuPidsFor(vmId)
  const watch = sampler(vmId)
  try {
    const t0 = Date.now()
    c.kill(hung, 'SIGSTOP')
    await waitFor('the hung host\'s QEMU killed by the watchdog', 30_000, () => cmdline(oldPid) == null, 25)
    figures.stopToFencedMs = Date.now() - t0
    await runningElsewhere(c, ask, 'ha1', vmId, hung, oldPid)
    figures.stopToRunningElsewhereMs = Date.now() - t0
    c.nodes[hung].proc?.kill('SIGCONT')
    await waitFor('the hung host back ready', 60_000, async () => (await nodes(ask)).find((n) => n.id === c.nodes[hung].peerId)?.liveness === 'ready', 250)
    await sleep(1_000)
  } finally { watch.stop(); c.nodes[hung].proc?.kill('SIGCONT') }
  console.log(`  SIGSTOP → fenced ${figures.stopToFencedMs} ms, running elsewhere ${figures.stopToRunningElsewhereMs} ms; SIGCONT → ready again`)
  assert.is(watch.max(), 1, 'never two QEMUs of the VM alive at once')
  assert.is(qemuPidsFor(vmId).length, 1)
})

guard('kill -9 of a host with no VM: it is marked down, nothing moves', async () => {
  const vm = await show(c, 0, 'ha1')
  const vmHost = nodeIndex(c, vm.assignedNode)
  const [pid] = qemuPidsFor(vmId)
  const idle = [0, 1, 2].find((i) => i !== vmHost)!
  const ask = [0, 1, 2].find((i) => i !== vmHost && i !== idle)!
  c.kill(idle, 'SIGKILL')
  await waitFor('the idle host marked down', 60_000, async () => (await nodes(ask)).find((n) => n.id === c.nodes[idle].peerId)?.liveness === 'down', 250)
  await sleep(1_000)
  const again = await show(c, ask, 'ha1')
  assert.is(again.assignedNode, vm.assignedNode)
  assert.is(again.status.phase, 'running')
  assert.equal(qemuPidsFor(vmId), [pid], 'the same QEMU, untouched')
  assert.ok(cmdline(pid) != null)
  assert.ok(join(c.nodes[idle].dir) !== '')
})

test.run()
