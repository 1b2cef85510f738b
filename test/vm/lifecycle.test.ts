// A VM's life, its spec updates, memory snapshots and restart policies, through 3 real blixard-node
// processes and real guests (TCG here), on one cluster (its start costs more than most cases here):
// - create --wait → the marker on its console and its qemu on the node placement chose (and only
//   there) → stop (qemu gone) → start (a new qemu, the marker again) → delete (no qemu, no runtime
//   dir, no TAP left). The CLI runs create --wait and logs; the other steps use RPC (what the CLI
//   calls) because each CLI process costs seconds to start on a loaded host.
// - a changed spec is applied, never silently ignored (microvm.nix#94): `blixard vm update NAME
//   --memory 192M --wait` on a running guest → its host restarts it with the new spec (qemu argv
//   `-m 192`, one qemu, the marker).
// - memory snapshots of a guest printing a heartbeat counter on its console: a snapshot
//   (vm.snapshot, what `blixard vm snapshot` calls) saves it on its host (a local file there, said
//   so in the record), the counter goes on, `blixard vm restore` rolls the guest back (its first
//   counter after the restore follows the one at the save, well below where it had got to), in
//   exactly one QEMU; a snapshot delete removes the file and leaves the guest's one QEMU; a VM's
//   delete removes its snapshots' files and leaves no QEMU.
// - kill -9 of a qemu → restarted under `always` (new pid, the marker again); under `never` a
//   killed guest ends `failed` and stays down; under `on-failure` a guest that powers itself off
//   ends `stopped` and stays down; SIGTERM and restart of the blixard-node hosting a guest → the
//   same qemu keeps running, is re-adopted, reported running, never duplicated.
// Ports 17610-17612 (metrics 17710-17712).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { TestCluster, waitFor, runCli, vmSpec, sleep } from '../cluster/harness.ts'
import type { RestartPolicy } from '../../protocols/model.ts'
import { parseHeartbeats } from '../../node/qemu/tiny-guest.ts'
import type { VmSnapshotRecord } from '../../protocols/snapshots.ts'
import { cmdline, consoleText, consoleViaCli, links, MARKER, memoryArg, nodeIndex, nodesWithRuntimeDir, pidFile, qemuPidsFor, runtimeDir, show, vmSuite, waitPhase } from './helpers.ts'

// A 60 s lease (the default is 9 s; the nodes inherit it): this file is about guests, and at load
// ~43 the fence watchdog of a daemon late to renew killed a guest mid-test
process.env.BLIXARD_LEASE_MS = '60000'

const HEARTBEAT_MS = 100
const c = new TestCluster({ nodes: 3, basePort: 17610 }, 'vm-life')
const figures: Record<string, number> = {}
const ids: string[] = []
let vmId = ''
let host = -1
let firstPid = 0

const guard = vmSuite(test, c, { vmIds: () => ids, figures, logLines: 30 })

// A VM's whole life

guard('vm create --wait: running, the marker on its console, its qemu on the chosen node only', async () => {
  const r = await runCli(['vm', 'create', 'life', '--memory', '96M', '--wait', '--json', '--timeout', '90'], c.cliEnv(1), 100_000)
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  const vm = r.json as { id: string, status: { phase: string }, assignedNode: string }
  assert.is(vm.status.phase, 'running')
  vmId = vm.id
  ids.push(vm.id)
  host = nodeIndex(c, vm.assignedNode)
  figures.createToRunningMs = r.ms
  console.log(`  create → running via CLI: ${r.ms} ms, placed on ${c.nodes[host].name}`)
  // the runtime dir exists on that node only
  assert.equal(nodesWithRuntimeDir(c, vmId), [host])
  const pid = pidFile(c, host, vmId)
  assert.ok(pid != null && pid > 0, 'qemu.pid written')
  const argv = cmdline(pid)
  assert.ok(argv != null, `qemu ${pid} alive`)
  assert.ok(argv[0].includes('qemu-system'), argv[0])
  assert.ok(argv.join(' ').includes(runtimeDir(c, host, vmId)), "qemu's sockets live in the chosen node's runtime dir")
  assert.equal(qemuPidsFor(vmId), [pid], 'exactly one qemu for the VM on this host')
  firstPid = pid
  // the console through the CLI (asked of another node: proxied to the host)
  const text = await consoleViaCli(c, (host + 1) % 3, 'life')
  assert.ok(text.includes(MARKER), `marker in the console:\n${text.slice(-500)}`)
})

guard('vm stop: the qemu exits, phase stopped, the runtime dir stays (console kept)', async () => {
  const t0 = Date.now()
  await (await c.client(0)).call('vm.stop', { vm: 'life' })
  await waitPhase(c, 0, 'life', 'stopped', 30_000)
  figures.stopMs = Date.now() - t0
  console.log(`  stop → stopped (RPC): ${figures.stopMs} ms`)
  await waitFor('qemu gone', 10_000, () => cmdline(firstPid) == null && qemuPidsFor(vmId).length === 0)
  const vm = await show(c, 0, 'life')
  assert.is(vm.status.phase, 'stopped')
  assert.is(vm.desired, 'stopped')
  assert.equal(nodesWithRuntimeDir(c, vmId), [host])
})

guard('vm start: a new qemu on the same node, running, the marker printed again', async () => {
  const t0 = Date.now()
  await (await c.client(2)).call('vm.start', { vm: 'life' })
  await waitPhase(c, 2, 'life', 'running', 90_000)
  figures.startMs = Date.now() - t0
  console.log(`  start → running (RPC): ${figures.startMs} ms`)
  const vm = await show(c, 0, 'life')
  assert.is(nodeIndex(c, vm.assignedNode), host, 'a stopped VM keeps its placement')
  const pids = qemuPidsFor(vmId)
  assert.is(pids.length, 1)
  assert.is.not(pids[0], firstPid)
  assert.is(pidFile(c, host, vmId), pids[0])
  // vm logs shows the current boot; the driver kept the previous one as serial.log.1
  const text = await consoleText(c, host, 'life')
  assert.ok(text.includes(MARKER), `marker in the new boot's console:\n${text.slice(-500)}`)
  const prev = join(runtimeDir(c, host, vmId), 'serial.log.1')
  assert.ok(existsSync(prev) && readFileSync(prev, 'utf8').includes(MARKER), 'the first boot\'s console kept')
})

guard('vm delete: no qemu, no runtime dir, no TAP, the VM gone from the cluster', async () => {
  const t0 = Date.now()
  await (await c.client(0)).call('vm.delete', { vm: 'life' })
  await waitFor('qemu gone and runtime dir removed', 30_000, () => qemuPidsFor(vmId).length === 0 && nodesWithRuntimeDir(c, vmId).length === 0)
  figures.deleteCleanMs = Date.now() - t0
  console.log(`  delete → nothing left on the host: ${Date.now() - t0} ms`)
  const short = vmId.slice(0, 8)
  const left = links().filter((l) => l.includes(short) || l.includes('life'))
  assert.equal(left, [], `links named after the VM: ${left.join(', ')}`)
  for (const i of [0, 1, 2]) {
    const list = await (await c.client(i)).call('vm.list', {})
    assert.ok(!list.some((v) => v.id === vmId), `node ${i} still lists the VM`)
  }
  const err = await show(c, 1, 'life').then(() => null, (e: { kind?: string }) => e)
  assert.is(err?.kind, 'NotFound', 'vm show of a deleted VM: NotFound')
})

// Spec updates

guard('vm update --memory 192M restarts the guest with -m 192', async () => {
  const created = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('grow'), memoryMiB: 96, restartPolicy: 'always' } })
  ids.push(created.id)
  const growId = created.id
  const vm = await waitPhase(c, 0, 'grow', 'running', 90_000)
  const host = nodeIndex(c, vm.assignedNode)
  const [before] = qemuPidsFor(growId)
  assert.is(memoryArg(cmdline(before) ?? []), '96')
  const r = await runCli(['vm', 'update', 'grow', '--memory', '192M', '--wait', '--json', '--timeout', '90'], c.cliEnv(1), 100_000)
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  const after = r.json as { generation: number, spec: { memoryMiB: number }, status: { phase: string } }
  assert.is(after.status.phase, 'running')
  assert.is(after.generation, 2)
  assert.is(after.spec.memoryMiB, 192)
  figures.updateToRunningMs = r.ms
  console.log(`  vm update --memory 192M --wait (CLI): ${r.ms} ms; progress:\n${r.stderr.trimEnd()}`)
  assert.ok(cmdline(before) == null, 'the old qemu is gone')
  const pids = qemuPidsFor(growId)
  assert.is(pids.length, 1, `one qemu: ${pids.join(', ')}`)
  assert.is(pidFile(c, host, growId), pids[0])
  assert.is(memoryArg(cmdline(pids[0]) ?? []), '192', 'qemu runs with the new memory')
  assert.is(nodeIndex(c, (await show(c, 2, 'grow')).assignedNode), host)
  assert.ok((await consoleText(c, 2, 'grow')).includes(MARKER), 'the new guest booted')
})

guard('an update with nothing to change is a usage error; a bad value is refused by the cluster', async () => {
  const none = await runCli(['vm', 'update', 'grow', '--json'], c.cliEnv(0))
  assert.is(none.code, 2, none.stderr)
  const bad = await (await c.client(0)).call('vm.update', { vm: 'grow', spec: { ...(await show(c, 0, 'grow')).spec, memoryMiB: 1 } }).then(() => null, (e: { kind?: string }) => e)
  assert.is(bad?.kind, 'InvalidSpec')
  assert.is((await show(c, 0, 'grow')).generation, 2, 'nothing applied')
  // the restart cases below start from a cluster with no guest, as they would on their own
  const growId = ids.at(-1)!
  await (await c.client(0)).call('vm.delete', { vm: 'grow' })
  await waitFor('grow\'s qemu gone', 30_000, () => qemuPidsFor(growId).length === 0)
})

// Memory snapshots

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

// Restart policies

async function create (name: string, restartPolicy: RestartPolicy): Promise<string> {
  const vm = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec(name), memoryMiB: 96, restartPolicy } })
  ids.push(vm.id)
  return vm.id
}

/** the VM's one qemu pid, once it runs */
async function runningPid (name: string, id: string, timeoutMs: number): Promise<{ pid: number, host: number }> {
  const vm = await waitPhase(c, 0, name, 'running', timeoutMs)
  const host = nodeIndex(c, vm.assignedNode)
  const pids = qemuPidsFor(id)
  assert.is(pids.length, 1, `one qemu for ${name}: ${pids.join(', ')}`)
  assert.is(pidFile(c, host, id), pids[0])
  return { pid: pids[0], host }
}

/** types a line on the guest's serial console (the tiny guest runs console commands) */
async function typeOnConsole (sock: string, line: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const s = connect(sock, () => { s.end(line + '\n', () => { resolve() }) })
    s.on('error', reject)
  })
}

let always = ''
let never = ''
let onFailure = ''

guard('three guests boot: restart policies always, never, on-failure', async () => {
  const t0 = Date.now()
  always = await create('always', 'always')
  never = await create('never', 'never')
  onFailure = await create('quiet', 'on-failure')
  for (const [name, id] of [['always', always], ['never', never], ['quiet', onFailure]]) await runningPid(name, id, 90_000)
  figures.threeRunningMs = Date.now() - t0
  console.log(`  3 guests created at once → all running: ${figures.threeRunningMs} ms`)
})

guard('kill -9 of the qemu under `always`: a new qemu, running again, the marker again', async () => {
  const { pid, host } = await runningPid('always', always, 5_000)
  const t0 = Date.now()
  process.kill(pid, 'SIGKILL')
  const again = await waitFor('a new qemu running', 90_000, async () => {
    const vm = await show(c, 0, 'always')
    const pids = qemuPidsFor(always)
    return vm.status.phase === 'running' && pids.length === 1 && pids[0] !== pid ? pids[0] : null
  }, 200)
  figures.killToRunningAgainMs = Date.now() - t0
  console.log(`  kill -9 → running again: ${figures.killToRunningAgainMs} ms (pid ${pid} → ${again})`)
  assert.is(nodeIndex(c, (await show(c, 0, 'always')).assignedNode), host)
  // the new qemu can be seen before the old one's crash is recorded (its status still the old
  // `running`) and so before it booted: its marker is waited for, not read once
  await waitFor('the marker on the new boot', 60_000, async () => (await consoleText(c, 0, 'always')).includes(MARKER), 250)
})

guard('kill -9 under `never`: failed; a guest powering itself off under `on-failure`: stopped; neither restarted', async () => {
  const n = await runningPid('never', never, 5_000)
  const q = await runningPid('quiet', onFailure, 5_000)
  process.kill(n.pid, 'SIGKILL')
  await typeOnConsole(join(runtimeDir(c, q.host, onFailure), 'serial.sock'), 'poweroff')
  await waitFor('both qemus gone', 30_000, () => cmdline(n.pid) == null && cmdline(q.pid) == null)
  const vn = await waitPhase(c, 0, 'never', 'failed', 30_000)
  const vq = await waitPhase(c, 0, 'quiet', 'stopped', 30_000)
  console.log(`  never after kill -9: ${vn.status.phase} (${vn.status.reason}); on-failure after a guest poweroff: ${vq.status.phase} (${vq.status.reason})`)
  await sleep(4_000) // several reconcile rounds, longer than the first restart backoff
  assert.equal(qemuPidsFor(never), [], 'never: not restarted')
  assert.equal(qemuPidsFor(onFailure), [], 'on-failure: not restarted after a clean poweroff')
  const [ln, lq] = [await show(c, 0, 'never'), await show(c, 0, 'quiet')]
  assert.is(ln.status.phase, 'failed')
  assert.is(lq.status.phase, 'stopped')
  assert.is(ln.desired, 'running')
  assert.is(lq.desired, 'running')
})

guard('SIGTERM and restart of the blixard-node hosting a guest: same qemu, re-adopted, running, one qemu', async () => {
  const { pid, host } = await runningPid('always', always, 5_000)
  const t0 = Date.now()
  c.kill(host, 'SIGTERM')
  await c.exited(host)
  figures.daemonStopMs = Date.now() - t0
  assert.ok(cmdline(pid) != null, 'the guest outlives its daemon')
  c.start(host)
  const vm = await waitFor('re-adopted and reported running', 60_000, async () => {
    const v = await show(c, (host + 1) % 3, 'always')
    return v.status.phase === 'running' && v.status.reason.includes('re-adopted') ? v : null
  }, 250)
  figures.daemonRestartToReadoptedMs = Date.now() - t0
  console.log(`  daemon SIGTERM → restarted → guest re-adopted: ${figures.daemonRestartToReadoptedMs} ms (${vm.status.reason})`)
  await sleep(3_000) // a few reconcile rounds on the restarted node
  assert.equal(qemuPidsFor(always), [pid], 'the same qemu, and only it')
  assert.is(pidFile(c, host, always), pid)
  assert.is((await show(c, host, 'always')).status.phase, 'running')
  assert.ok(c.log(host).includes('re-adopted running qemu'))
})

test.run()
