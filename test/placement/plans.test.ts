import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { planEvacuation, planDeadNode } from '../../placement/plans/evacuate.ts'
import { planRebalance, imbalance } from '../../placement/plans/rebalance.ts'
import { planPreemption } from '../../placement/plans/preempt.ts'
import { placeBatch, applyPlacement, releasePlacement } from '../../placement/place.ts'
import { checkClusterInvariants } from '../../placement/invariants.ts'
import { feasible } from '../../placement/filters.ts'
import { Placer } from '../../placement/placer.ts'
import type { PlacementCluster } from '../../placement/types.ts'
import type { Move } from '../../placement/plans/types.ts'
import { arbNodes, arbRequests, arbRequest, emptyCluster, node, vm } from './fixtures.ts'

/** Apply moves one by one, checking every target passes every filter at the time of its move. */
function applyMoves (cluster: PlacementCluster, moves: ReadonlyArray<{ vmId: string, from: string, to: string | null }>, mark?: { nodeId: string, state: 'draining' | 'down' }): PlacementCluster {
  let c = cluster
  if (mark !== undefined) c = { ...c, nodes: c.nodes.map((n) => n.id === mark.nodeId ? { ...n, state: mark.state } : n) }
  for (const m of moves) {
    const p = c.placed.find((x) => x.request.vmId === m.vmId)
    if (p === undefined) throw new Error(`move of unknown vm ${m.vmId}`)
    assert.is(p.nodeId, m.from)
    c = releasePlacement(c, m.vmId)
    if (m.to === null) continue
    const target = c.nodes.find((n) => n.id === m.to)
    assert.ok(target !== undefined && feasible(target, p.request), `target ${m.to} must pass every filter for ${m.vmId}`)
    c = applyPlacement(c, p.request, m.to)
  }
  return c
}

const three = (): PlacementCluster => ({ nodes: [node('a', { labels: { zone: 'x' } }), node('b', { labels: { zone: 'x' } }), node('c', { labels: { zone: 'y' } })], placed: [] })

test('evacuate a draining node: every VM moves elsewhere, filters hold', () => {
  let c = three()
  for (const [i, n] of ['a', 'a', 'a', 'b'].entries()) c = applyPlacement(c, vm(`v${i}`, { antiAffinityGroup: i < 2 ? 'g' : null }), n)
  const plan = planEvacuation(c, 'a')
  assert.equal(plan.moves.map((m) => m.from), ['a', 'a', 'a'])
  assert.ok(plan.moves.every((m) => m.to !== null && m.to !== 'a'))
  const after = applyMoves(c, plan.moves, { nodeId: 'a', state: 'draining' })
  assert.equal(checkClusterInvariants(after), [])
  assert.ok(after.placed.every((p) => p.nodeId !== 'a'))
})

test('dead node: VMs that fit nowhere are reported with to = null', () => {
  let c: PlacementCluster = { nodes: [node('a'), node('b', { capacity: { cpu: 2, memoryMiB: 4096, diskGiB: 100 } })], placed: [] }
  c = applyPlacement(c, vm('big', { resources: { cpu: 8, memoryMiB: 8192, diskGiB: 10 } }), 'a')
  c = applyPlacement(c, vm('small', { resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10 } }), 'a')
  const plan = planDeadNode(c, 'a')
  assert.equal(plan.moves, [{ vmId: 'big', from: 'a', to: null }, { vmId: 'small', from: 'a', to: 'b' }])
  assert.is(plan.decisions[0].rejections?.state, 1)
})

test('rebalance: bounded moves that lower imbalance when a node joins', () => {
  let c: PlacementCluster = { nodes: [node('a'), node('b')], placed: [] }
  for (let i = 0; i < 8; i++) c = applyPlacement(c, vm(`v${i}`, { resources: { cpu: 1, memoryMiB: 4096, diskGiB: 50 } }), 'a')
  c = { ...c, nodes: [...c.nodes, node('c')] }
  const plan = planRebalance(c, {}, { maxMoves: 3 })
  assert.is(plan.moves.length, 3)
  assert.ok(plan.after < plan.before)
  const after = applyMoves(c, plan.moves)
  assert.is(imbalance(after.nodes), plan.after)
  assert.equal(checkClusterInvariants(after), [])
  const full = planRebalance(c, {}, { maxMoves: 100 })
  assert.ok(full.moves.length < 100, 'stops when no move helps')
  assert.ok(full.after < plan.after)
})

test('rebalance respects anti-affinity and constraints', () => {
  let c: PlacementCluster = { nodes: [node('a', { labels: { zone: 'x' } }), node('b', { labels: { zone: 'y' } }), node('c', { labels: { zone: 'x' }, groups: {} })], placed: [] }
  for (let i = 0; i < 6; i++) c = applyPlacement(c, vm(`v${i}`, { constraints: [{ label: 'zone', op: '==', value: 'x' }] }), 'a')
  c = applyPlacement(c, vm('g1', { antiAffinityGroup: 'g' }), 'c')
  c = applyPlacement(c, vm('g2', { antiAffinityGroup: 'g' }), 'a')
  const plan = planRebalance(c, {}, { maxMoves: 10 })
  assert.ok(plan.moves.length > 0)
  for (const m of plan.moves) {
    if (m.vmId.startsWith('v')) assert.is(m.to, 'c')
    if (m.vmId === 'g2') assert.is(m.to, 'b')
  }
  assert.equal(checkClusterInvariants(applyMoves(c, plan.moves)), [])
})

test('preemption: a higher-priority VM evicts the fewest, least important VMs', () => {
  let c: PlacementCluster = { nodes: [node('a', { capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100 } }), node('b', { capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100 } })], placed: [] }
  const small = { cpu: 1, memoryMiB: 2048, diskGiB: 10 }
  for (let i = 0; i < 4; i++) c = applyPlacement(c, vm(`a${i}`, { resources: small, priority: i === 0 ? 10 : 60 }), 'a')
  for (let i = 0; i < 4; i++) c = applyPlacement(c, vm(`b${i}`, { resources: small, priority: 20 }), 'b')
  const req = vm('urgent', { resources: { cpu: 1, memoryMiB: 2048, diskGiB: 10 }, priority: 100 })
  const plan = planPreemption(c, req)
  assert.is(plan.nodeId, 'a')
  assert.equal(plan.evictions, ['a0'])
  assert.equal(plan.requeue.map((r) => r.vmId), ['a0'])
  let after = c
  for (const e of plan.evictions) after = releasePlacement(after, e)
  after = applyPlacement(after, req, 'a')
  assert.equal(checkClusterInvariants(after), [])
  // lower or equal priority evicts nothing
  assert.is(planPreemption(c, { ...req, priority: 10 }).nodeId, null)
  // room somewhere: no eviction at all
  assert.equal(planPreemption(releasePlacement(c, 'b3'), req), { vmId: 'urgent', nodeId: 'b', evictions: [], requeue: [], reason: 'fits on b without evicting anything' })
})

test('preemption: resolves anti-affinity by evicting a lower-priority group member', () => {
  let c: PlacementCluster = { nodes: [node('a')], placed: [] }
  c = applyPlacement(c, vm('old', { antiAffinityGroup: 'g', priority: 1 }), 'a')
  const plan = planPreemption(c, vm('new', { antiAffinityGroup: 'g', priority: 5 }))
  assert.equal([plan.nodeId, plan.evictions], ['a', ['old']])
  assert.is(planPreemption(c, vm('new', { antiAffinityGroup: 'g', priority: 1 })).nodeId, null)
})

test('property: evacuation and dead-node plans respect every filter', () => {
  fc.assert(fc.property(arbNodes(2, 10), arbRequests(1, 30), fc.nat(), fc.boolean(), (nodes, reqs, pick, dead) => {
    const c = placeBatch(emptyCluster(nodes), reqs).cluster
    const target = [...c.nodes].sort((a, b) => a.id < b.id ? -1 : 1)[pick % c.nodes.length].id
    const plan = dead ? planDeadNode(c, target) : planEvacuation(c, target)
    const leaving = c.placed.filter((p) => p.nodeId === target).map((p) => p.request.vmId).sort()
    assert.equal(plan.moves.map((m: Move) => m.vmId).sort(), leaving)
    const after = applyMoves(c, plan.moves, { nodeId: target, state: dead ? 'down' : 'draining' })
    assert.equal(checkClusterInvariants(after), [])
    assert.ok(after.placed.every((p) => p.nodeId !== target))
  }), { numRuns: 100 })
})

test('property: rebalance strictly lowers imbalance, within the bound, respecting filters', () => {
  fc.assert(fc.property(arbNodes(2, 8), arbRequests(1, 30), fc.integer({ min: 1, max: 6 }), (nodes, reqs, maxMoves) => {
    const c = placeBatch(emptyCluster(nodes), reqs, { strategy: 'binpack' }).cluster
    const plan = planRebalance(c, {}, { maxMoves })
    assert.ok(plan.moves.length <= maxMoves)
    if (plan.moves.length > 0) assert.ok(plan.after < plan.before)
    else assert.is(plan.after, plan.before)
    const after = applyMoves(c, plan.moves)
    assert.equal(checkClusterInvariants(after), [])
    assert.ok(Math.abs(imbalance(after.nodes) - plan.after) < 1e-12)
  }), { numRuns: 100 })
})

test('property: preemption evicts only lower priority and then the VM fits', () => {
  fc.assert(fc.property(arbNodes(1, 6), arbRequests(1, 30), arbRequest(999), (nodes, reqs, req) => {
    const c = placeBatch(emptyCluster(nodes), reqs).cluster
    const plan = planPreemption(c, req)
    const prio = new Map(c.placed.map((p) => [p.request.vmId, p.request.priority]))
    for (const e of plan.evictions) assert.ok((prio.get(e) ?? Infinity) < req.priority)
    if (plan.nodeId === null) return
    let after = c
    for (const e of plan.evictions) after = releasePlacement(after, e)
    const target = new Placer(after).nodes.find((n) => n.id === plan.nodeId)
    assert.ok(target !== undefined && feasible(target, req))
    assert.equal(checkClusterInvariants(applyPlacement(after, req, plan.nodeId)), [])
  }), { numRuns: 150 })
})

test.run()
