import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decide, targetVoters } from '../../node/autopilot.ts'
import type { AutopilotInput, MemberHealth } from '../../node/autopilot.ts'

const ok: MemberHealth = { silentMs: 100, lag: 0 }
const gone: MemberHealth = { silentMs: 60_000, lag: 1000 }

function input (over: Partial<AutopilotInput>): AutopilotInput {
  return {
    leader: 'a',
    conf: { voters: ['a', 'b', 'c'], learners: [] },
    candidates: ['a', 'b', 'c'],
    health: new Map([['a', ok], ['b', ok], ['c', ok]]),
    changeInFlight: false,
    deadAfterMs: 10_000,
    healthyWithinMs: 3_000,
    maxPromoteLag: 100,
    ...over
  }
}

test('target voters: odd sizes only, 1 below three healthy members, 3 below five, then 5', () => {
  assert.equal([1, 2, 3, 4, 5, 6, 9].map(targetVoters), [1, 1, 3, 3, 5, 5, 5])
})

test('a discovered node is added as a learner', () => {
  const d = decide(input({ candidates: ['a', 'b', 'c', 'd'], health: new Map([['a', ok], ['b', ok], ['c', ok], ['d', ok]]) }))
  assert.equal(d.change, { type: 'addLearner', node: 'd' })
})

test('nothing happens while a change is in flight', () => {
  const d = decide(input({ candidates: ['a', 'b', 'c', 'd'], changeInFlight: true }))
  assert.is(d.change, null)
})

test('a single-node cluster promotes its first learners up to three voters', () => {
  const d = decide(input({ conf: { voters: ['a'], learners: ['b', 'c'] } }))
  assert.equal(d.change, { type: 'promote', node: 'b' })
})

test('a lagging learner is not promoted', () => {
  const d = decide(input({ conf: { voters: ['a'], learners: ['b'] }, candidates: ['a', 'b'], health: new Map([['a', ok], ['b', { silentMs: 10, lag: 5000 }]]) }))
  assert.is(d.change, null)
})

test('a dead voter is replaced: promote a healthy learner first, then remove the dead voter', () => {
  const health = new Map([['a', ok], ['b', ok], ['c', gone], ['d', ok]])
  const first = decide(input({ conf: { voters: ['a', 'b', 'c'], learners: ['d'] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal(first.change, { type: 'promote', node: 'd' })
  const second = decide(input({ conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal(second.change, { type: 'remove', node: 'c' })
})

test('five healthy members grow the voter set to five', () => {
  const health = new Map(['a', 'b', 'c', 'd', 'e'].map((n) => [n, ok]))
  const d = decide(input({ conf: { voters: ['a', 'b', 'c'], learners: ['d', 'e'] }, candidates: ['a', 'b', 'c', 'd', 'e'], health }))
  assert.equal(d.change, { type: 'promote', node: 'd' })
})

test('a surplus of healthy voters shrinks by one non-leader voter', () => {
  const health = new Map(['a', 'b', 'c', 'd'].map((n) => [n, ok]))
  const d = decide(input({ conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal(d.change, { type: 'remove', node: 'd' })
})

test('never removes a voter when that would lose the quorum', () => {
  const health = new Map([['a', ok], ['b', gone], ['c', gone]])
  const d = decide(input({ health }))
  assert.is(d.change, null)
})

test('the leader is never chosen for removal', () => {
  const health = new Map(['a', 'b', 'c', 'd'].map((n) => [n, ok]))
  for (const leader of ['a', 'b', 'c', 'd']) {
    const d = decide(input({ leader, conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
    assert.ok(d.change != null && d.change.node !== leader)
  }
})

test.run()
