// The four real-process HA scenarios, each judged on the guest's disk. 3 real
// blixard-node processes, each in its own network namespace with two links: a cluster network
// (10.74.0.x, the Raft/libp2p traffic and the test's RPC) and a storage network (10.75.0.x) on which
// the test's single-host Ceph listens. One guest (QEMU, TCG here) whose data disk is an RBD image:
// it counts its boots on it, and its disk writer appends `counter host boot-id` every 100 ms to a log
// after its filesystem, one region per boot (scripts/build-tiny-guest.sh). One cluster, one VM, one
// volume for all four scenarios, in turn:
//   1. kill -9 of the VM's host daemon, its QEMU left running; then the host restarted;
//   2. SIGSTOP of the VM's host daemon (hung, its guest alive); then SIGCONT;
//   3. the VM's host cut off from the other two (its cluster link down; Ceph still reachable, so
//      only the fences keep its guest off the disk); then healed;
//   4. kill -9 of a host that holds no VM.
// In 1-3 the guest is stopped on the old host (the fence watchdog, or the cut-off daemon itself),
// the VM runs on another host within a bound, that host fences the old disk holder before opening
// the disk (blocklist, lock broken: the storage guard), the guest reads its data back (boots=n),
// never two QEMUs of the VM are alive at once (sampled from /proc every 25 ms), and the old host
// comes back `ready` with no old guest. In 4 nothing moves. After each, the image is exported and
// judged by node/qemu/disk-writer-log.ts: the counter never goes backwards, no two writers
// interleave, and the writers are exactly the hosts the VM ran on, in order.
// Needs root, `ip netns`, Ceph 16 and QEMU. Lease 6 s (--lease-* flags). Ports 17950-17952
// (metrics 18050-18052).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { TestCluster, waitFor, vmSpec, sleep, leaseArgs } from '../cluster/harness.ts'
import { NetnsSwitch } from '../cluster/netns-switch.ts'
import { cmdline, nodeIndex, qemuPidsFor, show } from '../vm/helpers.ts'
import { parseDiskBoots, parseWriterStart } from '../../node/qemu/tiny-guest.ts'
import { watchdogPaths } from '../../node/ha/watchdog.ts'
import { DEFAULT_LEASE, hostFenceAfterMs, leaderDownAfterMs } from '../../node/core/lease-rules.ts'
import type { WriterVerdict } from '../../node/qemu/disk-writer-log.ts'
import { cephVmSuite } from './ceph-vm.ts'

const LEASE = { leaseMs: 6_000, renewEveryMs: 1_000, fenceMarginMs: 500, downMarginMs: 500 }
const S = { ...DEFAULT_LEASE, ...LEASE }
const LEASE_ARGS = leaseArgs(LEASE)
/** the watchdog polls every 100 ms and a loaded host is slow to reap: slack past the host's deadline */
const FENCE_SLACK_MS = 2_500
/**
 * Bound on "the VM runs elsewhere": the leader marks the host down at most leaderDownAfterMs past the
 * last renewal it saw (≤ one renew interval before the failure), then placement, the storage fence
 * (blocklist, lock broken) and a TCG boot to the guest's disk writer on a loaded 2-core machine.
 */
const RUNNING_ELSEWHERE_BOUND_MS = leaderDownAfterMs(S) + S.renewEveryMs + 45_000
/** bound on one write through the RPC API (the client's default, 6 s, was exceeded at load 27) */
const WRITE_TIMEOUT_MS = 60_000
/** records the new writer must have put down before the disk is judged (one per 100 ms, plus its dd) */
const NEW_WRITER_RECORDS = 3

const net = new NetnsSwitch(`bh${process.pid % 100000}`, '10.74.0')
const store = new NetnsSwitch(`bs${process.pid % 100000}`, '10.75.0')
const NS = [1, 2, 3].map((i) => `${net.tag}n${i}`)
/** the test's own address on each network (host .100): its RPC client, and Ceph */
const ROOT_HOST = 100
const c = new TestCluster({ nodes: 3, basePort: 17950, extraArgs: LEASE_ARGS }, 'ha-disk')
const VOL = `hadata${process.pid % 10000}`
const figures: Record<string, number> = {}
process.on('exit', () => { net.teardown(); store.teardown() })

/** node i in its namespace, listening (and known to the others: every bootstrap address) on its cluster address */
function startIn (i: number, extra: string[] = []): void {
  c.nodes.forEach((n, j) => { n.addr = `/ip4/${net.addr(j + 1)}/tcp/${n.port}/p2p/${n.peerId}` })
  c.start(i, [...extra, '--listen', `/ip4/${net.addr(i + 1)}/tcp/${c.nodes[i].port}`], c.keyFile, {}, ['ip', 'netns', 'exec', NS[i]])
}
let cephArgs: string[] = []

const s = cephVmSuite(test, c, {
  vm: 'havm',
  figures,
  net: {
    cephAddr: store.addr(ROOT_HOST),
    up: () => {
      net.up()
      store.up()
      NS.forEach((ns, i) => { net.attach(ns, `v${i + 1}`, i + 1); store.join(ns, `s${i + 1}`, i + 1, 'eth1') })
      net.attachRoot(`${net.tag}r`, ROOT_HOST)
      store.attachRoot(`${store.tag}r`, ROOT_HOST)
    },
    start: (i, extra) => { cephArgs = extra; startIn(i, extra) },
    down: () => { net.teardown(); store.teardown() }
  },
  cleanup: () => {
    for (const n of c.nodes) {
      try { const pid = Number(readFileSync(watchdogPaths(n.dir).pidFile, 'utf8').trim()); if (cmdline(pid)?.some((a) => a.includes('fence-watchdog')) === true) process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
})

const others = (i: number): number[] => [0, 1, 2].filter((x) => x !== i)

async function liveness (ask: number, node: number): Promise<{ liveness?: string, downSince?: number | null } | undefined> {
  const list: Array<{ id: string, liveness?: string, downSince?: number | null }> = await (await c.client(ask)).call('node.list', {})
  return list.find((n) => n.id === c.nodes[node].peerId)
}

/** the console text of the newest boot on node i (the runtime dir may keep an earlier boot's) */
function lastBoot (i: number, marker: string): string {
  const text = s.serial(i)
  const at = text.lastIndexOf(marker)
  return at < 0 ? '' : text.slice(at)
}

/** the hosts that wrote the disk, in order: the judge must find exactly these writers */
const writers: string[] = []

/** Reads the writer log off the image, judges it, prints the writers: the counter never back, no interleaving, the expected hosts. */
async function judge (label: string): Promise<WriterVerdict> {
  const t0 = Date.now()
  const v = await s.judgeDisk(VOL)
  figures.judgeDiskMs = Date.now() - t0
  console.log(`  ${label}: disk writer log ${v.writers.map((w) => `${w.host} ${w.first}..${w.last}`).join(', ')} (read off the image and judged in ${figures.judgeDiskMs} ms)`)
  assert.equal(v.problems, [], 'the counter never goes backwards, no two writers interleave')
  assert.equal(v.writers.map((w) => w.host), writers, 'the hosts the VM ran on, in order, one writer each')
  return v
}

interface Moved { to: number, fencedMs: number, runningMs: number }

/**
 * The shared part of scenarios 1-3: `act` takes the VM's host out; the guest must be stopped there
 * (within the host's fence deadline), the VM run on another host (within the bound) from the same
 * disk, after that host fenced the old disk holder; never two QEMUs of the VM alive at once.
 * `recover` then brings the old host back; it must be `ready` with no old guest. The disk is judged.
 */
async function moveOff (label: string, key: string, act: (host: number) => void, recover: (host: number) => Promise<void> | void): Promise<Moved> {
  const vmId = s.vmId()
  // retried: a node that just rejoined may not know the leader yet
  const host = nodeIndex(c, (await s.runningOn(0, null, 60_000)).assignedNode)
  const ask = others(host)[0]
  const [oldPid] = qemuPidsFor(vmId)
  assert.ok(oldPid != null, 'the guest runs before the scenario')
  const fencedBefore = c.nodes.map((_n, i) => (c.log(i).match(/fenced the previous holder of a volume/g) ?? []).length)
  let max = 0
  const sampler = setInterval(() => { max = Math.max(max, qemuPidsFor(vmId).length) }, 25)
  let moved: Moved
  try {
    const t0 = Date.now()
    act(host)
    await waitFor(`the old host's QEMU stopped (${label})`, 30_000, () => cmdline(oldPid) == null, 25)
    const fencedMs = Date.now() - t0
    const vm = await s.runningOn(ask, host, RUNNING_ELSEWHERE_BOUND_MS)
    const to = nodeIndex(c, vm.assignedNode)
    const boots = await waitFor('boots= on the new host\'s console', 60_000, () => parseDiskBoots(lastBoot(to, 'BLIXARD-DISK ')), 250)
    const start = await waitFor('the new disk writer started', 60_000, () => parseWriterStart(lastBoot(to, 'BLIXARD-WRITER ')), 250)
    const runningMs = Date.now() - t0
    moved = { to, fencedMs, runningMs }
    console.log(`  ${label}: fenced after ${(fencedMs / 1000).toFixed(1)} s, running on ${c.nodes[to].name} (its disk writer started) after ${(runningMs / 1000).toFixed(1)} s, boots=${boots}`)
    assert.ok(fencedMs <= hostFenceAfterMs(S) + FENCE_SLACK_MS, `stopped within the host's fence deadline (${hostFenceAfterMs(S)} ms + ${FENCE_SLACK_MS} ms slack): ${fencedMs} ms`)
    assert.ok(runningMs <= RUNNING_ELSEWHERE_BOUND_MS, `running elsewhere within ${RUNNING_ELSEWHERE_BOUND_MS} ms: ${runningMs} ms`)
    assert.is(boots, writers.length + 1, 'the same disk: the guest found every earlier boot recorded')
    assert.equal([start.host, start.region], [c.nodes[to].name, writers.length], 'the new writer names its host and takes the next region')
    const fencedAfter = (c.log(to).match(/fenced the previous holder of a volume/g) ?? []).length
    assert.ok(fencedAfter > fencedBefore[to], 'the new host cut off the old disk holder before opening the disk')
    writers.push(c.nodes[to].name)
    await sleep(NEW_WRITER_RECORDS * 200)
    const t1 = Date.now()
    await recover(host)
    await waitFor(`${c.nodes[host].name} ready again`, 90_000, async () => (await liveness(ask, host))?.liveness === 'ready', 250)
    const readyMs = Date.now() - t1
    await sleep(1_000) // a guest wrongly resumed there would show in the sampler
    console.log(`  ${label}: ${c.nodes[host].name} back ready after ${(readyMs / 1000).toFixed(1)} s`)
    figures[`${key}ToFencedMs`] = fencedMs
    figures[`${key}ToRunningElsewhereMs`] = runningMs
    figures[`${key}ReadyAgainMs`] = readyMs
  } finally { clearInterval(sampler) }
  assert.is(max, 1, 'never two QEMUs of the VM alive at once')
  const pids = qemuPidsFor(vmId)
  assert.is(pids.length, 1, 'one QEMU after the old host came back')
  assert.ok(!(cmdline(pids[0]) ?? []).some((a) => a.includes(c.nodes[host].dir)), 'and not on the old host: no old guest resumed')
  assert.is(nodeIndex(c, (await show(c, ask, 'havm')).assignedNode), moved.to, 'nothing moved back')
  await judge(label)
  return moved
}

s.guard('a VM with an RBD data disk boots, counts its first boot there, and its disk writer starts naming its host; every node runs its fence watchdog', async () => {
  await waitFor('3 nodes ready', 60_000, async () => {
    const l = await Promise.all([0, 1, 2].map(async (i) => (await liveness(0, i))?.liveness))
    return l.every((x) => x === 'ready')
  }, 250)
  const cl = await c.client(0)
  // a write commits through Raft (and creates the image on Ceph): seconds on a loaded 2-core host
  await cl.call('volume.create', { name: VOL, sizeGiB: 1 }, { timeoutMs: WRITE_TIMEOUT_MS })
  const created = await cl.call('vm.create', { spec: { ...vmSpec('havm'), memoryMiB: 96, volumes: [VOL], restartPolicy: 'always' } }, { timeoutMs: WRITE_TIMEOUT_MS })
  s.setVmId(created.id)
  const host = nodeIndex(c, (await s.runningOn(0, null, 180_000)).assignedNode)
  assert.is(await waitFor('boots= on the console', 60_000, () => parseDiskBoots(s.serial(host)), 250), 1)
  assert.equal(await waitFor('the disk writer started', 60_000, () => parseWriterStart(s.serial(host)), 250), { host: c.nodes[host].name, region: 0, from: 1 })
  assert.ok(await s.rbd().lockHolder('rbd', VOL) != null, 'the guest holds the image\'s exclusive lock')
  for (let i = 0; i < 3; i++) {
    const pid = Number(readFileSync(watchdogPaths(c.nodes[i].dir).pidFile, 'utf8').trim())
    assert.ok(cmdline(pid)?.some((a) => a.includes('fence-watchdog')), `node ${i} watchdog ${pid} alive`)
  }
  writers.push(c.nodes[host].name)
  await sleep(NEW_WRITER_RECORDS * 200)
  await judge('first boot')
})

s.guard('kill -9 of the VM\'s host daemon, its QEMU left running: fenced there, runs elsewhere from the same disk; the host restarted comes back ready with no old guest', async () => {
  let killed = -1
  const events: string[] = []
  await moveOff('kill -9', 'kill', (host) => { killed = host; c.kill(host, 'SIGKILL') }, async (host) => {
    // seen before the host comes back: down since when, in the API, the dashboard and the events
    const ask = others(host)[0]
    const down = await liveness(ask, host)
    assert.is(down?.liveness, 'down')
    assert.type(down?.downSince, 'number')
    const state = JSON.parse(execFileSync('ip', ['netns', 'exec', NS[ask], 'busybox', 'wget', '-qO-', `http://127.0.0.1:${c.nodes[ask].metricsPort}/api/state`], { encoding: 'utf8', timeout: 10_000 })) as { nodes: Array<{ id: string, state: string, downSince: number | null }> }
    const row = state.nodes.find((n) => n.id === c.nodes[host].peerId)
    assert.equal([row?.state, row?.downSince], ['down', down?.downSince], 'the dashboard shows it down, since the same time')
    const sub = (await c.client(ask)).watch('cluster.events', {})
    const stop = setTimeout(() => { sub.cancel() }, 1_500)
    try { for await (const e of sub) events.push(e.text) } catch { /* cancelled */ } finally { clearTimeout(stop) }
    startIn(host, cephArgs)
  })
  assert.match(readFileSync(watchdogPaths(c.nodes[killed].dir).log, 'utf8'), /lease deadline passed with no renewal: killed QEMU of 1 VM/, 'the watchdog, not the dead daemon, stopped the guest')
  assert.ok(events.some((t) => new RegExp(`node ${c.nodes[killed].name} down: lease expired at .*VMs to reschedule: havm`).test(t)), events.join('\n'))
})

s.guard('SIGSTOP of the VM\'s host daemon (hung, its guest alive): the same; SIGCONT: it cleans up and comes back ready with no old guest', async () => {
  let hung = -1
  try {
    await moveOff('SIGSTOP', 'stop', (host) => { hung = host; c.nodes[host].proc?.kill('SIGSTOP') }, (host) => { c.nodes[host].proc?.kill('SIGCONT') })
  } finally { if (hung >= 0) c.nodes[hung].proc?.kill('SIGCONT') }
})

s.guard('the VM\'s host cut off from the other two (its link down, daemon alive, Ceph still reachable): it stops its own guest, the VM runs elsewhere; healed: back ready, no old guest', async () => {
  let cut = -1
  try {
    await moveOff('cut off', 'cut', (host) => { cut = host; net.setPort(`v${host + 1}`, false) }, (host) => { net.setPort(`v${host + 1}`, true) })
  } finally { if (cut >= 0) net.setPort(`v${cut + 1}`, true) }
  // the daemon fenced too (the watchdog, at the same deadline, may have stopped the guest first)
  assert.match(c.log(cut), /stopped every guest on this host|no guest of this host left to stop/)
})

s.guard('kill -9 of a host with no VM: it is marked down, nothing moves, the same writer goes on', async () => {
  const vmId = s.vmId()
  const vm = await s.runningOn(0, null, 60_000)
  const vmHost = nodeIndex(c, vm.assignedNode)
  const [pid] = qemuPidsFor(vmId)
  const [idle, ask] = others(vmHost)
  const before = (await s.judgeDisk(VOL)).writers.at(-1)!
  const t0 = Date.now()
  c.kill(idle, 'SIGKILL')
  await waitFor('the idle host marked down', 60_000, async () => (await liveness(ask, idle))?.liveness === 'down', 250)
  figures.idleKillToDownMs = Date.now() - t0
  await sleep(1_000)
  console.log(`  kill -9 of ${c.nodes[idle].name} (no VM): marked down after ${(figures.idleKillToDownMs / 1000).toFixed(1)} s; the VM stays on ${c.nodes[vmHost].name}`)
  const again = await show(c, ask, 'havm')
  assert.is(again.assignedNode, vm.assignedNode)
  assert.is(again.status.phase, 'running')
  assert.equal(qemuPidsFor(vmId), [pid], 'the same QEMU, untouched')
  const after = (await judge('kill -9 of a host with no VM')).writers.at(-1)!
  assert.equal([after.host, after.boot], [before.host, before.boot], 'the same writer')
  assert.ok(after.last > before.last, `and it went on writing: ${before.last} → ${after.last}`)
})

test.run()
