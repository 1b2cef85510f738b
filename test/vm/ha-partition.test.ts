// Failover when the VM's host is partitioned away: 3 real blixard-node processes, each in its own network namespace joined
// by a bridge in a "switch" namespace (10.79.0.x/24; the test reaches them through one veth of its
// own), a real guest under QEMU. The VM's host is cut off (its switch port down) with its daemon
// alive: it stops the guest itself when its lease runs out, the others mark it down and run the VM
// elsewhere — never two QEMUs of it alive at once — and healing the link brings the host back
// `ready` with no old guest. Needs root and `ip netns`. Lease 6 s (--lease-* flags).
// Ports 17930-17932.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cpSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec, sleep } from '../cluster/harness.ts'
import { cmdline, nodeIndex, qemuPidsFor, runningElsewhere, waitPhase } from './helpers.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'
import { NetnsSwitch } from '../cluster/netns-switch.ts'

const net = new NetnsSwitch(`bh${process.pid % 100000}`, '10.79.0')
const NS = [1, 2, 3].map((i) => `${net.tag}n${i}`)
const ipOf = (i: number): string => net.addr(i + 1)
const LEASE = ['--lease-ms', '6000', '--lease-renew-every-ms', '1000', '--lease-fence-margin-ms', '500', '--lease-down-margin-ms', '500']

const c = new TestCluster({ nodes: 3, basePort: 17930, extraArgs: LEASE }, 'vm-ha-partition')
const figures: Record<string, number> = {}
let vmId = ''
let failed = false

const teardown = (): void => { net.teardown() }
process.on('exit', teardown)

test.before(async () => {
  net.up()
  NS.forEach((ns, i) => { net.attach(ns, `v${i + 1}`, i + 1) })
  // the test's own port on the switch: its RPC client dials the nodes' 10.79.0.x addresses
  net.attachRoot(`${net.tag}r`, 100)
  await c.prepare()
  c.nodes.forEach((n, i) => { n.addr = `/ip4/${ipOf(i)}/tcp/${n.port}/p2p/${n.peerId}` })
  for (const i of [0, 1, 2]) c.start(i, ['--listen', `/ip4/${ipOf(i)}/tcp/${c.nodes[i].port}`], c.keyFile, {}, ['ip', 'netns', 'exec', NS[i]])
  await waitFor('3 voters and a leader', 120_000, async () => await c.agreed([0, 1, 2], 3), 250)
})

test.after(async () => {
  if (failed) console.log(c.logTails(40))
  const keep = process.env.BLIXARD_TEST_KEEP_LOGS
  if (keep != null) for (const n of c.nodes) cpSync(n.dir, join(keep, n.name), { recursive: true, filter: (f) => !f.includes('/vms/') && !f.endsWith('.mdb') })
  const watchdogs = c.nodes.map((n) => { try { return Number(readFileSync(watchdogPaths(n.dir).pidFile, 'utf8').trim()) } catch { return 0 } })
  await c.stop()
  for (const pid of [...qemuPidsFor(vmId), ...watchdogs.filter((p) => p > 1 && cmdline(p)?.some((a) => a.includes('fence-watchdog')) === true)]) try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
  teardown()
  console.log(`  figures: ${JSON.stringify(figures)}`)
})

const guard = (name: string, fn: () => Promise<void>): void => { test(name, async () => { try { await fn() } catch (err) { failed = true; throw err } }) }

async function liveness (ask: number, node: number): Promise<string | undefined> {
  const list: Array<{ id: string, liveness?: string }> = await (await c.client(ask)).call('node.list', {})
  return list.find((n) => n.id === c.nodes[node].peerId)?.liveness
}

guard('the VM\'s host cut off: it stops its guest, the VM runs elsewhere, never two at once; healed: back ready, no old guest', async () => {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('part1'), memoryMiB: 96, restartPolicy: 'always' } })
  vmId = vm.id
  const running = await waitPhase(c, 0, 'part1', 'running', 120_000)
  const host = nodeIndex(c, running.assignedNode)
  const ask = [0, 1, 2].find((i) => i !== host)!
  const [oldPid] = qemuPidsFor(vmId)
  let max = 0
  const sampler = setInterval(() => { max = Math.max(max, qemuPidsFor(vmId).length) }, 25)
  try {
    const t0 = Date.now()
    net.setPort(`v${host + 1}`, false)
    await waitFor('the cut-off host stopping its own guest', 30_000, () => cmdline(oldPid) == null, 25)
    figures.cutToFencedMs = Date.now() - t0
    await runningElsewhere(c, ask, 'part1', vmId, host, oldPid)
    figures.cutToRunningElsewhereMs = Date.now() - t0
    assert.is(await liveness(ask, host), 'down')
    net.setPort(`v${host + 1}`, true)
    const t1 = Date.now()
    await waitFor('the healed host ready again', 90_000, async () => await liveness(ask, host) === 'ready', 250)
    figures.healToReadyMs = Date.now() - t1
    await sleep(1_000)
  } finally { clearInterval(sampler) }
  console.log(`  cut off → fenced ${figures.cutToFencedMs} ms, running elsewhere ${figures.cutToRunningElsewhereMs} ms; healed → ready ${figures.healToReadyMs} ms`)
  assert.is(max, 1, 'never two QEMUs of the VM alive at once')
  const pids = qemuPidsFor(vmId)
  assert.is(pids.length, 1, 'one QEMU after the heal: the old host runs no old guest')
  assert.ok(!(cmdline(pids[0]) ?? []).some((a) => a.includes(c.nodes[host].dir)), 'and it is not on the healed host')
  // the daemon fenced too (the watchdog, at the same deadline, may have stopped the guest first)
  assert.match(c.log(host), /stopped every guest on this host|no guest of this host left to stop/)
})

test.run()
