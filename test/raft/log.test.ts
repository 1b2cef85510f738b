// Unit tests for the unstable tail and the RaftLog over a MemoryLogStore.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Unstable } from '../../protocols/raft/unstable.ts'
import { RaftLog, limitSize } from '../../protocols/raft/log.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import type { Entry } from '../../protocols/raft/types.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

const conf = { voters: ['1'], learners: [] }
const ent = (index: number, term: number, data = ''): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode(data) })
const ents = (from: number, terms: number[]): Entry[] => terms.map((t, k) => ent(from + k, t))
const idx = (es: Entry[]): number[] => es.map(e => e.index)

function storeWith (terms: number[]): MemoryLogStore {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: ents(1, terms) })
  s.sync()
  return s
}

test('unstable: truncateAndAppend appends, replaces a suffix, or replaces everything', () => {
  const u = new Unstable(5)
  u.truncateAndAppend(ents(5, [1, 1]))
  assert.equal(idx(u.entries), [5, 6])
  u.truncateAndAppend(ents(7, [1]))
  assert.equal(idx(u.entries), [5, 6, 7])
  u.truncateAndAppend(ents(6, [2]))
  assert.equal(u.entries.map(e => e.term), [1, 2])
  u.truncateAndAppend(ents(3, [3]))
  assert.is(u.offset, 3)
  assert.equal(idx(u.entries), [3])
})

test('unstable: entries handed out are not handed out twice; truncation rewinds', () => {
  const u = new Unstable(1)
  u.truncateAndAppend(ents(1, [1, 1, 1]))
  assert.equal(idx(u.nextEntries()), [1, 2, 3])
  u.acceptInProgress()
  assert.equal(u.nextEntries(), [])
  u.truncateAndAppend(ents(3, [2, 2]))
  assert.equal(idx(u.nextEntries()), [3, 4])
})

test('unstable: stableTo drops persisted entries only when the term still matches', () => {
  const u = new Unstable(1)
  u.truncateAndAppend(ents(1, [1, 1, 1]))
  u.stableTo(2, 9)
  assert.is(u.offset, 1)
  u.stableTo(2, 1)
  assert.is(u.offset, 3)
  assert.equal(idx(u.entries), [3])
  assert.is(u.maybeTerm(3), 1)
  assert.is(u.maybeTerm(2), undefined)
})

test('unstable: a snapshot sets the offset and answers for its own index', () => {
  const u = new Unstable(1)
  u.restore({ meta: { index: 10, term: 3, conf }, data: new Uint8Array() })
  assert.is(u.maybeFirstIndex(), 11)
  assert.is(u.maybeLastIndex(), 10)
  assert.is(u.maybeTerm(10), 3)
  assert.ok(u.nextSnapshot() !== null)
  u.acceptInProgress()
  assert.is(u.nextSnapshot(), null)
  u.stableSnapTo(10)
  assert.is(u.snapshot, null)
})

test('raftLog: reads span storage and unstable; compacted reads throw Compacted', () => {
  const s = storeWith([1, 1, 2])
  s.compact(1, conf, new Uint8Array())
  const log = new RaftLog(s, 3, 0)
  log.append(ents(4, [3, 3]))
  assert.is(log.firstIndex(), 2)
  assert.is(log.lastIndex(), 5)
  assert.equal(idx(log.entries(2, 6)), [2, 3, 4, 5])
  assert.is(log.term(1), 1)
  assert.is(log.term(0), undefined)
  assert.is(log.term(6), undefined)
  try {
    log.entries(1, 3)
    assert.unreachable('compacted')
  } catch (e) {
    assert.instance(e, RaftError)
    assert.is((e as RaftError).kind, 'Compacted')
  }
})

test('raftLog: entries are bounded by bytes but never empty', () => {
  const s = new MemoryLogStore({ conf })
  s.save({ entries: [ent(1, 1, 'aaaa'), ent(2, 1, 'bbbb')] })
  const log = new RaftLog(s, 0, 0)
  log.append([ent(3, 1, 'cccc')])
  assert.equal(idx(log.entries(1, 4, 1)), [1])
  assert.equal(idx(log.entries(1, 4, 8)), [1, 2])
  assert.equal(idx(log.entries(2, 4, 8)), [2, 3])
  assert.equal(idx(limitSize([ent(1, 1, 'xxxxxxxx')], 1)), [1])
})

test('raftLog: maybeAppend checks the previous entry, truncates conflicts, and advances commit', () => {
  const log = new RaftLog(storeWith([1, 1, 1]), 1, 0)
  assert.is(log.maybeAppend(3, 2, 3, ents(4, [2])), undefined)
  assert.is(log.maybeAppend(3, 1, 9, ents(4, [2])), 4)
  assert.is(log.committed, 4)
  // an entry the log already holds: nothing changes
  assert.is(log.maybeAppend(1, 1, 4, ents(2, [1])), 2)
  assert.is(log.lastIndex(), 4)
})

test('raftLog: a conflicting entry replaces the suffix, but committed entries are never rewritten', () => {
  const log = new RaftLog(storeWith([1, 1, 1, 1]), 2, 0)
  assert.is(log.maybeAppend(2, 1, 2, ents(3, [3])), 3)
  assert.is(log.lastIndex(), 3)
  assert.is(log.term(3), 3)
  assert.is(log.maybeAppend(1, 1, 2, ents(2, [5])), undefined)
  assert.is(log.term(2), 1)
})

test('raftLog: findConflictByTerm finds the last index whose term is <= the given one', () => {
  const log = new RaftLog(storeWith([1, 1, 3, 3, 5, 5]), 0, 0)
  assert.is(log.findConflictByTerm(6, 4), 4)
  assert.is(log.findConflictByTerm(6, 2), 2)
  assert.is(log.findConflictByTerm(6, 0), 0)
  assert.is(log.findConflictByTerm(6, 5), 6)
  assert.is(log.findConflictByTerm(99, 5), 6)
})

test('raftLog: isUpToDate compares last term first, then length', () => {
  const log = new RaftLog(storeWith([1, 2, 2]), 0, 0)
  assert.ok(log.isUpToDate(1, 3))
  assert.ok(log.isUpToDate(3, 2))
  assert.not.ok(log.isUpToDate(2, 2))
  assert.not.ok(log.isUpToDate(9, 1))
})

test('raftLog: maybeCommit only on an entry of the given term unless told otherwise', () => {
  const log = new RaftLog(storeWith([1, 1, 2]), 0, 0)
  assert.not.ok(log.maybeCommit(2, 2))
  assert.is(log.committed, 0)
  assert.ok(log.maybeCommit(2, 2, true))
  assert.is(log.committed, 2)
  assert.ok(log.maybeCommit(3, 2))
  assert.not.ok(log.maybeCommit(2, 2))
})

test('raftLog: committed entries are handed out once, from applied at restart', () => {
  const log = new RaftLog(storeWith([1, 1, 1, 1]), 3, 1)
  assert.ok(log.hasNextCommittedEntries())
  assert.equal(idx(log.nextCommittedEntries(1 << 20)), [2, 3])
  assert.not.ok(log.hasNextCommittedEntries())
  log.appliedTo(3)
  assert.is(log.applied, 3)
  log.commitTo(4)
  assert.equal(idx(log.nextCommittedEntries(1 << 20)), [4])
})

test('raftLog: restoring a snapshot moves commit and hides older entries', () => {
  const log = new RaftLog(storeWith([1, 1]), 1, 1)
  log.restore({ meta: { index: 10, term: 4, conf }, data: new Uint8Array() })
  assert.is(log.committed, 10)
  assert.is(log.firstIndex(), 11)
  assert.is(log.lastIndex(), 10)
  assert.is(log.term(10), 4)
  assert.is(log.term(2), undefined)
  assert.not.ok(log.hasNextCommittedEntries())
})

test.run()
