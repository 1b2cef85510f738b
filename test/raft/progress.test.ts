// Unit tests for flow control (Progress, Inflights) and quorum arithmetic (ProgressTracker).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Inflights } from '../../protocols/raft/inflights.ts'
import { Progress } from '../../protocols/raft/progress.ts'
import { ProgressTracker } from '../../protocols/raft/tracker.ts'

test('inflights: full at capacity, freed by acknowledgement in order', () => {
  const w = new Inflights(3)
  w.add(5, 10)
  w.add(7, 10)
  assert.not.ok(w.full())
  w.add(9, 10)
  assert.ok(w.full())
  w.freeLE(6)
  assert.is(w.count(), 2)
  assert.not.ok(w.full())
  w.freeLE(100)
  assert.is(w.count(), 0)
})

test('inflights: a byte limit fills the window too; freeFirstOne releases one slot', () => {
  const w = new Inflights(10, 100)
  w.add(1, 60)
  assert.not.ok(w.full())
  w.add(2, 60)
  assert.ok(w.full())
  w.freeFirstOne()
  assert.is(w.count(), 1)
  assert.not.ok(w.full())
})

test('progress: probe sends one message, then waits', () => {
  const p = new Progress(5, 4, false)
  assert.not.ok(p.isPaused())
  p.sentEntries(2, 6, 2)
  assert.ok(p.isPaused())
  assert.is(p.next, 5)
  assert.ok(p.maybeUpdate(6))
  assert.not.ok(p.isPaused())
  assert.is(p.next, 7)
})

test('progress: replicate pipelines optimistically up to the window', () => {
  const p = new Progress(1, 2, false)
  p.becomeReplicate()
  p.sentEntries(3, 3, 3)
  assert.is(p.next, 4)
  assert.not.ok(p.isPaused())
  p.sentEntries(1, 4, 1)
  assert.ok(p.isPaused())
  p.maybeUpdate(3)
  p.inflights.freeLE(3)
  assert.not.ok(p.isPaused())
})

test('progress: maybeDecrTo uses the hint in probe, ignores stale rejections', () => {
  const p = new Progress(11, 4, false)
  p.match = 2
  assert.not.ok(p.maybeDecrTo(5, 3), 'rejection of an index we did not probe is stale')
  assert.ok(p.maybeDecrTo(10, 4))
  assert.is(p.next, 5)
  assert.ok(p.maybeDecrTo(4, 0))
  assert.is(p.next, 3, 'never below match+1')
})

test('progress: in replicate a rejection falls back to match+1; one at or below match is stale', () => {
  const p = new Progress(1, 4, false)
  p.maybeUpdate(5)
  p.becomeReplicate()
  p.sentEntries(3, 8, 3)
  assert.not.ok(p.maybeDecrTo(4, 0))
  assert.ok(p.maybeDecrTo(7, 0))
  assert.is(p.next, 6)
})

test('progress: snapshot state pauses; leaving it resumes after the snapshot', () => {
  const p = new Progress(1, 4, false)
  p.becomeSnapshot(20)
  assert.ok(p.isPaused())
  p.becomeProbe()
  assert.is(p.next, 21)
  assert.is(p.state, 'probe')
})

test('tracker: commit index is the quorum-th highest match among voters only', () => {
  const t = new ProgressTracker(4)
  t.setConf({ voters: ['1', '2', '3'], learners: ['4'] }, 1)
  const set = (id: string, m: number): void => { t.progress.get(id)!.match = m }
  set('1', 5); set('2', 3); set('3', 1); set('4', 9)
  assert.is(t.committed(), 3)
  set('4', 100)
  assert.is(t.committed(), 3, 'a learner does not count')
  t.setConf({ voters: ['1', '2', '3', '4'], learners: [] }, 1)
  assert.is(t.committed(), 3, 'four voters need three: 100, 5, 3')
  set('3', 4)
  assert.is(t.committed(), 4)
})

test('tracker: vote tally over voters; a learner vote is not counted', () => {
  const t = new ProgressTracker(4)
  t.setConf({ voters: ['1', '2', '3'], learners: ['4'] }, 1)
  t.recordVote('1', true)
  t.recordVote('4', true)
  assert.is(t.tally().result, 'pending')
  t.recordVote('2', false)
  assert.is(t.tally().result, 'pending')
  t.recordVote('3', false)
  assert.is(t.tally().result, 'lost')
  t.resetVotes()
  t.recordVote('1', true)
  t.recordVote('3', true)
  t.recordVote('3', false)
  assert.is(t.tally().result, 'won', 'first answer counts')
})

test('tracker: quorumActive counts self and recently active voters', () => {
  const t = new ProgressTracker(4)
  t.setConf({ voters: ['1', '2', '3', '4', '5'], learners: ['6'] }, 1)
  t.progress.get('6')!.recentActive = true
  t.progress.get('2')!.recentActive = true
  assert.not.ok(t.quorumActive('1'))
  t.progress.get('3')!.recentActive = true
  assert.ok(t.quorumActive('1'))
})

test('tracker: setConf keeps progress of remaining members and drops removed ones', () => {
  const t = new ProgressTracker(4)
  t.setConf({ voters: ['1', '2'], learners: ['3'] }, 7)
  t.progress.get('3')!.match = 5
  t.setConf({ voters: ['1', '2', '3'], learners: [] }, 9)
  assert.is(t.progress.get('3')!.match, 5)
  assert.not.ok(t.progress.get('3')!.isLearner)
  t.setConf({ voters: ['1', '3'], learners: [] }, 9)
  assert.not.ok(t.progress.has('2'))
})

test.run()
