// Conf change v2 and joint quorums, below the scenario level: encoding, validation, the
// configuration each change yields, and the tracker's joint arithmetic.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { applyConfChange, confChangeError, decodeConfChange, encodeConfChange } from '../../protocols/raft/confchange.ts'
import { ProgressTracker } from '../../protocols/raft/tracker.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import type { ConfChangeV2, ConfState } from '../../protocols/raft/types.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

const base: ConfState = { voters: ['1', '2', '3'], learners: ['4'] }

test('v2 encoding round-trips; garbage is an InvalidConfChange, v1 bytes still decode as v1', () => {
  const ccs: ConfChangeV2[] = [
    { changes: [], transition: 'auto' },
    { changes: [{ type: 'add-voter', node: '4' }, { type: 'remove', node: '3' }], transition: 'explicit' },
    { changes: [{ type: 'add-learner', node: 'é'.repeat(300) }], transition: 'auto' }
  ]
  for (const cc of ccs) assert.equal(decodeConfChange(encodeConfChange(cc)), cc)
  assert.equal(decodeConfChange(encodeConfChange({ type: 'promote', node: '4' })), { type: 'promote', node: '4' })
  for (const bad of [[4], [4, 2], [4, 0, 9, 0, 1, 65], [4, 0, 1, 0, 5, 65], [4, 0, 1, 0, 0], [4, 0, 1, 0, 1, 0xff]]) {
    assert.throws(() => decodeConfChange(new Uint8Array(bad)), (e: unknown) => e instanceof RaftError && e.kind === 'InvalidConfChange', String(bad))
  }
})

test('replacing a voter with transition explicit enters joint; the empty change leaves it', () => {
  const joint = applyConfChange(base, { changes: [{ type: 'add-voter', node: '4' }, { type: 'add-learner', node: '3' }], transition: 'explicit' })
  assert.equal(joint, { voters: ['1', '2', '4'], learners: [], votersOutgoing: ['1', '2', '3'], learnersNext: ['3'], autoLeave: false })
  assert.equal(applyConfChange(joint, { changes: [], transition: 'auto' }), { voters: ['1', '2', '4'], learners: ['3'] })
  // Any other change while joint is refused and, committed anyway, changes nothing.
  assert.ok(confChangeError(joint, { type: 'remove', node: '1' }) !== null)
  assert.ok(confChangeError(joint, { changes: [{ type: 'remove', node: '1' }], transition: 'auto' }) !== null)
  assert.is(applyConfChange(joint, { type: 'remove', node: '1' }), joint)
  assert.is(confChangeError(joint, { changes: [], transition: 'auto' }), null)
})

test('auto with one voter changed is simple (no joint); with two it is joint and autoLeave', () => {
  assert.equal(applyConfChange(base, { changes: [{ type: 'add-voter', node: '4' }], transition: 'auto' }), { voters: ['1', '2', '3', '4'], learners: [] })
  const j = applyConfChange(base, { changes: [{ type: 'add-voter', node: '4' }, { type: 'remove', node: '3' }], transition: 'auto' })
  assert.is(j.autoLeave, true)
  assert.equal(j.votersOutgoing, ['1', '2', '3'])
})

test('validation: nothing to leave, duplicates, no voter left, not a member', () => {
  const err = (cc: ConfChangeV2): string | undefined => confChangeError(base, cc)?.message
  assert.match(err({ changes: [], transition: 'auto' }) ?? '', /nothing to leave/)
  assert.match(err({ changes: [{ type: 'remove', node: '1' }, { type: 'add-voter', node: '1' }], transition: 'auto' }) ?? '', /twice/)
  assert.match(err({ changes: [{ type: 'remove', node: '1' }, { type: 'remove', node: '2' }, { type: 'remove', node: '3' }], transition: 'auto' }) ?? '', /no voter/)
  assert.match(err({ changes: [{ type: 'remove', node: '9' }], transition: 'auto' }) ?? '', /not a member/)
  assert.match(err({ changes: [{ type: 'add-voter', node: '1' }], transition: 'auto' }) ?? '', /already a voter/)
})

test('joint tracker: commit, votes and quorum need a majority of both halves', () => {
  const t = new ProgressTracker(8)
  t.setConf({ voters: ['1', '2', '4'], learners: [], votersOutgoing: ['1', '2', '3'], learnersNext: [] }, 1)
  const match: Record<string, number> = { 1: 9, 2: 3, 3: 9, 4: 5 }
  for (const [id, m] of Object.entries(match)) t.progress.get(id)!.match = m
  // incoming (1 2 4): 5; outgoing (1 2 3): 9 — the joint commit is the smaller.
  assert.is(t.committed(), 5)
  t.recordVote('1', true)
  t.recordVote('3', true)
  assert.is(t.tally().result, 'pending') // outgoing won, incoming not yet
  t.recordVote('4', false)
  t.recordVote('2', false)
  assert.is(t.tally().result, 'lost')
  assert.not.ok(t.hasQuorum((id) => id === '1' || id === '3'))
  assert.ok(t.hasQuorum((id) => id === '1' || id === '2'))
  assert.ok(t.isVoter('3'))
  assert.not.ok(t.isSingleVoter('1'))
})

test('a store restarts into the joint config only once the joint entry is committed', () => {
  const store = new MemoryLogStore({ conf: base })
  const data = encodeConfChange({ changes: [{ type: 'add-voter', node: '4' }, { type: 'remove', node: '3' }], transition: 'auto' })
  store.save({ entries: [{ term: 1, index: 1, type: 'conf', data }], hardState: { term: 1, vote: '1', commit: 0 } })
  store.sync()
  assert.equal(store.initialState().conf, base)
  store.save({ hardState: { term: 1, vote: '1', commit: 1 } })
  store.sync()
  assert.equal(store.initialState().conf.votersOutgoing, ['1', '2', '3'])
})

test.run()
