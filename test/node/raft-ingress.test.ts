// Table tests of who may speak Raft (node/core/raft-ingress.ts) with the real payload checks.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { admitRaftMessage, DropLogOnce, MAX_INDEX, MAX_TERM, MAX_TERM_LEAP } from '../../node/core/raft-ingress.ts'
import type { IngressContext } from '../../node/core/raft-ingress.ts'
import { checkEntryData } from '../../node/core/raft-ingress-context.ts'
import type { Message } from '../../protocols/raft/types.ts'
import { encodeConfChange } from '../../protocols/raft/rawnode.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope, validateSnapshot } from '../../storage/state-machine.ts'

const ME = 'me'
const LEADER = 'v1'
const V2 = 'v2'
const LEARNER = 'l1'
const STRANGER = 'x'

function ctx (over: Partial<IngressContext> = {}): IngressContext {
  return { self: ME, voters: [ME, LEADER, V2], learners: [LEARNER], term: 5, leader: LEADER, isLeader: false, lastIndex: 100, checkEntry: checkEntryData, checkSnapshot: validateSnapshot, ...over }
}
const asLeader = (over: Partial<IngressContext> = {}): IngressContext => ctx({ leader: ME, isLeader: true, ...over })
const m = (type: Message['type'], from: string, over: Partial<Message> = {}): Message => ({ type, from, to: ME, term: 5, ...over })

const goodCmd = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: '12D3KooWA', name: 'a' }, at: 1, key: 'k' })
const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
sm.apply(1, goodCmd)
const goodSnap = sm.snapshot()
const garbage = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 0xff)
const snapMsg = (data: Uint8Array, voters = [LEADER, ME, V2]): Partial<Message> => ({ snapshot: { meta: { index: 10, term: 5, conf: { voters, learners: [] } }, data } })

type Row = [string, string, Message, IngressContext, string | null]
const rows: Row[] = [
  ['leader heartbeat', LEADER, m('MsgHeartbeat', LEADER, { commit: 3 }), ctx(), null],
  ['leader MsgApp with a command and a no-op', LEADER, m('MsgApp', LEADER, { index: 1, logTerm: 5, commit: 1, entries: [{ term: 5, index: 2, type: 'normal', data: new Uint8Array(0) }, { term: 5, index: 3, type: 'normal', data: goodCmd }] }), ctx(), null],
  ['leader MsgApp with a conf change', LEADER, m('MsgApp', LEADER, { index: 1, logTerm: 5, entries: [{ term: 5, index: 2, type: 'conf', data: encodeConfChange({ type: 'addLearner', node: 'n' }) }] }), ctx(), null],
  ['vote from a voter at term+1', V2, m('MsgPreVote', V2, { term: 6, index: 100, logTerm: 5 }), ctx(), null],
  ['learner MsgAppResp to the leader', LEARNER, m('MsgAppResp', LEARNER, { index: 50 }), asLeader(), null],
  ['learner MsgHeartbeatResp to the leader', LEARNER, m('MsgHeartbeatResp', LEARNER), asLeader(), null],
  ['voter MsgAppResp at a higher term (it moved on: Raft)', V2, m('MsgAppResp', V2, { term: 6 }), asLeader(), null],
  ['a joiner (no conf yet) accepts a leader MsgApp', LEADER, m('MsgApp', LEADER, { index: 0, logTerm: 0 }), ctx({ voters: [], learners: [], leader: null, term: 0 }), null],
  ['a joining node in flight may answer', 'j', m('MsgAppResp', 'j', { index: 3 }), asLeader({ pending: ['j'] }), null],
  ['MsgSnap with a real state-machine snapshot', LEADER, m('MsgSnap', LEADER, snapMsg(goodSnap)), ctx(), null],

  ['non-member MsgApp', STRANGER, m('MsgApp', STRANGER, { term: 6, index: 100, logTerm: 5, entries: [{ term: 6, index: 101, type: 'normal', data: goodCmd }] }), ctx(), 'not-member'],
  ['non-member MsgTransferLeader', STRANGER, m('MsgTransferLeader', STRANGER), asLeader(), 'not-member'],
  ['non-member heartbeat at 2^53-1', STRANGER, m('MsgHeartbeat', STRANGER, { term: Number.MAX_SAFE_INTEGER }), ctx(), 'not-member'],
  ['spoofed from of a real voter', STRANGER, m('MsgHeartbeat', LEADER), ctx(), 'spoofed-from'],
  ['message for another node', LEADER, { ...m('MsgHeartbeat', LEADER), to: V2 }, ctx(), 'wrong-to'],
  ['local type from the wire', LEADER, m('MsgHup', LEADER), ctx(), 'local-type'],
  ['learner MsgVote', LEARNER, m('MsgVote', LEARNER, { term: 6 }), ctx(), 'learner-type'],
  ['learner MsgPreVote', LEARNER, m('MsgPreVote', LEARNER, { term: 6 }), ctx(), 'learner-type'],
  ['learner MsgTransferLeader', LEARNER, m('MsgTransferLeader', LEARNER), asLeader(), 'learner-type'],
  ['learner MsgApp', LEARNER, m('MsgApp', LEARNER, { index: 100, logTerm: 5 }), ctx(), 'learner-type'],
  ['learner MsgSnap', LEARNER, m('MsgSnap', LEARNER, snapMsg(goodSnap)), ctx(), 'learner-type'],
  ['learner MsgAppResp at term+1 to the leader', LEARNER, m('MsgAppResp', LEARNER, { term: 6 }), asLeader(), 'learner-term'],
  ['voter heartbeat at 2^53-1', LEADER, m('MsgHeartbeat', LEADER, { term: Number.MAX_SAFE_INTEGER }), ctx(), 'term-too-high'],
  ['voter heartbeat above MAX_TERM', LEADER, m('MsgHeartbeat', LEADER, { term: MAX_TERM + 1 }), ctx({ term: MAX_TERM }), 'term-too-high'],
  ['voter term leap beyond the bound', V2, m('MsgVote', V2, { term: 5 + MAX_TERM_LEAP + 1 }), ctx(), 'term-too-high'],
  ['entry term above MAX_TERM', LEADER, m('MsgApp', LEADER, { index: 1, logTerm: MAX_TERM + 1 }), ctx(), 'term-too-high'],
  ['commit beyond MAX_INDEX', LEADER, m('MsgHeartbeat', LEADER, { commit: MAX_INDEX + 1 }), ctx(), 'index-too-high'],
  ['MsgAppResp claiming an index the leader does not have', V2, m('MsgAppResp', V2, { index: 101 }), asLeader(), 'index-too-high'],
  ['MsgApp from a voter that is not our leader this term', V2, m('MsgApp', V2, { index: 1, logTerm: 5 }), ctx(), 'not-leader'],
  ['MsgApp in our own term while we lead', V2, m('MsgApp', V2, { index: 1, logTerm: 5 }), asLeader(), 'not-leader'],
  ['MsgAppResp this term while we do not lead', V2, m('MsgAppResp', V2, { index: 1 }), ctx(), 'not-for-leader'],
  ['MsgApp with an undecodable entry', LEADER, m('MsgApp', LEADER, { index: 1, logTerm: 5, entries: [{ term: 5, index: 2, type: 'normal', data: garbage }] }), ctx(), 'bad-entry'],
  ['MsgApp with a bad conf entry', LEADER, m('MsgApp', LEADER, { index: 1, logTerm: 5, entries: [{ term: 5, index: 2, type: 'conf', data: garbage }] }), ctx(), 'bad-entry'],
  ['MsgSnap of 64 garbage bytes', LEADER, m('MsgSnap', LEADER, snapMsg(garbage)), ctx(), 'bad-snapshot'],
  ['MsgSnap from our leader whose conf predates it (it joined after the snapshot index): admitted', LEADER, m('MsgSnap', LEADER, snapMsg(goodSnap, [ME, V2])), ctx(), null],
  ['joiner: non-leader type from a stranger', STRANGER, m('MsgVote', STRANGER), ctx({ voters: [], learners: [], leader: null, term: 0 }), 'not-member'],
  ['joiner: garbage snapshot from anyone', STRANGER, m('MsgSnap', STRANGER, snapMsg(garbage, [STRANGER])), ctx({ voters: [], learners: [], leader: null, term: 0 }), 'bad-snapshot'],
  // a joiner bound to the peers it asked to join through and the leader that answered
  ['bound joiner: a well-formed fake snapshot from a key holder it did not ask', STRANGER, m('MsgSnap', STRANGER, snapMsg(goodSnap, [STRANGER, ME])), ctx({ voters: [], learners: [], leader: null, term: 0, admitters: [LEADER] }), 'not-admitter'],
  ['bound joiner: a MsgApp with a higher term from a key holder it did not ask', STRANGER, m('MsgApp', STRANGER, { term: 9, index: 0, logTerm: 0, entries: [{ term: 9, index: 1, type: 'normal', data: goodCmd }] }), ctx({ voters: [], learners: [], leader: null, term: 0, admitters: [LEADER] }), 'not-admitter'],
  ['bound joiner: a heartbeat from a key holder it did not ask', STRANGER, m('MsgHeartbeat', STRANGER), ctx({ voters: [], learners: [], leader: null, term: 0, admitters: [] }), 'not-admitter'],
  ['bound joiner: the snapshot of the leader that admitted it', LEADER, m('MsgSnap', LEADER, snapMsg(goodSnap)), ctx({ voters: [], learners: [], leader: null, term: 0, admitters: [LEADER] }), null],
  ['bound joiner: configured at last, the binding no longer matters', V2, m('MsgHeartbeat', V2, { term: 6 }), ctx({ admitters: [LEADER] }), null],
  // a joiner whose first snapshot is the bootstrap one (index 1): its configuration predates the leader
  ['joined by an old snapshot: appends of the leader that admitted it, not in its configuration', STRANGER, m('MsgApp', STRANGER, { term: 6, index: 1, logTerm: 1 }), ctx({ voters: [V2], learners: [ME], leader: STRANGER, term: 6, admitters: [STRANGER] }), null],
  ['joined by an old snapshot: appends of another key holder', STRANGER, m('MsgApp', STRANGER, { term: 6, index: 1, logTerm: 1 }), ctx({ voters: [V2], learners: [ME], leader: null, term: 6, admitters: [LEADER] }), 'not-member'],
  ['joined by an old snapshot: an admitter may still not vote', STRANGER, m('MsgVote', STRANGER, { term: 7 }), ctx({ voters: [V2], learners: [ME], leader: null, term: 6, admitters: [STRANGER] }), 'not-member'],
  // relayed learners (protocols/raft/relay.ts)
  ['relay feed from a learner', LEARNER, m('MsgRelayApp', LEARNER, { index: 1, logTerm: 5, commit: 1, lead: LEADER }), ctx(), 'learner-type'],
  ['relay feed from a voter', V2, m('MsgRelayApp', V2, { index: 1, logTerm: 5, commit: 1, lead: LEADER }), ctx(), null],
  ['relay subscription from a voter', V2, m('MsgRelaySub', V2, { lead: ME, commit: 1, index: 1 }), ctx(), 'voter-type'],
  ['relay subscription from a learner', LEARNER, m('MsgRelaySub', LEARNER, { lead: ME, commit: 1, index: 1 }), ctx(), null],
  ['relay subscription from a learner raising the term', LEARNER, m('MsgRelaySub', LEARNER, { term: 6, lead: ME }), ctx(), 'learner-term'],
  ['relay feed from a stranger', STRANGER, m('MsgRelayApp', STRANGER, { index: 1, logTerm: 5, commit: 1 }), ctx(), 'not-member']
]

for (const [name, sender, msg, c, want] of rows) {
  test(`${want ?? 'admit'}: ${name}`, () => {
    const v = admitRaftMessage(sender, msg, c)
    if (want == null) assert.ok(v.ok, v.ok ? '' : `${v.reason}: ${v.detail}`)
    else {
      assert.not.ok(v.ok, 'admitted')
      if (!v.ok) assert.is(v.reason, want, v.detail)
    }
  })
}

test('MAX_TERM leaves room for campaigns below MAX_SAFE_INTEGER', () => {
  assert.ok(MAX_TERM + MAX_TERM_LEAP < Number.MAX_SAFE_INTEGER / 16)
})

test('validateSnapshot accepts what restore accepts and rejects the rest without touching a store', () => {
  assert.is(validateSnapshot(goodSnap), null)
  assert.type(validateSnapshot(garbage), 'string')
  assert.type(validateSnapshot(new Uint8Array(0)), 'string')
  const other = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  other.restore(goodSnap, 7)
  assert.is(other.stateHash(), sm.stateHash())
  assert.throws(() => other.restore(garbage, 8))
  assert.is(other.stateHash(), sm.stateHash())
})

test('drops are logged once per peer and reason', () => {
  const d = new DropLogOnce()
  assert.ok(d.first('x', 'not-member'))
  assert.not.ok(d.first('x', 'not-member'))
  assert.ok(d.first('x', 'spoofed-from'))
  assert.ok(d.first('y', 'not-member'))
})

test.run()
