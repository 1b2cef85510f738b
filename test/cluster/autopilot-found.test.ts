// Autopilot regressions found by the real-process cluster test (cluster.test.ts): pure decisions.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decide } from '../../node/autopilot.ts'
import type { AutopilotInput, MemberHealth } from '../../node/autopilot.ts'

const ok: MemberHealth = { silentMs: 100, lag: 0 }
const base: AutopilotInput = {
  leader: 'b',
  conf: { voters: ['a', 'b', 'c'], learners: [] },
  candidates: ['a', 'b', 'c'],
  health: new Map([['a', ok], ['b', ok], ['c', ok]]),
  changeInFlight: false,
  deadAfterMs: 10_000,
  healthyWithinMs: 3_000,
  maxPromoteLag: 1_000
}

test('a voter silent for a few seconds (the old leader, just killed) never makes autopilot remove a healthy voter', () => {
  for (const silentMs of [3_001, 5_000, 9_999]) {
    const d = decide({ ...base, health: new Map([['a', { silentMs, lag: 3 }], ['b', ok], ['c', ok]]) })
    assert.is(d.kind, 'none', `silent ${silentMs} ms: ${d.why}`)
  }
})

test('five voters with two briefly silent keep all five', () => {
  const slow: MemberHealth = { silentMs: 4_000, lag: 2 }
  const d = decide({ ...base, conf: { voters: ['a', 'b', 'c', 'd', 'e'], learners: [] }, candidates: ['a', 'b', 'c', 'd', 'e'], health: new Map([['a', slow], ['b', ok], ['c', ok], ['d', slow], ['e', ok]]) })
  assert.is(d.kind, 'none', d.why)
})

test('a surplus of voters that are all healthy still shrinks', () => {
  const d = decide({ ...base, conf: { voters: ['a', 'b', 'c', 'd'], learners: [] }, candidates: ['a', 'b', 'c', 'd'], health: new Map(['a', 'b', 'c', 'd'].map((n) => [n, ok])) })
  assert.equal(d.kind === 'change' ? d.change : null, { type: 'remove', node: 'd' })
})

test.run()
