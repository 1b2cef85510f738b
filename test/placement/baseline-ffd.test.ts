import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { firstFitDecreasing } from '../../placement/baseline-ffd.ts'
import { feasible } from '../../placement/filters.ts'
import { applyPlacement } from '../../placement/place.ts'
import { checkClusterInvariants } from '../../placement/invariants.ts'
import { arbNodes, arbRequests, emptyCluster } from './fixtures.ts'

test('first-fit-decreasing takes the first node in id order that passes every filter', () => {
  fc.assert(fc.property(arbNodes(1, 30), arbRequests(1, 40), (nodes, reqs) => {
    const r = firstFitDecreasing(emptyCluster(nodes), reqs)
    let c = emptyCluster(nodes)
    reqs.forEach((req, i) => {
      const first = [...c.nodes].sort((a, b) => a.id < b.id ? -1 : 1).find((n) => feasible(n, req))
      assert.is(r.assignments[i], first?.id ?? null)
      if (first !== undefined) c = applyPlacement(c, req, first.id)
    })
    assert.equal(checkClusterInvariants(c), [])
    assert.is(r.nodesUsed, c.nodes.filter((n) => n.vmCount > 0).length)
  }), { numRuns: 150 })
})

test.run()
