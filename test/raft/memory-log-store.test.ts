import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import type { Entry } from '../../protocols/raft/types.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { encodeConfChange } from '../../protocols/raft/confchange.ts'

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

test('initialState conf follows conf entries after the snapshot', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1), { index: 2, term: 1, type: 'conf', data: encodeConfChange({ type: 'addLearner', node: '4' }) }] })
  assert.equal(s.initialState().conf, { voters: ['1', '2', '3'], learners: ['4'] })
})

test.run()
