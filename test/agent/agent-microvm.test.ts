// The agent's loop (node/agent.ts) on the microvm.nix path, end to end short of nix and systemd: a
// real state machine takes the agent's reports, the MicrovmHypervisor issues its commands to the
// recording host (test/nixos/recording-host.ts), which plays systemd. Shown: a VM assigned here is
// built and started and reported running; a crashed unit is restarted under `always` only after its
// backoff (on the injected clock); no start while the host is fenced; a preemption's victim, whose
// graceful stop takes a while, is down before the VM that displaced it starts; a stop and a delete
// reach systemctl and leave nothing behind.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent } from '../../node/agent.ts'
import { MicrovmHypervisor } from '../../node/hypervisor/microvm.ts'
import { microvmGuests } from '../../node/ha/microvm-fence.ts'
import { recordingLogger, type LogRecord } from '../../node/log.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { RestartPolicy, VmPhase, VmRecord, VmSpec } from '../../protocols/model.ts'
import { RecordingHost } from '../nixos/recording-host.ts'

const SELF = 'node-self'
const root = mkdtempSync(join(tmpdir(), 'blx-agent-microvm-'))
const dataDir = join(root, 'data')
const stateDir = join(root, 'microvms')
const host = new RecordingHost(stateDir)
const logs: LogRecord[] = []
const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
let index = 0
let t = 1_000_000
let held: string | null = null

function apply (cmd: Command): ApplyResult {
  const r = sm.apply(++index, encodeEnvelope({ cmd, at: t }))
  agent.kick() // as the daemon does after every apply
  return r
}

const agent = new Agent({
  nodeId: SELF,
  sm,
  hypervisor: new MicrovmHypervisor({ dataDir, stateDir, exec: host.exec, now: () => t }),
  propose: async (env) => sm.apply(++index, encodeEnvelope(env)),
  log: recordingLogger(logs).log,
  now: () => t,
  reconcileEveryMs: 20,
  mayRun: () => held
})

function spec (name: string, restartPolicy: RestartPolicy): VmSpec {
  return { name, vcpus: 1, memoryMiB: 128, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'flake', ref: 'github:acme/guests#web' }, volumes: [], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy, requires: [] }
}

async function until<T> (what: string, f: () => T | null | undefined | Promise<T | null | undefined>, ms = 5_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await f()
    if (v != null) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const vm = (id: string): VmRecord => sm.getVm(id) as VmRecord
const phase = async (id: string, p: VmPhase, reason?: RegExp): Promise<VmRecord> =>
  await until(`${id} ${p}${reason != null ? ` (${reason.source})` : ''}`, () => { const v = vm(id); return v.status.phase === p && (reason == null || reason.test(v.status.reason)) ? v : null })
const starts = (name: string): number => host.log.filter((l) => l === `systemctl start microvm@${name}.service`).length

test.before(async () => {
  const r = apply({ type: 'RegisterNode', node: { id: SELF, name: 'self', addrs: [], labels: {}, capacity: { cpu: 8, memoryMiB: 8192, diskGiB: 100 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, capabilities: ['nix'], maxVms: null } })
  assert.ok(r.ok, JSON.stringify(r))
  await agent.start()
})

test('a VM assigned here: flake built, unit started, reported running', async () => {
  assert.ok(apply({ type: 'CreateVm', id: 'vm-web', spec: spec('web', 'always') }).ok)
  assert.ok(apply({ type: 'AssignVm', id: 'vm-web', node: SELF }).ok)
  await phase('vm-web', 'running')
  assert.is(starts('web'), 1)
  assert.ok(host.log.some((l) => l.includes('build --out-link') && l.endsWith('#nixosConfigurations.web.config.microvm.declaredRunner')))
  assert.equal(await microvmGuests(dataDir), ['web'])
})

test('always: a crashed unit is reported failed and restarted only when its backoff has passed', async () => {
  host.units.set('web', { active: 'failed', sub: 'failed', result: 'signal', pid: 0 })
  await phase('vm-web', 'failed', /restarting in 1s \(attempt 2, policy always\)/)
  await new Promise((resolve) => setTimeout(resolve, 200)) // ten rounds on a clock that stands still
  assert.is(starts('web'), 1, 'no restart during the backoff')
  t += 1_500
  await phase('vm-web', 'running')
  assert.is(starts('web'), 2)
})

test('never: a crash stays down; a fenced host starts nothing', async () => {
  held = 'no liveness lease held'
  assert.ok(apply({ type: 'CreateVm', id: 'vm-db', spec: spec('db', 'never') }).ok)
  assert.ok(apply({ type: 'AssignVm', id: 'vm-db', node: SELF }).ok)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.is(starts('db'), 0, 'fenced: not started')
  assert.is(vm('vm-db').status.phase, 'scheduled')
  held = null
  await phase('vm-db', 'running')
  host.units.set('db', { active: 'failed', sub: 'failed', result: 'exit-code', pid: 0 })
  await phase('vm-db', 'failed', /hypervisor exited with status 1; restart policy never/)
  t += 120_000
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.is(starts('db'), 1, 'never: not restarted')
})

test('a preemption: the victim\'s unit, stopping gracefully, is down before the unit of the VM that displaced it starts', async () => {
  assert.ok(apply({ type: 'CreateVm', id: 'vm-low', spec: { ...spec('low', 'always'), priority: 1 } }).ok)
  assert.ok(apply({ type: 'AssignVm', id: 'vm-low', node: SELF }).ok)
  await phase('vm-low', 'running')
  host.stopMs = 300
  try {
    assert.ok(apply({ type: 'CreateVm', id: 'vm-high', spec: { ...spec('high', 'always'), priority: 10 } }).ok)
    const r = apply({ type: 'PreemptVm', vm: 'vm-high', node: SELF, victims: ['vm-low'] })
    assert.ok(r.ok, JSON.stringify(r))
    await phase('vm-high', 'running')
  } finally { host.stopMs = 0 }
  assert.not.ok(host.activeAtStart.get('high')?.includes('low'), `units active when high started: ${String(host.activeAtStart.get('high'))}`)
  // the wait is said once, at info, with what it waits for, though the agent passed every 20 ms meanwhile
  const waits = logs.filter((r) => r.msg === 'VM waits to start here' && r.fields.vmId === 'vm-high')
  assert.is(waits.length, 1, JSON.stringify(waits))
  assert.is(waits[0].level, 'info')
  assert.match(String(waits[0].fields.why), /^not starting \(.*\): the guest of VM vm-low, no longer assigned here, still holds its room/)
  assert.ok(host.log.indexOf('systemctl stop microvm@low.service') < host.log.indexOf('systemctl start microvm@high.service'))
  await until('the victim released', () => vm('vm-low').releasing == null ? true : null)
  assert.match(vm('vm-low').status.reason, /^preempted by VM high \(priority 10 > 1\) on self; waits for room/)
  assert.ok(apply({ type: 'DeleteVm', id: 'vm-high' }).ok)
  assert.ok(apply({ type: 'DeleteVm', id: 'vm-low' }).ok)
  await until('their guests removed', async () => { const g = await microvmGuests(dataDir); return g.includes('high') || g.includes('low') ? null : true })
})

test('stop and delete reach systemctl; nothing of the guests is left', async () => {
  assert.ok(apply({ type: 'SetVmDesiredState', id: 'vm-web', desired: 'stopped' }).ok)
  await phase('vm-web', 'stopped', /stopped on request/)
  assert.ok(host.log.includes('systemctl stop microvm@web.service'))
  const removed = (): number => host.log.filter((l) => l.startsWith('rm -rf')).length
  const before = removed()
  assert.ok(apply({ type: 'DeleteVm', id: 'vm-web' }).ok)
  assert.ok(apply({ type: 'DeleteVm', id: 'vm-db' }).ok)
  await until('guest dirs removed', () => removed() === before + 4 ? true : null)
  assert.equal(await microvmGuests(dataDir), [])
})

test.after(async () => {
  await agent.stop()
  rmSync(root, { recursive: true, force: true })
})

test.run()
