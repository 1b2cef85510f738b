// The params of the snapshot, quota and rebalance methods: what each accepts, and that a bad one
// is refused as InvalidParams naming the field (the quota's limits by the SetQuota command's rules);
// vm.clone's handler refuses a clone that would keep its source's MAC and address, and the CLI's
// sentence for it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkParams } from '../../protocols/rpc.ts'
import { checkPrepared } from '../../node/cli/signing.ts'
import { cloneSpec } from '../../protocols/snapshots.ts'
import type { Command } from '../../protocols/commands.ts'
import type { VmRecord, VmSpec } from '../../protocols/model.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { createSnapshotApi } from '../../node/api-snapshots.ts'
import { cloneRefusal } from '../../node/cli/snapshots.ts'
import { CliError } from '../../node/cli/errors.ts'
import type { RpcCallContext } from '../../node/net/rpc.ts'
import { harness, registerNode, spec as vmSpec } from '../storage/sm-fixtures.ts'

function refusal (f: () => unknown): string {
  try { f(); return 'ok' } catch (e) { return `${(e as { kind?: string }).kind ?? '?'}: ${(e as Error).message}` }
}

test('vm.snapshot, vm.snapshotDelete, vm.restore: a VM and a snapshot name', () => {
  for (const m of ['vm.snapshot', 'vm.snapshotDelete', 'vm.restore'] as const) {
    assert.equal(checkParams(m, { vm: 'web-1', name: 'before-upgrade' }), { vm: 'web-1', name: 'before-upgrade' })
    assert.match(refusal(() => checkParams(m, { vm: 'web-1' })), /^InvalidParams: params: missing field 'name'/)
    assert.match(refusal(() => checkParams(m, { vm: 'web-1', name: 's', extra: 1 })), /^InvalidParams: params: unknown field 'extra'/)
    assert.match(refusal(() => checkParams(m, { vm: '', name: 's' })), /params\.vm/)
    assert.match(refusal(() => checkParams(m, { vm: 'web-1', name: 'no spaces allowed' })), /params\.name/)
    // the name becomes part of an RBD snapshot and image name and of a file name: nothing that
    // splits pool/image@snap or climbs out of a directory, and not longer than a DNS label
    for (const bad of ['x@y', 'a/b', '../etc', 'a.b', '-lead', 'a'.repeat(64)]) {
      assert.match(refusal(() => checkParams(m, { vm: 'web-1', name: bad })), /^(InvalidParams|InvalidSpec|TooLarge): .*params\.name/, bad)
    }
    assert.is(refusal(() => checkParams(m, { vm: 'web-1', name: 'a'.repeat(63) })), 'ok')
    assert.match(refusal(() => checkParams(m, { vm: 'v'.repeat(10_000), name: 's' })), /params\.vm/)
  }
})

test('vm.snapshotList: optionally one VM, optionally stale', () => {
  assert.equal(checkParams('vm.snapshotList', undefined), {})
  assert.equal(checkParams('vm.snapshotList', { vm: 'a', stale: true }), { vm: 'a', stale: true })
  assert.match(refusal(() => checkParams('vm.snapshotList', { stale: 1 })), /^InvalidParams: params\.stale: expected a boolean/)
})

test('quota.set: project and limits (null clears) as SetQuota takes them; quota.show, rebalance.plan', () => {
  assert.equal(checkParams('quota.set', { project: 'team-a', limits: null }), { project: 'team-a', limits: null })
  assert.match(refusal(() => checkParams('quota.set', { project: 'team-a' })), /^InvalidParams: params: missing field 'limits'/)
  assert.match(refusal(() => checkParams('quota.set', { project: 'team-a', limits: 'lots' })), /^InvalidParams: params\./)
  assert.equal(checkParams('quota.show', { project: 'team-a', stale: true }), { project: 'team-a', stale: true })
  assert.match(refusal(() => checkParams('quota.show', { project: '' })), /^InvalidParams: params\.project/)
  assert.equal(checkParams('rebalance.plan', {}), {})
  assert.match(refusal(() => checkParams('rebalance.plan', { dry: true })), /^InvalidParams: params: unknown field 'dry'/)
})

test('vm.clone: a new VM name, a source VM and a snapshot name, each bounded; the CLI signs only the clone it asked for', () => {
  assert.equal(checkParams('vm.clone', { name: 'web-2', vm: 'web', snapshot: 's1' }), { name: 'web-2', vm: 'web', snapshot: 's1' })
  assert.equal(checkParams('vm.clone', { name: 'web-2', vm: 'web', snapshot: 's1', start: false }), { name: 'web-2', vm: 'web', snapshot: 's1', start: false })
  assert.match(refusal(() => checkParams('vm.clone', { name: 'web-2', vm: 'web' })), /^InvalidParams: params: missing field 'snapshot'/)
  for (const bad of ['Web', 'a b', 'a.b', '-x', 'h'.repeat(64)]) assert.match(refusal(() => checkParams('vm.clone', { name: bad, vm: 'web', snapshot: 's1' })), /params\.name/, bad)
  for (const bad of ['x@y', 'a/b', '../etc', 'a'.repeat(64)]) assert.match(refusal(() => checkParams('vm.clone', { name: 'h', vm: 'web', snapshot: bad })), /params\.snapshot/, bad)
  assert.match(refusal(() => checkParams('vm.clone', { name: 'h', vm: 'v'.repeat(10_000), snapshot: 's1' })), /params\.vm/)
  const spec = { name: 'web', vcpus: 1, memoryMiB: 96, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: ['data'], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'never', requires: [] } as unknown as VmSpec
  const clone = (name: string, snap: string): Command => ({ type: 'CreateVm', id: 'x', spec: cloneSpec(spec, name), fromSnapshot: { vm: 'web-id', name: snap } })
  const params = { name: 'h', vm: 'web', snapshot: 's1' }
  checkPrepared('vm.clone', params, clone('h', 's1'))
  assert.match(refusal(() => { checkPrepared('vm.clone', params, clone('other', 's1')) }), /prepared VM other from snapshot s1, not h from s1: refusing/)
  assert.match(refusal(() => { checkPrepared('vm.clone', params, clone('h', 's2')) }), /refusing to sign it/)
  assert.match(refusal(() => { checkPrepared('vm.create', { spec: cloneSpec(spec, 'h') }, clone('h', 's1')) }), /a clone for a plain create: refusing/)
  assert.equal(cloneSpec(spec, 'h').volumes, ['h-d0'], 'the clone\'s own disks')
})

test('vm.clone of a snapshot whose image lacks the identity channel, with networks: refused before anything is proposed, and the CLI says what to do', async () => {
  const h = harness()
  const ok = (r: ReturnType<typeof h.run>): void => { if (!r.ok) throw new Error(r.error.message) }
  ok(h.run(registerNode('a')))
  ok(h.run({ type: 'CreateNetwork', name: 'lan', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', gateway: '10.0.0.1' }))
  for (const [id, sp] of [['k1', vmSpec('kvm', { image: { kind: 'kernel', kernel: '/boot/vmlinuz' }, networks: ['lan'] })], ['t1', vmSpec('tvm', { networks: ['lan'] })]] as const) {
    ok(h.run({ type: 'CreateVm', id, spec: sp }))
    ok(h.run({ type: 'AssignVm', id, node: 'a' }))
    ok(h.run({ type: 'ReportVmStatus', reports: [{ id, node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
    ok(h.run({ type: 'SnapshotVm', vm: id, name: 's1' }))
    ok(h.run({ type: 'ReportVmSnapshot', vm: id, name: 's1', node: 'a', event: 'taken', sizeBytes: 9, pausedMs: 5, path: `/d/${id}.state` }))
  }
  const proposed: Command[] = []
  const api = createSnapshotApi({
    sm: h.sm,
    read: async () => {},
    barrier: async () => {},
    prior: () => null,
    write: async (cmd) => { proposed.push(cmd); const r = h.run(cmd); if (!r.ok) throw new BlixardError(r.error.kind, r.error.message); return r.value },
    vmRef: (ref) => { const v = h.sm.getVmByName(ref) ?? h.sm.getVm(ref); if (v == null) throw new BlixardError('NotFound', `VM ${ref} not found`); return v }
  })
  const ctx = {} as RpcCallContext
  let err: unknown
  try { await api['vm.clone']!({ name: 'kc', vm: 'kvm', snapshot: 's1' }, ctx) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError, String(err))
  assert.is((err as BlixardError).kind, 'InvalidSpec')
  assert.match((err as Error).message, /^snapshot s1 of VM kvm: its image \(kernel \/boot\/vmlinuz\) does not read the blix-identity line, so a clone would resume with VM kvm's MAC and address on network lan/)
  assert.equal(proposed, [], 'nothing proposed')
  // the CLI turns it into its own sentence and next step; other errors pass unchanged
  const cli = cloneRefusal(err, 'kc')
  assert.ok(cli instanceof CliError)
  assert.match((cli as CliError).message, /^VM kc was not created: snapshot s1 of VM kvm: its image \(kernel \/boot\/vmlinuz\)/)
  assert.match((cli as CliError).next, /Clone a snapshot of a VM that has no networks, or create the source with the tiny image/)
  const other = new BlixardError('InvalidSpec', 'memoryMiB: too large')
  assert.is(cloneRefusal(other, 'kc'), other)
  // the tiny image reads the identity line: the clone is proposed and made
  const made = await api['vm.clone']!({ name: 'tc', vm: 'tvm', snapshot: 's1' }, ctx) as VmRecord
  assert.equal([made.spec.name, made.spec.networks, proposed.length], ['tc', ['lan'], 1])
})

test.run()
