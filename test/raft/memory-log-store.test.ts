import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import type { Entry } from '../../protocols/raft/types.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { encodeConfChange } from '../../protocols/raft/confchange.ts'
import fc from 'fast-check'

const conf = { voters: ['1', '2', '3'], learners: [] }
const ent = (index: number, term: number, data = 'x'): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode(data) })

function kind (f: () => unknown): string | undefined {
  try { f() } catch (e) { return e instanceof RaftError ? e.kind : 'other' }
  return undefined
}

test('a fresh store is empty with the initial conf in its snapshot meta', () => {
  const s = new MemoryLogStore({ conf })
  assert.equal(s.initialState(), { hardState: { term: 0, vote: null, commit: 0 }, conf })
  assert.equal(s.firstIndex(), 1)
  assert.equal(s.lastIndex(), 0)
  assert.equal(s.term(0), 0)
  assert.equal(s.snapshot().meta, { index: 0, term: 0, conf })
  assert.is(kind(() => s.entries(0, 1)), 'Compacted')
  assert.is(kind(() => s.entries(1, 2)), 'Unavailable')
})

test('append truncates a conflicting suffix and reads reflect unsynced saves', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1), ent(2, 1), ent(3, 1)], hardState: { term: 1, vote: '1', commit: 0 } })
  s.save({ entries: [ent(2, 2)] })
  assert.is(s.lastIndex(), 2)
  assert.is(s.term(2), 2)
  assert.equal(s.entries(1, 3).map(e => e.term), [1, 2])
  assert.is(kind(() => s.save({ entries: [ent(5, 2)] })), 'Unavailable')
})

test('entries respects maxBytes but always returns at least one', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1, 'aaaa'), ent(2, 1, 'bbbb'), ent(3, 1, 'cccc')] })
  assert.is(s.entries(1, 4, 1).length, 1)
  assert.is(s.entries(1, 4, 8).length, 2)
  assert.is(s.entries(1, 4).length, 3)
})

test('crash discards unsynced saves and keeps synced ones', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1)], hardState: { term: 1, vote: '2', commit: 0 } })
  s.sync()
  s.save({ entries: [ent(2, 1)], hardState: { term: 2, vote: '3', commit: 1 } })
  assert.is(s.lastIndex(), 2)
  s.crash()
  assert.is(s.lastIndex(), 1)
  assert.equal(s.initialState().hardState, { term: 1, vote: '2', commit: 0 })
  assert.is(s.durableCopy().entries.length, 1)
})

test('compact is durable at once, and keep leaves entries readable below the snapshot', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [1, 2, 3, 4, 5].map(i => ent(i, i < 3 ? 1 : 2)) })
  s.sync()
  s.compact(4, conf, new Uint8Array([9]), 2)
  s.crash()
  assert.equal(s.snapshot().meta, { index: 4, term: 2, conf })
  assert.is(s.firstIndex(), 3)
  assert.is(s.term(2), 1)
  assert.equal(s.entries(3, 6).map(e => e.index), [3, 4, 5])
  assert.is(kind(() => s.entries(2, 3)), 'Compacted')
  s.compact(5, conf, new Uint8Array([9]))
  assert.is(s.firstIndex(), 6)
  assert.is(s.lastIndex(), 5)
  assert.is(s.term(5), 2)
})

test('a snapshot save replaces a disagreeing log and keeps an agreeing suffix', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1), ent(2, 1), ent(3, 1)] })
  s.save({ snapshot: { meta: { index: 2, term: 1, conf }, data: new Uint8Array() } })
  assert.is(s.firstIndex(), 3)
  assert.is(s.lastIndex(), 3)
  s.save({ snapshot: { meta: { index: 10, term: 4, conf }, data: new Uint8Array() } })
  assert.is(s.firstIndex(), 11)
  assert.is(s.lastIndex(), 10)
  assert.is(s.term(10), 4)
})

test('initialState conf follows the committed conf entries after the snapshot, and only those', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1), { index: 2, term: 1, type: 'conf', data: encodeConfChange({ type: 'addLearner', node: '4' }) }] })
  // Uncommitted: a new leader may still truncate it, so a restart must not read it.
  assert.equal(s.initialState().conf, { voters: ['1', '2', '3'], learners: [] })
  s.save({ hardState: { term: 1, vote: null, commit: 2 } })
  assert.equal(s.initialState().conf, { voters: ['1', '2', '3'], learners: ['4'] })
})

/** Everything a reader can see. */
function view (s: MemoryLogStore): unknown {
  const first = s.firstIndex()
  const last = s.lastIndex()
  return { init: s.initialState(), first, last, snap: s.snapshot().meta, ents: last >= first ? s.entries(first, last + 1) : [] }
}

test('crash() returns exactly the state seen at the last sync (random saves, syncs, compactions, crashes)', () => {
  type Op = { kind: 'append', at: number, terms: number[] } | { kind: 'hard', term: number } | { kind: 'sync' } | { kind: 'crash' } | { kind: 'compact', back: number }
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('append' as const), at: fc.nat(3), terms: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 4 }) }),
    fc.record({ kind: fc.constant('hard' as const), term: fc.integer({ min: 1, max: 9 }) }),
    fc.constant({ kind: 'sync' as const }),
    fc.constant({ kind: 'crash' as const }),
    fc.record({ kind: fc.constant('compact' as const), back: fc.nat(3) })
  )
  fc.assert(fc.property(fc.array(op, { maxLength: 40 }), ops => {
    const s = new MemoryLogStore({ conf })
    let synced = view(s)
    let term = 1
    for (const o of ops) {
      if (o.kind === 'append') {
        // append after a random suffix is cut off: at entries back from the end
        const from = Math.max(s.firstIndex(), s.lastIndex() + 1 - o.at)
        term = Math.max(term, ...o.terms)
        s.save({ entries: o.terms.map((_, k) => ent(from + k, term)) })
      } else if (o.kind === 'hard') {
        s.save({ hardState: { term: o.term, vote: null, commit: 0 } })
      } else if (o.kind === 'sync') {
        s.sync()
        synced = view(s)
      } else if (o.kind === 'crash') {
        s.crash()
        assert.equal(view(s), synced)
      } else {
        // compaction is durable at once: only compact what is synced, then it is the new baseline
        s.sync()
        const idx = s.lastIndex() - o.back
        if (idx >= s.firstIndex()) s.compact(idx, conf, new Uint8Array(), 1)
        synced = view(s)
      }
    }
  }), { numRuns: 300, seed: 7 })
})

test.run()
