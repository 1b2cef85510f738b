import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { CapacityIndex } from '../../placement/capacity-index.ts'

function inorder (idx: CapacityIndex): number[] {
  const out: number[] = []
  const walk = (t: number): void => { if (t < 0) return; walk(idx.left[t]); out.push(t); walk(idx.right[t]) }
  walk(idx.root)
  return out
}

test('treap keeps (key desc, rank asc) order and subtree maxima through inserts and removals', () => {
  fc.assert(fc.property(fc.array(fc.record({ node: fc.nat(30), key: fc.constantFrom(0, 0.25, 0.5, 1), free: fc.nat(100), del: fc.boolean() }), { maxLength: 200 }), (ops) => {
    const idx = new CapacityIndex(31)
    const model = new Map<number, { key: number, free: number }>()
    for (const op of ops) {
      idx.remove(op.node)
      model.delete(op.node)
      if (op.del) continue
      idx.insert(op.node, op.key, op.node, op.free, op.free, op.free, 1)
      model.set(op.node, { key: op.key, free: op.free })
    }
    const expected = [...model].sort((a, b) => b[1].key - a[1].key || a[0] - b[0]).map(([i]) => i)
    assert.equal(inorder(idx), expected)
    if (idx.root >= 0) assert.is(idx.max[4 * idx.root + 1], Math.max(...[...model.values()].map((v) => v.free)))
  }), { numRuns: 300 })
})

test.run()
