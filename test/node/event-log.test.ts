// The event history names nodes as they are known when it is read: a joiner's membership change
// applies before its node registers (the tour's `events --since 10m --no-follow` showed
// "membership: …qUYm3zak3oUX joins as a learner" long after it was node1).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EventLog } from '../../node/events.ts'
import { harness, registerNode } from '../storage/sm-fixtures.ts'

const JOINER = '12D3KooWPVx21ybVFXh7MFHFyiu2JfQoizvKo8NcqUYm3zak3oUX'

test('a membership note read after its node registered names the node; a live subscriber sees what was known then', () => {
  const h = harness()
  const log = new EventLog(h.sm, () => 1000)
  const live: string[] = []
  log.subscribeNotes((e) => { live.push(e.text) })
  log.confApplied(1, { type: 'addLearner', node: JOINER })
  log.note(`autopilot: promote ${JOINER} (caught up)`)
  assert.equal(live, ['membership: …qUYm3zak3oUX joins as a learner', 'autopilot: promote …qUYm3zak3oUX (caught up)'])
  assert.ok(h.run(registerNode(JOINER, { name: 'node1' })).ok)
  assert.equal(log.recent().map((e) => e.text), ['membership: node1 joins as a learner', 'autopilot: promote node1 (caught up)'])
})

test.run()
