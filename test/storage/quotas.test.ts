// Per-project quotas in the state machine: SetQuota, and CreateVm / UpdateVmSpec /
// DeleteVm charged against them on apply, with the numbers in the refusal.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import type { Command } from '../../protocols/commands.ts'
import { DEFAULT_PROJECT, projectOf, QUOTA_RESOURCES } from '../../protocols/model.ts'
import type { QuotaUsage, VmSpec } from '../../protocols/model.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { claimOf, emptyUsage } from '../../storage/apply-quotas.ts'
import { errorKind, harness, registerNode, spec } from './sm-fixtures.ts'
import type { ApplyResult } from '../../protocols/commands.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'

test('a create over the project quota is refused with the numbers; other projects are not charged', () => {
  const h = harness()
  h.run({ type: 'CreateNetwork', name: 'net', kind: { type: 'bridge' }, subnet: '10.0.0.0/24' })
  assert.is(errorKind(h.run({ type: 'SetQuota', project: 'team-a', limits: { vcpus: 4, vms: 3, ips: 1 } })), 'ok')
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'a1', spec: spec('a1', { project: 'team-a', vcpus: 2, networks: ['net'] }) })), 'ok')
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'a2', spec: spec('a2', { project: 'team-a', vcpus: 2 }) })), 'ok')
  const r = h.run({ type: 'CreateVm', id: 'a3', spec: spec('a3', { project: 'team-a', vcpus: 1 }) })
  assert.is(errorKind(r), 'QuotaExceeded')
  assert.ok(!r.ok && r.error.message.includes('vcpus: 4 used + 1 asked > 4 vCPUs allowed'), !r.ok ? r.error.message : '')
  assert.is(h.sm.getVm('a3'), undefined, 'nothing of the refused create stays')
  // a second address is over the ips limit
  const r2 = h.run({ type: 'UpdateVmSpec', id: 'a2', spec: spec('a2', { project: 'team-a', vcpus: 2, networks: ['net'] }) })
  assert.is(errorKind(r2), 'QuotaExceeded')
  assert.ok(!r2.ok && r2.error.message.includes('ips: 1 used + 1 asked > 1'), !r2.ok ? r2.error.message : '')
  // no quota: unlimited
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'b1', spec: spec('b1', { project: 'team-b', vcpus: 64 }) })), 'ok')
  const q = h.sm.listQuotas()
  assert.equal(q.map((x) => x.project), ['team-a', 'team-b'])
  assert.equal(q[0].usage, { vcpus: 4, memoryMiB: 256, diskGiB: 2, vms: 2, ips: 1 })
  assert.equal(q[1].limits, null)
})

test('a VM created without a project is in the project default, recorded so, and its quota caps it: leaving --project out dodges nothing', () => {
  const h = harness()
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'c1', spec: spec('c1', { vcpus: 64 }) })), 'ok')
  assert.is(h.sm.getVm('c1')?.spec.project, 'default', 'the record names its project')
  assert.equal(h.sm.listQuotas(), [{ project: 'default', limits: null, usage: { vcpus: 64, memoryMiB: 128, diskGiB: 1, vms: 1, ips: 0 } }])
  assert.is(errorKind(h.run({ type: 'SetQuota', project: 'default', limits: { vms: 1 } })), 'ok')
  const r = h.run({ type: 'CreateVm', id: 'c2', spec: spec('c2') })
  assert.is(errorKind(r), 'QuotaExceeded')
  assert.ok(!r.ok && r.error.message === 'project default quota exceeded by VM c2: vms: 1 used + 1 asked > 1 VMs allowed', !r.ok ? r.error.message : '')
  // naming it is the same project
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'c3', spec: spec('c3', { project: 'default' }) })), 'QuotaExceeded')
  // a spec change that names no project keeps the VM's own: it neither leaves its quota nor joins default's
  h.run({ type: 'CreateVm', id: 't1', spec: spec('t1', { project: 'team-t' }) })
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 't1', spec: spec('t1', { memoryMiB: 256 }) })), 'ok')
  assert.is(h.sm.getVm('t1')?.spec.project, 'team-t')
  assert.equal(h.sm.listQuotas().map((x) => [x.project, x.usage.vms, x.usage.memoryMiB]), [['default', 1, 128], ['team-t', 1, 256]])
})

test('a record stored before projects were filled in reads as default; it was charged to none, so its delete takes no usage row below zero and a spec change charges it', () => {
  const kv = new MemoryKv()
  const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
  let i = 0
  const run = (cmd: Command): ApplyResult => sm.apply(++i, encodeEnvelope({ cmd, at: i * 1000 }))
  run({ type: 'CreateVm', id: 'new', spec: spec('new') })
  run({ type: 'CreateVm', id: 'old', spec: spec('old', { vcpus: 3 }) })
  // what an older version stored: no project in the spec, nothing in any usage row
  run({ type: 'CreateVm', id: 'old2', spec: spec('old2', { vcpus: 2 }) })
  const strip = (id: string): VmSpec => {
    const { project: _dropped, ...bare } = sm.getVm(id)!.spec
    kv.put('vms', id, { ...sm.getVm(id)!, spec: bare })
    return bare
  }
  const bare = strip('old')
  strip('old2')
  kv.put('settings', 'quotaUsage/default', { vcpus: 1, memoryMiB: 128, diskGiB: 1, vms: 1, ips: 0 })
  assert.is(projectOf(sm.getVm('old')!.spec), 'default')
  assert.is(errorKind(run({ type: 'DeleteVm', id: 'old2' })), 'ok')
  assert.equal(sm.listQuotas()[0].usage, { vcpus: 1, memoryMiB: 128, diskGiB: 1, vms: 1, ips: 0 }, 'nothing released for a VM never charged')
  const upd = run({ type: 'UpdateVmSpec', id: 'old', spec: bare })
  assert.is(errorKind(upd), 'ok')
  assert.is(sm.getVm('old')?.spec.project, 'default', 'recorded with its project from its first change on')
  assert.equal(sm.listQuotas()[0].usage, { vcpus: 4, memoryMiB: 256, diskGiB: 2, vms: 2, ips: 0 }, 'charged once it changed')
  assert.is(errorKind(run({ type: 'DeleteVm', id: 'new' })), 'ok')
  assert.is(errorKind(run({ type: 'DeleteVm', id: 'old' })), 'ok')
  assert.equal(sm.listQuotas(), [], 'back to nothing, not below')
})

test('a delete frees room; a lowered quota refuses growth but lets the project shrink; clearing removes it', () => {
  const h = harness()
  h.run({ type: 'SetQuota', project: 'p', limits: { memoryMiB: 1024 } })
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('v1', { project: 'p', memoryMiB: 512 }) })
  h.run({ type: 'CreateVm', id: 'v2', spec: spec('v2', { project: 'p', memoryMiB: 512 }) })
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'v3', spec: spec('v3', { project: 'p', memoryMiB: 128 }) })), 'QuotaExceeded')
  assert.is(errorKind(h.run({ type: 'DeleteVm', id: 'v2' })), 'ok')
  assert.is(errorKind(h.run({ type: 'CreateVm', id: 'v3', spec: spec('v3', { project: 'p', memoryMiB: 128 }) })), 'ok')
  h.run({ type: 'SetQuota', project: 'p', limits: { memoryMiB: 256 } })
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('v1', { project: 'p', memoryMiB: 640 }) })), 'QuotaExceeded', 'growth over a lowered quota')
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('v1', { project: 'p', memoryMiB: 256 }) })), 'ok', 'shrinking is always allowed')
  // a VM moved into another project is charged there
  h.run({ type: 'SetQuota', project: 'q', limits: { vms: 0 } })
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('v1', { project: 'q', memoryMiB: 256 }) })), 'QuotaExceeded')
  h.run({ type: 'SetQuota', project: 'q', limits: null })
  assert.is(errorKind(h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('v1', { project: 'q', memoryMiB: 256 }) })), 'ok')
  const q = h.sm.listQuotas()
  assert.equal(q.find((x) => x.project === 'p')?.usage.memoryMiB, 128)
  assert.equal(q.find((x) => x.project === 'q'), { project: 'q', limits: null, usage: { vcpus: 1, memoryMiB: 256, diskGiB: 1, vms: 1, ips: 0 } })
})

test('SetQuota and the spec fields validate: unknown resources, negatives, bad names are refused', () => {
  const ok = validateCommand({ type: 'SetQuota', project: 'team-a', limits: { vms: 3, vcpus: 8 } })
  assert.ok(ok.ok)
  assert.equal(ok.ok && ok.cmd, { type: 'SetQuota', project: 'team-a', limits: { vcpus: 8, vms: 3 } })
  const bad = (c: unknown, want: string): void => {
    const v = validateCommand(c)
    assert.ok(!v.ok, JSON.stringify(c))
    assert.match(!v.ok ? v.error.message : '', want)
  }
  bad({ type: 'SetQuota', project: 'team-a', limits: { gpus: 1 } }, 'limits.gpus is not a quota resource')
  bad({ type: 'SetQuota', project: 'team-a', limits: { vms: -1 } }, 'limits.vms must be in 0..')
  bad({ type: 'SetQuota', project: 'Team A', limits: {} }, 'project "Team A" must be a DNS label')
  bad({ type: 'CreateVm', id: 'x', spec: { ...spec('x'), preemptible: 'no' } }, 'spec.preemptible must be a boolean')
  // absent fields stay absent (a spec encodes as before they existed); a given one is kept
  const v = validateCommand({ type: 'CreateVm', id: 'x', spec: spec('x') })
  assert.ok(v.ok && v.cmd.type === 'CreateVm' && !('preemptible' in v.cmd.spec) && !('project' in v.cmd.spec))
  const w = validateCommand({ type: 'CreateVm', id: 'x', spec: { ...spec('x'), preemptible: false, project: 'team-a' } })
  assert.ok(w.ok && w.cmd.type === 'CreateVm' && w.cmd.spec.preemptible === false && w.cmd.spec.project === 'team-a')
})

// ---- property: no command sequence takes a project over a quota it grew against ----

const projects = ['p', 'q', DEFAULT_PROJECT]
const ids = ['v1', 'v2', 'v3', 'v4', 'v5']
const cmdArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ id: fc.constantFrom(...ids), project: fc.constantFrom('p', 'q', undefined), vcpus: fc.integer({ min: 1, max: 4 }), mem: fc.constantFrom(128, 512), nets: fc.integer({ min: 0, max: 2 }) })
    .map(({ id, project, vcpus, mem, nets }): Command => ({ type: 'CreateVm', id, spec: spec(id, { vcpus, memoryMiB: mem, networks: ['n1', 'n2'].slice(0, nets), ...(project !== undefined ? { project } : {}) }) })),
  fc.record({ id: fc.constantFrom(...ids), project: fc.constantFrom('p', 'q', undefined), vcpus: fc.integer({ min: 1, max: 4 }), mem: fc.constantFrom(128, 512) })
    .map(({ id, project, vcpus, mem }): Command => ({ type: 'UpdateVmSpec', id, spec: spec(id, { vcpus, memoryMiB: mem, ...(project !== undefined ? { project } : {}) }) })),
  fc.constantFrom(...ids).map((id): Command => ({ type: 'DeleteVm', id }))
)

function recount (vms: ReturnType<ReturnType<typeof harness>['sm']['listVms']>): Map<string, QuotaUsage> {
  const m = new Map<string, QuotaUsage>()
  for (const vm of vms) {
    const u = m.get(projectOf(vm.spec)) ?? emptyUsage()
    const c = claimOf(vm.spec)
    for (const r of QUOTA_RESOURCES) u[r] += c[r]
    m.set(projectOf(vm.spec), u)
  }
  return m
}

test('property: after any create/update/delete sequence usage equals a recount and stays within the quotas', () => {
  fc.assert(fc.property(
    fc.record({ vcpus: fc.integer({ min: 0, max: 8 }), vms: fc.integer({ min: 0, max: 4 }), ips: fc.integer({ min: 0, max: 3 }) }),
    fc.array(cmdArb, { maxLength: 30 }),
    (limits, cmds) => {
      const h = harness()
      h.run(registerNode('n1'))
      h.run({ type: 'CreateNetwork', name: 'n1', kind: { type: 'bridge' }, subnet: '10.0.0.0/24' })
      h.run({ type: 'CreateNetwork', name: 'n2', kind: { type: 'bridge' }, subnet: '10.0.1.0/24' })
      for (const p of projects) h.run({ type: 'SetQuota', project: p, limits })
      for (const c of cmds) {
        h.run(c)
        const real = recount(h.sm.listVms())
        for (const q of h.sm.listQuotas()) {
          assert.equal(q.usage, real.get(q.project) ?? emptyUsage(), `usage row of ${q.project} drifted from the VMs`)
          for (const r of ['vcpus', 'vms', 'ips'] as const) assert.ok(q.usage[r] <= limits[r], `${q.project} ${r} ${q.usage[r]} > ${limits[r]}`)
        }
        for (const p of real.keys()) assert.ok(h.sm.listQuotas().some((q) => q.project === p))
      }
    }
  ), { numRuns: 200 })
})

test.run()
