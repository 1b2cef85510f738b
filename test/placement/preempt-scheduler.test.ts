// Preemption wired in: the leader's scheduler pass over a real state machine, its
// proposals applied to it. A high-priority VM that fits nowhere displaces the cheapest
// lower-priority VM (PreemptVm, one entry); the victim waits, pending, its reason naming who
// displaced it (`vm explain` shows it), and comes back when room appears. Equal priorities,
// non-preemptible VMs and forged plans are refused on apply.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { VmSpec } from '../../protocols/model.ts'
import { harness, registerNode, spec, errorKind } from '../storage/sm-fixtures.ts'
import { explainVm, schedulePass, admissionRefusal } from '../../node/scheduler.ts'
import { silentLogger } from '../../node/log.ts'

type H = ReturnType<typeof harness>

function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }

const NO_LOAD = { hints: () => new Map() }

function runningOn (h: H, id: string, node: string, over: Partial<VmSpec> = {}): void {
  ok(h.run({ type: 'CreateVm', id, spec: spec(id, { vcpus: 2, ...over }) }))
  ok(h.run({ type: 'AssignVm', id, node }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id, node, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
}

async function pass (h: H): Promise<Array<{ cmd: Command, ok: boolean }>> {
  const out: Array<{ cmd: Command, ok: boolean }> = []
  await schedulePass({ sm: h.sm, load: NO_LOAD, isLeader: () => true, now: () => h.index() * 1000, log: silentLogger, propose: async (env) => { const r = h.run(env.cmd); out.push({ cmd: env.cmd, ok: r.ok }); return r } })
  return out
}

/** Two nodes of 4 vCPUs, each full with two 2-vCPU VMs of the given priorities. */
function fullCluster (prios: { a: [number, number], b: [number, number] }, over: Record<string, Partial<VmSpec>> = {}): H {
  const h = harness()
  ok(h.run(registerNode('a', { cpu: 4 })))
  ok(h.run(registerNode('b', { cpu: 4 })))
  for (const n of ['a', 'b'] as const) prios[n].forEach((p, i) => runningOn(h, `${n}${i}`, n, { priority: p, ...over[`${n}${i}`] }))
  return h
}

test('a high-priority VM preempts the cheapest lower one; the victim waits with the reason, then comes back when room appears', async () => {
  const h = fullCluster({ a: [0, 5], b: [1, 5] })
  const hi: VmSpec = spec('hi', { vcpus: 2, priority: 10 })
  // admission: fits nowhere now, but by preemption: not refused
  assert.is(admissionRefusal(h.sm.listNodes(), h.sm.listVms(), new Map(), hi), null)
  assert.match(admissionRefusal(h.sm.listNodes(), h.sm.listVms(), new Map(), { ...hi, priority: 0 }) ?? '', /^no node fits VM hi/)
  ok(h.run({ type: 'CreateVm', id: 'hi', spec: hi }))
  const before = explainVm(h.sm, NO_LOAD, 'hi')
  assert.equal([before.preemption?.nodeId, before.preemption?.evictions], ['a', ['a0']])
  // by names, as vm explain and the dashboard print it: no VM or node id
  assert.match(before.preemption?.reason ?? '', /^evicts VM a0 \(priority 0\) on node-a: the cheapest node/)

  const first = await pass(h)
  assert.equal(first.map((p) => [p.cmd.type, p.ok]), [['PreemptVm', true]])
  assert.equal(first[0].cmd, { type: 'PreemptVm', vm: 'hi', node: 'a', victims: ['a0'] })
  assert.is(h.sm.getVm('hi')?.assignedNode, 'a')
  assert.match(h.sm.getVm('hi')!.status.reason, /placed on node-a by preempting VM a0 \(priority 0\)/)
  const victim = h.sm.getVm('a0')!
  assert.equal([victim.assignedNode, victim.status.phase, victim.desired], [null, 'pending', 'running'])
  assert.is(victim.status.reason, 'preempted by VM hi (priority 10 > 0) on node-a; waits for room')
  const ex = explainVm(h.sm, NO_LOAD, 'a0')
  assert.is(ex.waiting, `${victim.status.reason}; it waits for node node-a to stop its guest (taken off it at ${new Date(victim.releasing!.since).toISOString()}): it runs on one host at a time, and is placed elsewhere once that node reports it stopped or is marked down`, 'vm explain shows why it waits: who displaced it, and the release it waits for')
  assert.is(ex.preemption?.nodeId, null, 'priority 0 preempts nobody')

  // no room: the victim waits, and the scheduler proposes nothing more (no cascade below 0)
  assert.equal(await pass(h), [])
  // room appears: it is placed again the ordinary way
  ok(h.run({ type: 'DeleteVm', id: 'b1' }))
  // ... but not before node a said its guest is gone (the release handshake: never on two hosts)
  assert.equal(await pass(h), [], 'still releasing node a: not placed')
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id: 'a0', node: 'a', generation: 1, status: { phase: 'stopped', reason: 'gone', at: 2 }, released: victim.releasing!.since }] }))
  assert.is(h.sm.getVm('a0')?.releasing, undefined)
  const back = await pass(h)
  assert.equal(back.map((p) => [p.cmd.type, p.ok]), [['AssignVm', true]])
  assert.is(h.sm.getVm('a0')?.assignedNode, 'b')
})

test('cascading: a displaced VM of middle priority displaces a lower one in its turn, and stops there', async () => {
  const h = fullCluster({ a: [5, 5], b: [0, 9] })
  ok(h.run({ type: 'CreateVm', id: 'top', spec: spec('top', { vcpus: 2, priority: 10 }) }))
  // the lowest evicted priority wins: b0 (0), not one of a's 5s
  const p1 = await pass(h)
  assert.equal(p1.map((p) => p.cmd), [{ type: 'PreemptVm', vm: 'top', node: 'b', victims: ['b0'] }])
  assert.equal(await pass(h), [], 'b0 (priority 0) preempts nobody')
  // a second high one must take a 5; that 5 then evicts nobody (nothing below 5 runs), so it waits
  ok(h.run({ type: 'CreateVm', id: 'top2', spec: spec('top2', { vcpus: 2, priority: 10 }) }))
  const p2 = await pass(h)
  assert.equal(p2.map((p) => p.cmd), [{ type: 'PreemptVm', vm: 'top2', node: 'a', victims: ['a0'] }])
  const p3 = await pass(h)
  assert.equal(p3, [], 'a0 (5) finds nothing strictly below it running')
  assert.equal(h.sm.listVms().filter((v) => v.assignedNode == null).map((v) => v.id).sort(), ['a0', 'b0'])
})

test('non-preemptible VMs and equal priorities are never evicted; apply refuses a plan that would', async () => {
  const h = fullCluster({ a: [0, 0], b: [0, 10] }, { a0: { preemptible: false }, a1: { preemptible: false } })
  ok(h.run({ type: 'CreateVm', id: 'hi', spec: spec('hi', { vcpus: 2, priority: 10 }) }))
  const p = await pass(h)
  assert.equal(p.map((x) => x.cmd), [{ type: 'PreemptVm', vm: 'hi', node: 'b', victims: ['b0'] }])
  // forged or stale plans: every rule checked again on apply, nothing changes
  ok(h.run({ type: 'CreateVm', id: 'hi2', spec: spec('hi2', { vcpus: 2, priority: 10 }) }))
  const refused = (c: Command, msg: RegExp): void => {
    const r = h.run(c)
    assert.is(errorKind(r), 'Conflict')
    assert.match(r.ok ? '' : r.error.message, msg)
    assert.is(h.sm.getVm('hi2')?.assignedNode, null)
  }
  refused({ type: 'PreemptVm', vm: 'hi2', node: 'a', victims: ['a0'] }, /VM a0 is not preemptible/)
  refused({ type: 'PreemptVm', vm: 'hi2', node: 'b', victims: ['hi'] }, /has priority 10, not below hi2's 10/)
  refused({ type: 'PreemptVm', vm: 'hi2', node: 'a', victims: ['b1'] }, /VM b1 is not on node node-a/)
  assert.is(h.sm.getVm('a0')?.assignedNode, 'a', 'the refused entries left the victims in place')
  // a plan that frees too little: the whole entry is refused (the victim stays)
  ok(h.run({ type: 'CreateVm', id: 'huge', spec: spec('huge', { vcpus: 4, priority: 20 }) }))
  const r = h.run({ type: 'PreemptVm', vm: 'huge', node: 'b', victims: ['hi'] })
  assert.is(errorKind(r), 'NoCapacity')
  assert.is(h.sm.getVm('hi')?.assignedNode, 'b')
})

test.run()
