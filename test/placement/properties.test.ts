// Properties over random clusters and VM sets (fast-check).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { placeBatch, placeOne, applyPlacement } from '../../placement/place.ts'
import { Placer } from '../../placement/placer.ts'
import { checkClusterInvariants } from '../../placement/invariants.ts'
import { feasible } from '../../placement/filters.ts'
import type { PlacementConfigInput } from '../../placement/config.ts'
import { arbNodes, arbRequests, arbRequest, emptyCluster, permute } from './fixtures.ts'

const RUNS = 150
const arbConfig: fc.Arbitrary<PlacementConfigInput> = fc.record({
  strategy: fc.constantFrom<'binpack' | 'spread'>('binpack', 'spread'),
  weights: fc.record({ fit: fc.constantFrom(0, 0.5, 1, 2), affinity: fc.constantFrom(0, 0.5, 3), domain: fc.constantFrom(0, 0.5, 3), pressure: fc.constantFrom(0, 0.5, 3), warm: fc.constantFrom(0, 0.5, 1, 3), snapshot: fc.constantFrom(0, 0.5, 1, 3) })
})

test('never over-commits; constraints, capabilities and anti-affinity always hold', () => {
  fc.assert(fc.property(arbNodes(), arbRequests(), arbConfig, (nodes, reqs, cfg) => {
    const r = placeBatch(emptyCluster(nodes), reqs, cfg)
    const violations = checkClusterInvariants(r.cluster)
    if (violations.length > 0) throw new Error(violations.join('\n'))
    for (const d of r.decisions) if (d.nodeId !== null) assert.is(nodes.find((n) => n.id === d.nodeId)?.state, 'ready')
  }), { numRuns: RUNS })
})

test('deterministic: same input twice, and shuffled node order, give the same answer', () => {
  fc.assert(fc.property(arbNodes(), arbRequests(), arbConfig, fc.array(fc.integer(), { minLength: 1, maxLength: 20 }), (nodes, reqs, cfg, keys) => {
    const a = placeBatch(emptyCluster(nodes), reqs, cfg).decisions.map((d) => d.nodeId)
    const b = placeBatch(emptyCluster(nodes), reqs, cfg).decisions.map((d) => d.nodeId)
    const c = placeBatch(emptyCluster(permute(nodes, keys)), reqs, cfg).decisions.map((d) => d.nodeId)
    assert.equal(b, a)
    assert.equal(c, a)
  }), { numRuns: RUNS })
})

test('batch placement equals placing one by one', () => {
  fc.assert(fc.property(arbNodes(), arbRequests(1, 25), arbConfig, (nodes, reqs, cfg) => {
    const batch = placeBatch(emptyCluster(nodes), reqs, cfg).decisions
    let cluster = emptyCluster(nodes)
    reqs.forEach((req, i) => {
      const d = placeOne(cluster, req, cfg)
      assert.is(d.nodeId, batch[i].nodeId, `request ${i}`)
      assert.is(d.total, batch[i].total)
      if (d.nodeId !== null) cluster = applyPlacement(cluster, req, d.nodeId)
    })
  }), { numRuns: RUNS })
})

test('the fast path picks exactly the node a full explained scan picks', () => {
  fc.assert(fc.property(arbNodes(1, 20), arbRequests(1, 30), arbConfig, (nodes, reqs, cfg) => {
    const fast = new Placer(emptyCluster(nodes), cfg)
    const slow = new Placer(emptyCluster(nodes), cfg)
    for (const req of reqs) {
      const f = fast.placeAndCommit(req)
      const s = slow.placeAndCommit(req, { explain: true })
      assert.is(f.nodeId, s.nodeId)
      assert.is(f.total, s.total)
      assert.is(s.nodes?.length, nodes.length)
      const feasibleCount = s.nodes?.filter((v) => v.feasible).length ?? 0
      const rejected = Object.values(s.rejections ?? {}).reduce((a, b) => a + (b ?? 0), 0)
      assert.is(feasibleCount + rejected, nodes.length)
    }
  }), { numRuns: RUNS })
})

test('a single VM is placed whenever some node passes every filter', () => {
  fc.assert(fc.property(arbNodes(), arbRequests(0, 20), arbRequest(999), arbConfig, (nodes, pre, req, cfg) => {
    const start = placeBatch(emptyCluster(nodes), pre, cfg).cluster
    const anyFits = start.nodes.some((n) => feasible(n, req))
    const d = placeOne(start, req, cfg)
    assert.is(d.nodeId !== null, anyFits)
    if (d.nodeId === null) assert.ok(d.rejections !== null && Object.keys(d.rejections).length > 0)
  }), { numRuns: RUNS })
})

test.run()
