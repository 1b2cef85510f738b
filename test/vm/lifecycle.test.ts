// A VM's whole life through 3 real blixard-node processes and a real guest
// (TCG here): create --wait → the marker on its console and its qemu on the node placement
// chose (and only there) → stop (qemu gone) → start (a new qemu, the marker again) → delete
// (no qemu, no runtime dir, no TAP left). The CLI runs create --wait and logs; the other steps
// use RPC (what the CLI calls) because each CLI process costs seconds to start on a loaded host. Ports 17610-17612 (metrics 17710-17712).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, runCli } from '../cluster/harness.ts'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cmdline, consoleText, consoleViaCli, links, MARKER, nodeIndex, nodesWithRuntimeDir, pidFile, qemuPidsFor, runtimeDir, show, vmSuite, waitPhase } from './helpers.ts'

const c = new TestCluster({ nodes: 3, basePort: 17610 }, 'vm-life')
const figures: Record<string, number> = {}
let vmId = ''
let host = -1
let firstPid = 0

const guard = vmSuite(test, c, { vmIds: () => vmId === '' ? [] : [vmId], figures })

guard('vm create --wait: running, the marker on its console, its qemu on the chosen node only', async () => {
  const r = await runCli(['vm', 'create', 'life', '--memory', '96M', '--wait', '--json', '--timeout', '90'], c.cliEnv(1), 100_000)
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  const vm = r.json as { id: string, status: { phase: string }, assignedNode: string }
  assert.is(vm.status.phase, 'running')
  vmId = vm.id
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

test.run()
