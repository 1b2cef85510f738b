// Priority preemption: the pure plan (placement/plans/preempt.ts), table-tested with its
// reasons, and its properties: never an equal-or-higher priority victim, never a non-preemptible
// one, the fewest victims at the cheapest node, and the VM fits once they left.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { planPreemption } from '../../placement/plans/preempt.ts'
import { placeBatch, applyPlacement, releasePlacement } from '../../placement/place.ts'
import { checkClusterInvariants } from '../../placement/invariants.ts'
import { feasible } from '../../placement/filters.ts'
import { Placer } from '../../placement/placer.ts'
import type { PlacementCluster, PlacementRequest } from '../../placement/types.ts'
import { arbNodes, arbRequests, arbRequest, emptyCluster, node, vm } from './fixtures.ts'

const small = { cpu: 1, memoryMiB: 2048, diskGiB: 10 }
const full = (): PlacementCluster => {
  let c: PlacementCluster = { nodes: [node('a', { capacity: { cpu: 2, memoryMiB: 4096, diskGiB: 100 } }), node('b', { capacity: { cpu: 2, memoryMiB: 4096, diskGiB: 100 } })], placed: [] }
  c = applyPlacement(c, vm('a-low', { resources: small, priority: 0 }), 'a')
  c = applyPlacement(c, vm('a-mid', { resources: small, priority: 5 }), 'a')
  c = applyPlacement(c, vm('b-low', { resources: small, priority: 1 }), 'b')
  c = applyPlacement(c, vm('b-mid', { resources: small, priority: 5 }), 'b')
  return c
}

interface Row { name: string, req: PlacementRequest, mutate?: (c: PlacementCluster) => PlacementCluster, node: string | null, evict: string[], reason: RegExp }

const rows: Row[] = [
  { name: 'lowest evicted priority wins: a-low (0) over b-low (1)', req: vm('hi', { resources: small, priority: 10 }), node: 'a', evict: ['a-low'], reason: /^evicts a-low \(priority 0\) on a: the cheapest node \(highest evicted priority 0, 1 VM, 2048 MiB freed\)$/ },
  { name: 'equal priority is never evicted', req: vm('eq', { resources: small, priority: 1 }), node: 'a', evict: ['a-low'], reason: /evicts a-low/ },
  { name: 'nothing below: no plan, and why', req: vm('low', { resources: small, priority: 0 }), node: null, evict: [], reason: /^no node would fit it even after evicting every preemptible VM of priority below 0 \(2 nodes tried\)$/ },
  { name: 'non-preemptible victims are skipped: the next cheapest node', req: vm('hi', { resources: small, priority: 10 }), mutate: (c) => mark(c, 'a-low'), node: 'b', evict: ['b-low'], reason: /on b/ },
  { name: 'a bigger VM needs two victims on one node', req: vm('big', { resources: { cpu: 2, memoryMiB: 4096, diskGiB: 10 }, priority: 10 }), node: 'a', evict: ['a-low', 'a-mid'], reason: /highest evicted priority 5, 2 VMs/ },
  { name: 'every victim non-preemptible: none', req: vm('hi', { resources: small, priority: 10 }), mutate: (c) => mark(mark(mark(mark(c, 'a-low'), 'a-mid'), 'b-low'), 'b-mid'), node: null, evict: [], reason: /^no node would fit/ },
  { name: 'constraints rule out every node: evicting would not help', req: vm('hi', { resources: small, priority: 10, constraints: [{ label: 'gpu', op: 'exists' }] }), node: null, evict: [], reason: /^no node passes its state, constraint and capability filters/ }
]

function mark (c: PlacementCluster, id: string): PlacementCluster {
  return { ...c, placed: c.placed.map((p) => p.request.vmId === id ? { ...p, request: { ...p.request, preemptible: false } } : p) }
}

for (const r of rows) {
  test(`preemption table: ${r.name}`, () => {
    const c = (r.mutate ?? ((x) => x))(full())
    const plan = planPreemption(c, r.req)
    assert.is(plan.nodeId, r.node)
    assert.equal(plan.evictions, r.evict)
    assert.match(plan.reason, r.reason)
  })
}

test('property: never evicts equal-or-higher priority or non-preemptible VMs; the VM then fits; no cheaper single node exists', () => {
  const arbPlaced = arbRequests(1, 25).chain((reqs) => fc.array(fc.boolean(), { minLength: reqs.length, maxLength: reqs.length }).map((flags) => reqs.map((r, i) => flags[i] ? { ...r, preemptible: false } : r)))
  fc.assert(fc.property(arbNodes(1, 6), arbPlaced, arbRequest(999), (nodes, reqs, req) => {
    const c = placeBatch(emptyCluster(nodes), reqs).cluster
    const plan = planPreemption(c, req)
    const byId = new Map(c.placed.map((p) => [p.request.vmId, p]))
    for (const e of plan.evictions) {
      const p = byId.get(e)
      assert.ok(p !== undefined && p.request.priority < req.priority, `${e} priority ${p?.request.priority} >= ${req.priority}`)
      assert.ok(p.request.preemptible !== false, `${e} is not preemptible`)
      assert.is(p.nodeId, plan.nodeId, 'every victim on the chosen node')
    }
    if (plan.nodeId === null) {
      assert.is(plan.evictions.length, 0)
      // nothing fits even with every evictable VM gone from its node
      let all = c
      for (const p of c.placed) if (p.request.priority < req.priority && p.request.preemptible !== false) all = releasePlacement(all, p.request.vmId)
      const anywhere = new Placer(all).nodes.some((n) => feasible(n, req))
      assert.not.ok(anywhere && req.antiAffinityGroup === null, 'a node would fit after evictions, yet no plan')
      return
    }
    let after = c
    for (const e of plan.evictions) after = releasePlacement(after, e)
    const target = new Placer(after).nodes.find((n) => n.id === plan.nodeId)
    assert.ok(target !== undefined && feasible(target, req), 'fits once the victims left')
    assert.equal(checkClusterInvariants(applyPlacement(after, req, plan.nodeId)), [])
    // minimal on its node: putting back any one victim makes it not fit (the plan keeps only needed evictions)
    for (const e of plan.evictions) {
      const p = byId.get(e)!
      if (p.request.antiAffinityGroup !== null && p.request.antiAffinityGroup === req.antiAffinityGroup) continue
      const back = new Placer(applyPlacement(after, p.request, plan.nodeId)).nodes.find((n) => n.id === plan.nodeId)!
      assert.not.ok(feasible(back, req), `evicting ${e} was not needed`)
    }
  }), { numRuns: 300 })
})

test.run()
