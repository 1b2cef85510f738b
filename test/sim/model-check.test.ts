// The model checker as a test: a small exhaustive search of the clean core
// finds no violation, and each planted bug the search can reach is found, with
// the checker that should catch it, at a depth small enough to run in seconds
// (the action set cut to what the shortest counterexample needs).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { defaultOptions, runModelCheck } from '../../sim/model-check.ts'
import type { ModelCheckOptions } from '../../sim/model-check.ts'
import type { SimBug } from '../../sim/replica.ts'

function opts (over: Partial<ModelCheckOptions>, budgets: Partial<ModelCheckOptions['budgets']> = {}): ModelCheckOptions {
  const o = defaultOptions()
  return { ...o, quiet: true, ...over, budgets: { ...o.budgets, ...budgets } }
}

test('clean core: every interleaving to depth 5 with all fault kinds, no violation', () => {
  const r = runModelCheck(opts({ depth: 5 }))
  assert.equal(r.violations, [])
  assert.is(r.depth, 5)
  assert.ok(r.distinct > 10_000, `explored a real state space (${r.distinct} distinct states)`)
  assert.ok(r.explored > r.distinct, 'some interleavings reach the same state (hashing merges them)')
})

test('clean core: writes, reads and elections to depth 10 over fifo links, no violation', () => {
  // the bounds that find stale-read-index below (two levels short), without the bug
  const r = runModelCheck(opts({ depth: 10, fifo: true }, { drop: false, dups: 0, crashes: 0, confs: 0, timeouts: 2, heartbeats: 0 }))
  assert.equal(r.violations, [])
  assert.ok(r.distinct > 10_000, `${r.distinct} distinct states`)
})

const CASES: Array<{ bug: SimBug, depth: number, checker: string, o: Partial<ModelCheckOptions>, b: Partial<ModelCheckOptions['budgets']> }> = [
  { bug: 'vote-ignores-term', depth: 6, checker: 'election-safety', o: {}, b: { drop: false, dups: 0, crashes: 0, confs: 0, writes: 0, reads: 0 } },
  { bug: 'conf-not-rolled-back', depth: 5, checker: 'config-safety', o: {}, b: { drop: false, dups: 0, writes: 0, reads: 0 } },
  { bug: 'ack-before-sync', depth: 6, checker: 'election-safety', o: {}, b: { drop: false, dups: 0, confs: 0, writes: 0, reads: 0 } },
  { bug: 'stale-read-index', depth: 12, checker: 'linearizable-reads', o: { fifo: true }, b: { drop: false, dups: 0, crashes: 0, confs: 0, timeouts: 2, heartbeats: 0 } }
]

for (const c of CASES) {
  test(`bug ${c.bug} is found within depth ${c.depth} by ${c.checker}`, () => {
    const r = runModelCheck(opts({ depth: c.depth, bug: c.bug, ...c.o }, c.b))
    assert.ok(r.violations.length > 0, `${c.bug}: no violation within depth ${c.depth} (${r.distinct} states)`)
    const v = r.violations[0]
    assert.ok(v.violations.some(m => m.startsWith(c.checker + ':')), `${c.bug}: expected ${c.checker}, got ${v.violations.join('; ')}`)
    assert.ok(v.path.length > 0 && v.path.length <= c.depth, `a readable path of at most ${c.depth} steps: ${v.path.join(' / ')}`)
  })
}

test.run()
