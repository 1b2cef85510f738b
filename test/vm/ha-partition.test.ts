// Issue 14, the partition: 3 real blixard-node processes, each in its own network namespace joined
// by a bridge in a "switch" namespace (10.79.0.x/24; the test reaches them through one veth of its
// own), a real guest under QEMU. The VM's host is cut off (its switch port down) with its daemon
// alive: it stops the guest itself when its lease runs out, the others mark it down and run the VM
// elsewhere — never two QEMUs of it alive at once — and healing the link brings the host back
// `ready` with no old guest. Needs root and `ip netns`. Lease 6 s (--lease-* flags).
// Ports 17930-17932.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { cpSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec, sleep } from '../cluster/harness.ts'
import { cmdline, nodeIndex, qemuPidsFor, show, waitPhase } from './helpers.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'

const tag = `bh${process.pid % 100000}`
const SW = `${tag}sw`
const NS = [1, 2, 3].map((i) => `${tag}n${i}`)
const ROOT_VETH = `${tag}r`
const ipOf = (i: number): string => `10.79.0.${i + 1}`
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const LEASE = ['--lease-ms', '6000', '--lease-renew-every-ms', '1000', '--lease-fence-margin-ms', '500', '--lease-down-margin-ms', '500']

const c = new TestCluster({ nodes: 3, basePort: 17930, extraArgs: LEASE }, 'vm-ha-partition')
const figures: Record<string, number> = {}
let vmId = ''
let failed = false

function attach (ns: string, veth: string, addr: string): void {
  ip('netns', 'add', ns)
  ip('-n', SW, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
  ip('-n', SW, 'link', 'set', veth, 'master', 'br0')
  ip('-n', SW, 'link', 'set', veth, 'up')
  ip('-n', ns, 'link', 'set', 'lo', 'up')
  ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
  ip('-n', ns, 'link', 'set', 'eth0', 'up')
}

function teardown (): void {
  for (const ns of [...NS, SW]) { try { ip('netns', 'del', ns) } catch { /* not created */ } }
  try { ip('link', 'del', ROOT_VETH) } catch { /* gone with the switch */ }
}
process.on('exit', teardown)

test.before(async () => {
  ip('netns', 'add', SW)
  ip('-n', SW, 'link', 'set', 'lo', 'up')
  ip('-n', SW, 'link', 'add', 'br0', 'type', 'bridge')
  ip('-n', SW, 'link', 'set', 'br0', 'up')
  NS.forEach((ns, i) => { attach(ns, `v${i + 1}`, ipOf(i)) })
  // the test's own port on the switch: its RPC client dials the nodes' 10.79.0.x addresses
  ip('link', 'add', ROOT_VETH, 'type', 'veth', 'peer', 'name', 'r0', 'netns', SW)
  ip('-n', SW, 'link', 'set', 'r0', 'master', 'br0')
  ip('-n', SW, 'link', 'set', 'r0', 'up')
  ip('addr', 'add', '10.79.0.100/24', 'dev', ROOT_VETH)
  ip('link', 'set', ROOT_VETH, 'up')
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
    ip('-n', SW, 'link', 'set', `v${host + 1}`, 'down')
    await waitFor('the cut-off host stopping its own guest', 30_000, () => cmdline(oldPid) == null, 25)
    figures.cutToFencedMs = Date.now() - t0
    await waitFor('the VM running on another host', 120_000, async () => {
      const v = await show(c, ask, 'part1')
      const pids = qemuPidsFor(vmId)
      return v.status.phase === 'running' && v.assignedNode !== c.nodes[host].peerId && pids.length === 1 && pids[0] !== oldPid ? v : null
    }, 200)
    figures.cutToRunningElsewhereMs = Date.now() - t0
    assert.is(await liveness(ask, host), 'down')
    ip('-n', SW, 'link', 'set', `v${host + 1}`, 'up')
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
