// Restart policies when guests and hosts fail, through 3 real blixard-node processes and real guests:
// kill -9 of a qemu → restarted under `always` (new pid, the marker again); under `never` a
// killed guest ends `failed` and stays down; under `on-failure` a guest that powers itself off
// ends `stopped` and stays down; SIGTERM and restart of the blixard-node hosting a guest → the
// same qemu keeps running, is re-adopted, reported running, never duplicated.
// Ports 17620-17622 (metrics 17720-17722).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connect } from 'node:net'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec, sleep } from '../cluster/harness.ts'
import type { RestartPolicy } from '../../protocols/model.ts'
import { cmdline, consoleText, MARKER, nodeIndex, pidFile, qemuPidsFor, runtimeDir, show, vmSuite, waitPhase } from './helpers.ts'

const c = new TestCluster({ nodes: 3, basePort: 17620 }, 'vm-restart')
const figures: Record<string, number> = {}
const ids: string[] = []

const guard = vmSuite(test, c, { vmIds: () => ids, figures, logLines: 30 })

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
  assert.ok((await consoleText(c, 0, 'always')).includes(MARKER), 'marker on the new boot')
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
