// A drain that would strand running VMs is refused where the write is decided: the node that
// prepares it computes the evacuation plan (node/scheduler.ts drainTargets) and the command carries
// the plan's targets (UpdateNode.onto); apply (storage/apply-nodes.ts) refuses it if one of them is
// no longer ready. So two drains prepared on the same state, each fine alone, cannot both land.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { drainTargets } from '../../node/scheduler.ts'
import { checkPrepared } from '../../node/cli/signing.ts'

type H = ReturnType<typeof harness>

function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }
function refused (r: ApplyResult, re: RegExp): void {
  assert.not.ok(r.ok, 'refused')
  if (!r.ok) { assert.is(r.error.kind, 'Conflict'); assert.match(r.error.message, re) }
}

function runningOn (h: H, id: string, node: string, vcpus = 1): void {
  ok(h.run({ type: 'CreateVm', id, spec: spec(id, { vcpus }) }))
  ok(h.run({ type: 'AssignVm', id, node }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id, node, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
}

/** the drain the API would propose for `node` on `h`'s state now (or its refusal) */
function prepared (h: H, node: string): Command | string[] {
  const t = drainTargets(h.sm.listNodes(), h.sm.listVms(), new Map(), h.sm.getNode(node)!)
  return 'stranded' in t ? t.stranded : { type: 'UpdateNode', id: node, state: 'draining', onto: t.onto }
}

test('two drains prepared at once, of the only two nodes that can take each other\'s VMs: the first lands, the second is refused on apply', () => {
  const h = harness()
  for (const n of ['a', 'b']) ok(h.run(registerNode(n, { cpu: 4 })))
  runningOn(h, 'v1', 'a', 2)
  runningOn(h, 'v2', 'b', 2)
  const da = prepared(h, 'a')
  const db = prepared(h, 'b')
  assert.equal(da, { type: 'UpdateNode', id: 'a', state: 'draining', onto: ['b'] }, 'alone, a drains onto b')
  assert.equal(db, { type: 'UpdateNode', id: 'b', state: 'draining', onto: ['a'] }, 'alone, b drains onto a')
  ok(h.run(da as Command))
  refused(h.run(db as Command), /draining node node-b would strand VMs: node node-a is draining onto it and still holds VM v1; node node-b was not drained/)
  assert.is(h.sm.getNode('b')!.state, 'ready', 'b still takes VMs')
  // prepared again now, the drain of b is refused at once, with the VM and why
  assert.equal(prepared(h, 'b'), ['v1 (on node node-a, draining onto node node-b)'])
  // in the other order the other one wins: the rule is symmetric, not a tie-break on ids
  const h2 = harness()
  for (const n of ['a', 'b']) ok(h2.run(registerNode(n, { cpu: 4 })))
  runningOn(h2, 'v1', 'a', 2)
  runningOn(h2, 'v2', 'b', 2)
  const da2 = prepared(h2, 'a')
  ok(h2.run(prepared(h2, 'b') as Command))
  refused(h2.run(da2 as Command), /draining node node-a would strand VMs: node node-b is draining onto it and still holds VM v2/)
})

test('a VM that fits only node a or node b, on a: drains of a and of (empty) b prepared at once — in either order, only the first lands', () => {
  const setup = (): H => {
    const h = harness()
    for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 4 })))
    runningOn(h, 'v', 'a', 2)
    // c is full: the VM fits only a or b
    runningOn(h, 'hog', 'c', 4)
    return h
  }
  let h = setup()
  let da = prepared(h, 'a')
  let db = prepared(h, 'b')
  assert.equal(da, { type: 'UpdateNode', id: 'a', state: 'draining', onto: ['b'] })
  assert.equal(db, { type: 'UpdateNode', id: 'b', state: 'draining', onto: [] }, 'b holds nothing')
  ok(h.run(da as Command))
  assert.equal(h.sm.getNode('a')!.drainOnto, ['b'], 'the drain keeps what it counts on')
  refused(h.run(db as Command), /draining node node-b would strand VMs: node node-a is draining onto it and still holds VM v/)
  assert.equal(prepared(h, 'b'), ['v (on node node-a, draining onto node node-b)'], 'and said at once when prepared now')
  // once a is undrained, what it counted on is forgotten
  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'ready' }))
  assert.is(h.sm.getNode('a')!.drainOnto, undefined)
  ok(h.run(prepared(h, 'b') as Command))
  h = setup()
  da = prepared(h, 'a')
  db = prepared(h, 'b')
  ok(h.run(db as Command))
  refused(h.run(da as Command), /node node-b, which was to take them, is now draining/)
})

test('--force drains anyway; a drain naming no targets is refused while the node holds a running VM; an empty node drains', () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 4 })))
  runningOn(h, 'big', 'a', 4)
  runningOn(h, 'filler', 'b', 1)
  // c holds nothing: it drains without targets
  assert.equal(prepared(h, 'c'), { type: 'UpdateNode', id: 'c', state: 'draining', onto: [] })
  ok(h.run(prepared(h, 'c') as Command))
  // big (4 CPUs) fits neither b (1 of 4 used) nor draining c
  const why = prepared(h, 'a')
  assert.ok(Array.isArray(why) && why.length === 1 && why[0]!.startsWith('big (') && /node-b: cpu/.test(why[0]!) && /node-c: state/.test(why[0]!), String(why))
  refused(h.run({ type: 'UpdateNode', id: 'a', state: 'draining' }), /would strand its 1 running VM\(s\) \(big\): the drain names no node to take them/)
  // a target that went down or left counts as not ready
  ok(h.run({ type: 'UpdateNode', id: 'c', state: 'ready' }))
  refused(h.run({ type: 'UpdateNode', id: 'a', state: 'draining', onto: ['zz'] }), /node zz, which was to take them, is no longer in the cluster/)
  refused(h.run({ type: 'UpdateNode', id: 'a', state: 'draining', onto: ['a'] }), /is now the node being drained/)
  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'draining', force: true }))
  assert.is(h.sm.getNode('a')!.state, 'draining')
  // draining it again changes nothing and needs no targets
  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'draining' }))
})

test('force and onto go only with a drain (the schema), and a stopped VM is never stranded', () => {
  const bad = validateCommand({ type: 'UpdateNode', id: 'a', state: 'ready', force: true })
  assert.ok(!bad.ok && /force and onto go only with state draining/.test(bad.error.message))
  assert.not.ok(validateCommand({ type: 'UpdateNode', id: 'a', onto: ['b'] }).ok)
  assert.ok(validateCommand({ type: 'UpdateNode', id: 'a', state: 'draining', onto: ['b'] }).ok)
  const h = harness()
  ok(h.run(registerNode('a')))
  ok(h.run({ type: 'CreateVm', id: 'off', spec: spec('off'), desired: 'stopped' }))
  ok(h.run({ type: 'AssignVm', id: 'off', node: 'a' }))
  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'draining' }))
})

test('the CLI signs a forced drain only for --force: a node may not strand VMs in the admin\'s name', () => {
  const drain = { type: 'UpdateNode' as const, id: 'a', state: 'draining' as const, onto: ['b'] }
  checkPrepared('node.drain', { node: 'a' }, drain)
  checkPrepared('node.drain', { node: 'a', force: true }, { type: 'UpdateNode', id: 'a', state: 'draining', force: true })
  assert.throws(() => { checkPrepared('node.drain', { node: 'a' }, { type: 'UpdateNode', id: 'a', state: 'draining', force: true }) }, /prepared a drain with --force for one without it: refusing to sign it/)
  assert.throws(() => { checkPrepared('node.drain', { node: 'a' }, { ...drain, labels: {} }) }, /changes more than the node's state/)
})

test.run()
