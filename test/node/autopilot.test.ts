import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decide, faultTolerance, targetVoters } from '../../node/autopilot.ts'
import type { AutopilotDecision, AutopilotInput, MemberHealth } from '../../node/autopilot.ts'
import type { ConfChange, ConfChangeV2, ConfState } from '../../protocols/raft/types.ts'
import { applyConfChange, confChangeError, isJoint } from '../../protocols/raft/confchange.ts'

const ok: MemberHealth = { silentMs: 100, lag: 0 }
const gone: MemberHealth = { silentMs: 60_000, lag: 1000 }

/** the ConfChange a decision proposes on its own, or null (none, or a replace) */
const changeOf = (d: AutopilotDecision): ConfChange | null => d.kind === 'change' ? d.change : null

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
  assert.equal(changeOf(d), { type: 'addLearner', node: 'd' })
})

test('nothing happens while a change is in flight', () => {
  const d = decide(input({ candidates: ['a', 'b', 'c', 'd'], changeInFlight: true }))
  assert.is(d.kind, 'none', d.why)
})

test('a single-node cluster promotes its first learners up to three voters', () => {
  const d = decide(input({ conf: { voters: ['a'], learners: ['b', 'c'] } }))
  assert.equal(changeOf(d), { type: 'promote', node: 'b' })
})

test('a lagging learner is not promoted', () => {
  const d = decide(input({ conf: { voters: ['a'], learners: ['b'] }, candidates: ['a', 'b'], health: new Map([['a', ok], ['b', { silentMs: 10, lag: 5000 }]]) }))
  assert.is(d.kind, 'none', d.why)
})

test('a dead voter is replaced by a caught-up learner in one decision', () => {
  const health = new Map([['a', ok], ['b', ok], ['c', gone], ['d', ok]])
  const d = decide(input({ conf: { voters: ['a', 'b', 'c'], learners: ['d'] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal({ kind: d.kind, promote: d.kind === 'replace' ? d.promote : null, remove: d.kind === 'replace' ? d.remove : null }, { kind: 'replace', promote: 'd', remove: 'c' })
  assert.match(d.why, /c unreachable/)
})

test('a replace interrupted after its promote (4 voters, one dead) finishes by removing the dead voter', () => {
  const health = new Map([['a', ok], ['b', ok], ['c', gone], ['d', ok]])
  const d = decide(input({ conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal(changeOf(d), { type: 'remove', node: 'c' })
})

test('five healthy members grow the voter set to five', () => {
  const health = new Map(['a', 'b', 'c', 'd', 'e'].map((n) => [n, ok]))
  const d = decide(input({ conf: { voters: ['a', 'b', 'c'], learners: ['d', 'e'] }, candidates: ['a', 'b', 'c', 'd', 'e'], health }))
  assert.equal(changeOf(d), { type: 'promote', node: 'd' })
})

test('fault tolerance by voter count', () => {
  assert.equal([1, 2, 3, 4, 5, 6, 7].map(faultTolerance), [0, 0, 1, 1, 2, 2, 3])
})

test('a surplus of healthy voters shrinks by one non-leader voter', () => {
  const health = new Map(['a', 'b', 'c', 'd'].map((n) => [n, ok]))
  const d = decide(input({ conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
  assert.equal(changeOf(d), { type: 'remove', node: 'd' })
})

test('never removes a voter when that would lose the quorum', () => {
  const health = new Map([['a', ok], ['b', gone], ['c', gone]])
  const d = decide(input({ health }))
  assert.is(d.kind, 'none', d.why)
})

test('the leader is never chosen for removal', () => {
  const health = new Map(['a', 'b', 'c', 'd'].map((n) => [n, ok]))
  for (const leader of ['a', 'b', 'c', 'd']) {
    const d = decide(input({ leader, conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health }))
    const c = changeOf(d)
    assert.ok(c != null && c.node !== leader, d.why)
  }
})

// A past bug: with 3 nodes and one dead ~10 s, autopilot removed the dead voter, then demoted a healthy
// one: 3 voters became 1. Each row runs autopilot to a fixed point (applying each decision to the
// conf) and checks the voter count never falls below what the live nodes allow.
interface Row { name: string, conf: ConfState, health: Record<string, MemberHealth>, minVoters: number, finalVoters: string[], replaces?: number }
const rows: Row[] = [
  { name: '3 voters, 1 dead, no other node: keep 3 (the past 3-to-1 bug)', conf: { voters: ['a', 'b', 'c'], learners: [] }, health: { a: ok, b: ok, c: gone }, minVoters: 3, finalVoters: ['a', 'b', 'c'] },
  { name: '3 voters, 1 dead, a lagging learner: keep 3 until it catches up', conf: { voters: ['a', 'b', 'c'], learners: ['d'] }, health: { a: ok, b: ok, c: gone, d: { silentMs: 10, lag: 5000 } }, minVoters: 3, finalVoters: ['a', 'b', 'c'] },
  { name: '3 voters, 1 dead, a caught-up learner: replaced', conf: { voters: ['a', 'b', 'c'], learners: ['d'] }, health: { a: ok, b: ok, c: gone, d: ok }, minVoters: 3, finalVoters: ['a', 'b', 'd'], replaces: 1 },
  { name: '3 voters, 2 dead: keep 3 (no quorum to change anything safely)', conf: { voters: ['a', 'b', 'c'], learners: [] }, health: { a: ok, b: gone, c: gone }, minVoters: 3, finalVoters: ['a', 'b', 'c'] },
  { name: '5 voters, 1 dead, no learner: keep 5', conf: { voters: ['a', 'b', 'c', 'd', 'e'], learners: [] }, health: { a: ok, b: ok, c: ok, d: ok, e: gone }, minVoters: 5, finalVoters: ['a', 'b', 'c', 'd', 'e'] },
  { name: '5 voters, 2 dead, no learner: keep 5', conf: { voters: ['a', 'b', 'c', 'd', 'e'], learners: [] }, health: { a: ok, b: ok, c: ok, d: gone, e: gone }, minVoters: 5, finalVoters: ['a', 'b', 'c', 'd', 'e'] },
  { name: '5 voters, 1 dead, a learner: replaced, 5 kept', conf: { voters: ['a', 'b', 'c', 'd', 'e'], learners: ['f'] }, health: { a: ok, b: ok, c: ok, d: ok, e: gone, f: ok }, minVoters: 5, finalVoters: ['a', 'b', 'c', 'd', 'f'], replaces: 1 },
  { name: '3 voters, 2 healthy learners: grow to 5', conf: { voters: ['a', 'b', 'c'], learners: ['d', 'e'] }, health: { a: ok, b: ok, c: ok, d: ok, e: ok }, minVoters: 3, finalVoters: ['a', 'b', 'c', 'd', 'e'] },
  { name: '2 healthy voters are not shrunk to 1', conf: { voters: ['a', 'b'], learners: [] }, health: { a: ok, b: ok }, minVoters: 2, finalVoters: ['a', 'b'] }
]

for (const row of rows) {
  test(`fixed point: ${row.name}`, () => {
    // Decisions are applied through the Raft core's own conf arithmetic; a `replace` is one joint
    // change: the joint config holds (old voters) and (new voters) at once, autopilot waits while
    // joint, and the leader's auto-leave ends it.
    let conf: ConfState = { voters: [...row.conf.voters], learners: [...row.conf.learners] }
    const health = new Map(Object.entries(row.health))
    const candidates = Object.keys(row.health)
    const seen: string[] = []
    let replaces = 0
    const check = (): void => {
      assert.ok(conf.voters.length >= row.minVoters, `voters fell to ${conf.voters.join(',')} after ${seen.join(' | ')}`)
      assert.ok((conf.votersOutgoing ?? conf.voters).length >= row.minVoters, `outgoing voters fell after ${seen.join(' | ')}`)
    }
    for (let step = 0; step < 10; step++) {
      const d = decide(input({ conf, candidates, health }))
      seen.push(`${d.kind}: ${d.why}`)
      if (d.kind === 'none') break
      if (d.kind === 'change') {
        assert.is(confChangeError(conf, d.change), null, d.why)
        conf = applyConfChange(conf, d.change)
      } else {
        replaces++
        const cc: ConfChangeV2 = { changes: [{ type: 'add-voter', node: d.promote }, { type: 'remove', node: d.remove }], transition: 'auto' }
        assert.is(confChangeError(conf, cc), null, d.why)
        conf = applyConfChange(conf, cc)
        assert.ok(isJoint(conf), 'a replacement goes through one joint configuration')
        check()
        assert.is(decide(input({ conf, candidates, health })).kind, 'none', 'nothing else is decided while joint')
        conf = applyConfChange(conf, { changes: [], transition: 'auto' })
      }
      check()
    }
    assert.is(replaces, row.replaces ?? 0, `replace decisions: ${seen.join(' | ')}`)
    assert.equal([...conf.voters].sort(), row.finalVoters, seen.join(' | '))
  })
}

test('keeping a dead voter says why', () => {
  const d = decide(input({ health: new Map([['a', ok], ['b', ok], ['c', gone]]) }))
  assert.is(d.kind, 'none')
  assert.match(d.why, /keeping 3 voters with c unreachable/)
})

test.run()
