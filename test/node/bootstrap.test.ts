import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { decideBootstrap } from '../../node/bootstrap.ts'
import type { PeerHello } from '../../node/bootstrap.ts'

test('joins a peer that is already in a cluster', () => {
  const d = decideBootstrap('b', 3, [{ id: 'a', inCluster: true, lowestKnown: 'a' }, { id: 'c', inCluster: false, lowestKnown: 'a' }])
  assert.equal(d.action, 'join')
  assert.equal(d.action === 'join' && d.via, 'a')
})

test('waits until the expected number of nodes is seen', () => {
  assert.equal(decideBootstrap('a', 3, [{ id: 'b', inCluster: false, lowestKnown: 'a' }]).action, 'wait')
})

test('only the lowest id bootstraps, and only when peers agree', () => {
  const hellos: PeerHello[] = [{ id: 'b', inCluster: false, lowestKnown: 'a' }, { id: 'c', inCluster: false, lowestKnown: 'b' }]
  assert.equal(decideBootstrap('a', 3, hellos).action, 'wait') // c has not seen a yet
  hellos[1].lowestKnown = 'a'
  assert.equal(decideBootstrap('a', 3, hellos).action, 'bootstrap')
  assert.equal(decideBootstrap('b', 3, [{ id: 'a', inCluster: false, lowestKnown: 'a' }, { id: 'c', inCluster: false, lowestKnown: 'a' }]).action, 'wait')
})

test('a fully connected fresh LAN has exactly one bootstrapper, whatever the ids and the expectation', () => {
  fc.assert(fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 5 }), (ids, expect) => {
    const lowest = [...ids].sort()[0]
    const deciders = ids.filter((self) => {
      const hellos = ids.filter((p) => p !== self).map((p) => ({ id: p, inCluster: false, lowestKnown: lowest }))
      return decideBootstrap(self, expect, hellos).action === 'bootstrap'
    })
    assert.equal(deciders.length, ids.length >= expect ? 1 : 0)
  }))
})

test('with partial views during discovery, no two nodes bootstrap when every peer reports its honest lowest id', () => {
  // Each node's view is a random subset that grows over time; a peer's lowestKnown is the lowest id in its view.
  fc.assert(fc.property(fc.integer({ min: 3, max: 7 }), fc.array(fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }), { minLength: 7, maxLength: 7 }), (n, matrix) => {
    const ids = Array.from({ length: n }, (_, i) => `n${i}`)
    const sees = (a: number, b: number): boolean => a === b || (matrix[a][b] && matrix[b][a]) // discovery is mutual
    const lowestKnown = (a: number): string => ids.filter((_, b) => sees(a, b)).sort()[0]
    const boot = ids.filter((self, a) => {
      const hellos = ids.flatMap((p, b) => (b !== a && sees(a, b)) ? [{ id: p, inCluster: false, lowestKnown: lowestKnown(b) }] : [])
      return decideBootstrap(self, 3, hellos).action === 'bootstrap'
    })
    // two bootstrappers would need two disjoint groups of >= 3 nodes each; with n < 6 that cannot happen
    if (n < 6) assert.ok(boot.length <= 1, `bootstrappers: ${boot.join(',')}`)
  }))
})

test.run()
