// Spec updates: a changed spec is applied, never silently ignored (microvm.nix#94). Through
// 3 real blixard-node processes: `blixard vm update NAME --memory 192M --wait` on a running
// guest → its host restarts it with the new spec (qemu argv `-m 192`, one qemu, the marker).
// Ports 17630-17632 (metrics 17730-17732).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, runCli, vmSpec } from '../cluster/harness.ts'
import { cmdline, consoleText, MARKER, memoryArg, nodeIndex, pidFile, qemuPidsFor, show, vmSuite, waitPhase } from './helpers.ts'

const c = new TestCluster({ nodes: 3, basePort: 17630 }, 'vm-update')
const figures: Record<string, number> = {}
let vmId = ''

const guard = vmSuite(test, c, { vmIds: () => vmId === '' ? [] : [vmId], figures })

guard('vm update --memory 192M restarts the guest with -m 192', async () => {
  const created = await (await c.client(0)).call('vm.create', { spec: { ...vmSpec('grow'), memoryMiB: 96, restartPolicy: 'always' } })
  vmId = created.id
  const vm = await waitPhase(c, 0, 'grow', 'running', 90_000)
  const host = nodeIndex(c, vm.assignedNode)
  const [before] = qemuPidsFor(vmId)
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
  const pids = qemuPidsFor(vmId)
  assert.is(pids.length, 1, `one qemu: ${pids.join(', ')}`)
  assert.is(pidFile(c, host, vmId), pids[0])
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
})

test.run()
