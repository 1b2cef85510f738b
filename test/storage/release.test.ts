// The release handshake (storage/release-rules.ts): a VM taken off a node stays bound to it until
// that node reports its guest gone (echoing releasing.since) or is marked down; meanwhile no other
// node gets it. Pure rules as tables, then each transition on a real state machine. A node's
// releases are found through the vmsReleasing index, kept in step by every transition and derived
// again for a snapshot or a store from before the index existed.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { downReleases, releaseAfterMove, releaseBlocks, reportReleases } from '../../storage/release-rules.ts'
import type { StatusReport } from '../../storage/release-rules.ts'
import { errorKind, harness, registerNode, spec } from './sm-fixtures.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../../storage/state-machine.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { decodeCbor, encodeCbor } from '../../storage/codec.ts'

type H = ReturnType<typeof harness>
function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }

test('releaseAfterMove: taken off a node binds it; back to it ends; an ongoing release is kept', () => {
  const rel = { node: 'a', since: 5 }
  const rows: Array<[typeof rel | undefined, string | null, string | null, typeof rel | undefined]> = [
    [undefined, 'a', null, { node: 'a', since: 9 }], // preempted / unassigned
    [undefined, 'a', 'b', { node: 'a', since: 9 }], // cold move
    [undefined, null, 'b', undefined], // first placement
    [undefined, 'a', 'a', undefined],
    [rel, null, 'a', undefined], // placed back where its guest is
    [rel, 'b', null, rel], // taken off the cold target too: still bound to a first
    [rel, null, null, rel]
  ]
  for (const [cur, from, to, want] of rows) assert.equal(releaseAfterMove(cur, from, to, 9), want, `${JSON.stringify(cur)} ${from}→${to}`)
  assert.is(releaseAfterMove(undefined, 'a', null, 9, true), undefined, 'leaving a node marked down binds nothing: its guests are fenced')
})

test('releaseBlocks: only another node is refused while releasing', () => {
  const vm = { releasing: { node: 'a', since: 0 } }
  assert.is(releaseBlocks({}, 'b'), null)
  assert.is(releaseBlocks(vm, null), null)
  assert.is(releaseBlocks(vm, 'a'), null)
  assert.match(releaseBlocks(vm, 'b', (id) => `node-${id}`) ?? '', /waits for node node-a to stop its guest/)
})

test('reportReleases / downReleases: only the releasing node, saying stopped, echoing since', () => {
  const vm = { releasing: { node: 'a', since: 7 } }
  const r = (node: string, phase: StatusReport['status']['phase'], released?: number): StatusReport => ({ node, status: { phase }, ...(released !== undefined ? { released } : {}) })
  const rows: Array<[StatusReport, boolean]> = [
    [r('a', 'stopped', 7), true],
    [r('b', 'stopped', 7), false], // another node
    [r('a', 'running', 7), false],
    [r('a', 'stopping', 7), false],
    [r('a', 'stopped'), false], // an ordinary report, maybe made before the release
    [r('a', 'stopped', 6), false] // an earlier release's
  ]
  for (const [rep, want] of rows) assert.is(reportReleases(vm, rep), want, JSON.stringify(rep))
  assert.is(reportReleases({}, r('a', 'stopped', 7)), false)
  assert.is(downReleases(vm, 'a'), true)
  assert.is(downReleases(vm, 'b'), false)
})

/** Nodes a, b (4 vCPUs); `lo` (priority 0) runs on a; `hi` (priority 10, 4 vCPUs) preempts it. */
function preempted (): H {
  const h = harness()
  for (const n of ['a', 'b']) ok(h.run(registerNode(n, { cpu: 4 })))
  ok(h.run({ type: 'CreateVm', id: 'lo', spec: spec('lo', { vcpus: 2, priority: 0 }) }))
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'a' }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id: 'lo', node: 'a', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  ok(h.run({ type: 'CreateVm', id: 'hi', spec: spec('hi', { vcpus: 4, priority: 10 }) }))
  ok(h.run({ type: 'PreemptVm', vm: 'hi', node: 'a', victims: ['lo'] }))
  return h
}

const released = (node: string, since: number, phase: 'stopped' | 'running' = 'stopped'): Command =>
  ({ type: 'ReportVmStatus', reports: [{ id: 'lo', node, generation: 1, status: { phase, reason: 'gone', at: 2 }, released: since }] })

test('PreemptVm: the victim is releasing its node; AssignVm elsewhere is refused meanwhile', () => {
  const h = preempted()
  const lo = h.sm.getVm('lo')!
  assert.equal(lo.releasing, { node: 'a', since: h.index() * 1000 })
  assert.is(lo.assignedNode, null)
  const r = h.run({ type: 'AssignVm', id: 'lo', node: 'b' })
  assert.is(errorKind(r), 'Conflict')
  assert.match(r.ok ? '' : r.error.message, /VM lo cannot be placed on node-b yet: it waits for node node-a to stop its guest/)
  assert.is(h.sm.getVm('lo')!.assignedNode, null)
})

test('release on the old node\'s report: then AssignVm elsewhere is accepted', () => {
  const h = preempted()
  const since = h.sm.getVm('lo')!.releasing!.since
  const r = h.run(released('a', since))
  assert.equal(r.ok ? r.value : null, { outcomes: ['applied'] })
  const lo = h.sm.getVm('lo')!
  assert.is(lo.releasing, undefined)
  assert.is(lo.status.phase, 'pending', 'its status stays the pending one: the report speaks of the old node')
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'b' }))
  assert.is(h.sm.getVm('lo')!.assignedNode, 'b')
})

test('a report from a different node, a running one, or one without the echo does not release', () => {
  const h = preempted()
  const since = h.sm.getVm('lo')!.releasing!.since
  for (const cmd of [released('b', since), released('a', since, 'running'), released('a', since - 1)]) {
    const r = h.run(cmd)
    assert.equal(r.ok ? r.value : null, { outcomes: ['stale'] })
    assert.ok(h.sm.getVm('lo')!.releasing !== undefined, JSON.stringify(cmd))
  }
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id: 'lo', node: 'a', generation: 1, status: { phase: 'stopped', reason: '', at: 3 } }] }))
  assert.ok(h.sm.getVm('lo')!.releasing !== undefined, 'a plain stopped report (made before it learned) does not release')
  assert.is(errorKind(h.run({ type: 'AssignVm', id: 'lo', node: 'b' })), 'Conflict')
})

test('release on MarkNodeDown of the old node (its guests are fenced); not on another node\'s', () => {
  const h = preempted()
  ok(h.run(registerNode('c')))
  ok(h.run({ type: 'MarkNodeDown', node: 'c', epoch: 0, seq: 0, expiredAt: 0, reason: 'lease expired' }))
  assert.ok(h.sm.getVm('lo')!.releasing !== undefined, 'another node down releases nothing')
  ok(h.run({ type: 'MarkNodeDown', node: 'a', epoch: 0, seq: 0, expiredAt: 0, reason: 'lease expired' }))
  assert.is(h.sm.getVm('lo')!.releasing, undefined)
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'b' }))
})

test('a restart-policy-never VM left on a node marked down is moved off it without a release', () => {
  const h = harness()
  for (const n of ['a', 'b']) ok(h.run(registerNode(n, { cpu: 4 })))
  ok(h.run({ type: 'CreateVm', id: 'lo', spec: spec('lo', { vcpus: 2, restartPolicy: 'never' }) }))
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'a' }))
  ok(h.run({ type: 'MarkNodeDown', node: 'a', epoch: 0, seq: 0, expiredAt: 0, reason: 'lease expired' }))
  assert.is(h.sm.getVm('lo')!.assignedNode, 'a', 'policy never: it stays')
  ok(h.run({ type: 'AssignVm', id: 'lo', node: null }))
  assert.is(h.sm.getVm('lo')!.releasing, undefined)
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'b' }))
})

test('placed back on the node it is releasing: accepted, and the release ends', () => {
  const h = preempted()
  ok(h.run({ type: 'DeleteVm', id: 'hi' }))
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'a' }))
  const lo = h.sm.getVm('lo')!
  assert.equal([lo.assignedNode, lo.releasing], ['a', undefined])
})

test('a cold move binds the VM to its old node: the target holds it, RemoveNode of the old node is refused', () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 4 })))
  ok(h.run({ type: 'CreateVm', id: 'lo', spec: spec('lo', { vcpus: 2 }) }))
  ok(h.run({ type: 'AssignVm', id: 'lo', node: 'a' }))
  ok(h.run({ type: 'StartMigration', vm: 'lo', target: 'b', cold: true }))
  const lo = h.sm.getVm('lo')!
  assert.equal([lo.assignedNode, lo.releasing], ['b', { node: 'a', since: h.index() * 1000 }])
  assert.is(errorKind(h.run({ type: 'AssignVm', id: 'lo', node: 'c' })), 'Conflict', 'no third node meanwhile')
  assert.is(errorKind(h.run({ type: 'RemoveNode', id: 'a' })), 'InUse')
  ok(h.run(released('a', lo.releasing!.since)))
  assert.equal([h.sm.getVm('lo')!.assignedNode, h.sm.getVm('lo')!.releasing], ['b', undefined])
  ok(h.run({ type: 'RemoveNode', id: 'a' }))
})

test('the vmsReleasing index follows a release from its start to its end, and to a delete', () => {
  const h = preempted()
  const ids = (node: string): string[] => h.sm.listVmsReleasing(node).map((v) => v.id)
  assert.equal(ids('a'), ['lo'])
  assert.equal(ids('b'), [])
  ok(h.run(released('a', h.sm.getVm('lo')!.releasing!.since)))
  assert.equal(ids('a'), [], 'released: out of the index')
  const g = preempted()
  ok(g.run({ type: 'DeleteVm', id: 'lo' }))
  assert.equal(g.sm.listVmsReleasing('a'), [], 'deleted while releasing: out of the index')
  const d = preempted()
  ok(d.run({ type: 'MarkNodeDown', node: 'a', epoch: 0, seq: 0, expiredAt: 0, reason: 'test' }))
  assert.equal(d.sm.listVmsReleasing('a'), [], 'its node marked down: released, out of the index')
})

test('a snapshot or a store from before the index gets it derived from the VM records', () => {
  const h = preempted()
  // a snapshot without the table, as an older node makes it
  const snap = decodeCbor(h.sm.snapshot()) as { version: number, applied: number, tables: Record<string, unknown> }
  const { vmsReleasing: _dropped, ...older } = snap.tables
  const restored = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  restored.restore(encodeCbor({ ...snap, tables: older }), h.index())
  assert.equal(restored.listVmsReleasing('a').map((v) => v.id), ['lo'])
  assert.is(restored.stateHash(), h.sm.stateHash())
  // a store that never had it: the marker and the rows gone, as a data dir of an older version
  const kv = new MemoryKv()
  new StateMachine(kv, UNCHECKED_AUTHORITY).restore(encodeCbor({ ...snap, tables: older }), h.index())
  kv.transaction((tx) => { tx.clear('vmsReleasing'); tx.delete('meta', 'releasingIndexed') })
  assert.equal(new StateMachine(kv, UNCHECKED_AUTHORITY).listVmsReleasing('a').map((v) => v.id), ['lo'])
})

test.run()
