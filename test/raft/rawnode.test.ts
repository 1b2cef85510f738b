// RawNode behaviour outside the scripted scenarios: single-node clusters, restarts,
// limits, errors, and the deliberately broken vote rule.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RawNode, RaftError, encodeConfChange, decodeConfChange } from '../../protocols/raft/index.ts'
import type { Message, RaftConfig, Ready } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

function node (id: string, store: MemoryLogStore, extra: Partial<RaftConfig> = {}): RawNode {
  return new RawNode({ id, storage: store, electionTick: 10, heartbeatTick: 1, random: () => 0, ...extra })
}

/** Persist, apply, advance every Ready; returns applied data and messages sent. */
function drain (n: RawNode, store: MemoryLogStore): { applied: string[], msgs: Message[], readies: Ready[] } {
  const applied: string[] = []
  const msgs: Message[] = []
  const readies: Ready[] = []
  while (n.hasReady()) {
    const rd = n.ready()
    readies.push(rd)
    store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
    store.sync()
    msgs.push(...rd.messages)
    for (const e of rd.committedEntries) if (e.type === 'normal' && e.data.byteLength > 0) applied.push(dec.decode(e.data))
    n.advance(rd)
  }
  return { applied, msgs, readies }
}

function errKind (f: () => void): string | undefined {
  try { f() } catch (e) { return e instanceof RaftError ? e.kind : String(e) }
  return undefined
}

test('a single voter elects itself and commits once its own entries are persisted', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  const n = node('1', store)
  n.campaign()
  assert.is(n.status().role, 'leader')
  n.propose(enc.encode('a'))
  n.propose(enc.encode('b'))
  const first = n.ready()
  assert.is(first.entries.length, 3, 'no-op and both proposals in one Ready')
  assert.is(first.committedEntries.length, 0, 'nothing commits before the leader persisted it')
  store.save({ hardState: first.hardState, entries: first.entries })
  store.sync()
  n.advance(first)
  const { applied } = drain(n, store)
  assert.equal(applied, ['a', 'b'])
  assert.is(n.status().commit, 3)
})

test('election timeout: a follower campaigns on its own after electionTick ticks', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  const n = node('1', store)
  for (let i = 0; i < 9; i++) n.tick()
  assert.is(n.status().role, 'follower')
  n.tick()
  assert.is(n.status().role, 'leader')
})

test('the randomized timeout comes from the injected PRNG within [electionTick, 2*electionTick)', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  const n = node('1', store, { random: () => 0.99 })
  let ticks = 0
  while (n.status().role !== 'leader' && ticks < 100) { n.tick(); ticks++ }
  assert.is(ticks, 19)
})

test('restart: committed entries after `applied` are handed out again; term and vote survive', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  let n = node('1', store)
  n.campaign()
  for (const v of ['a', 'b', 'c']) n.propose(enc.encode(v))
  drain(n, store)
  const term = n.status().term
  n = node('1', store, { applied: 2 })
  assert.is(n.status().term, term)
  assert.is(n.status().vote, '1')
  const { applied } = drain(n, store)
  assert.equal(applied, ['b', 'c'])
})

test('restart: a committed conf change already in storage is not applied twice', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  let n = node('1', store)
  n.campaign()
  drain(n, store)
  n.proposeConfChange({ type: 'addLearner', node: '2' })
  drain(n, store)
  n.proposeConfChange({ type: 'promote', node: '2' })
  drain(n, store)
  n.propose(enc.encode('x'))
  drain(n, store)
  assert.equal(n.status().conf, { voters: ['1', '2'], learners: [] })
  n = node('1', store)
  drain(n, store)
  assert.equal(n.status().conf, { voters: ['1', '2'], learners: [] })
})

test('propose: NotLeader with the leader hint on followers; ProposalDropped over the byte limit', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  const n = node('1', store, { maxUncommittedBytes: 10 })
  assert.is(errKind(() => n.propose(enc.encode('x'))), 'NotLeader')
  n.campaign()
  n.propose(new Uint8Array(8))
  assert.is(errKind(() => n.propose(new Uint8Array(8))), 'ProposalDropped')
  drain(n, store)
  n.propose(new Uint8Array(8))
  const f = node('2', new MemoryLogStore({ conf: { voters: ['1', '2'], learners: [] } }))
  f.step({ type: 'MsgHeartbeat', from: '1', to: '2', term: 1, commit: 0 })
  try {
    f.propose(enc.encode('x'))
    assert.unreachable()
  } catch (e) {
    assert.instance(e, RaftError)
    assert.is((e as RaftError).kind, 'NotLeader')
    assert.is((e as RaftError).leaderHint, '1')
  }
  assert.is(errKind(() => node('3', new MemoryLogStore()).readIndex(enc.encode('r'))), 'NotLeader')
})

test('conf changes: the last voter cannot be removed', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1'], learners: [] } })
  const n = node('1', store)
  n.campaign()
  drain(n, store)
  assert.is(errKind(() => n.proposeConfChange({ type: 'remove', node: '1' })), 'InvalidConfChange')
})

test('conf change encoding round-trips and refuses garbage', () => {
  for (const cc of [{ type: 'addLearner', node: 'peer-1' }, { type: 'promote', node: 'x' }, { type: 'remove', node: 'é' }] as const) {
    assert.equal(decodeConfChange(encodeConfChange(cc)), cc)
  }
  assert.is(errKind(() => decodeConfChange(new Uint8Array([9, 65]))), 'InvalidConfChange')
  assert.is(errKind(() => decodeConfChange(new Uint8Array([1]))), 'InvalidConfChange')
  assert.is(errKind(() => decodeConfChange(new Uint8Array([1, 0xff, 0xfe]))), 'InvalidConfChange')
})

function voteReq (from: string, term: number, index: number, logTerm: number): Message {
  return { type: 'MsgVote', from, to: '3', term, index, logTerm }
}

function granted (n: RawNode, store: MemoryLogStore): boolean[] {
  return drain(n, store).msgs.filter(m => m.type === 'MsgVoteResp').map(m => m.reject !== true)
}

test('votes: one per term, only for an up-to-date log', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1', '2', '3'], learners: [] } })
  store.save({ entries: [{ term: 1, index: 1, type: 'normal', data: new Uint8Array() }], hardState: { term: 1, vote: null, commit: 0 } })
  const n = node('3', store, { checkQuorum: false })
  n.step(voteReq('1', 2, 0, 0))
  assert.equal(granted(n, store), [false], 'shorter log')
  n.step(voteReq('1', 2, 1, 1))
  assert.equal(granted(n, store), [true])
  n.step(voteReq('2', 2, 5, 1))
  assert.equal(granted(n, store), [false], 'already voted in term 2')
  n.step(voteReq('1', 2, 1, 1))
  assert.equal(granted(n, store), [true], 'the same candidate again')
})

test('votes with bugs=vote-ignores-term: two candidates in one term both get the vote', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1', '2', '3'], learners: [] } })
  store.save({ entries: [{ term: 1, index: 1, type: 'normal', data: new Uint8Array() }], hardState: { term: 1, vote: null, commit: 0 } })
  const n = node('3', store, { checkQuorum: false, bugs: new Set(['vote-ignores-term']) })
  n.step(voteReq('1', 2, 1, 1))
  n.step(voteReq('2', 2, 1, 1))
  n.step(voteReq('2', 2, 0, 0))
  assert.equal(granted(n, store), [true, true, true])
})

test('reportUnreachable sends a replicating follower back to probing', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1', '2'], learners: [] } })
  const n = node('1', store, { preVote: false })
  n.campaign()
  n.step({ type: 'MsgVoteResp', from: '2', to: '1', term: 1 })
  assert.is(n.status().role, 'leader')
  drain(n, store)
  n.step({ type: 'MsgAppResp', from: '2', to: '1', term: 1, index: 1 })
  assert.is(n.status().progress!['2'].state, 'replicate')
  n.reportUnreachable('2')
  assert.is(n.status().progress!['2'].state, 'probe')
})

test('a Ready with nothing to persist does not ask for a sync; term and vote changes do', () => {
  const store = new MemoryLogStore({ conf: { voters: ['1', '2', '3'], learners: [] } })
  const n = node('2', store)
  n.step({ type: 'MsgHeartbeat', from: '1', to: '2', term: 3, commit: 0 })
  const rd = n.ready()
  assert.ok(rd.mustSync)
  assert.equal(rd.hardState, { term: 3, vote: null, commit: 0 })
  n.advance(rd)
  n.step({ type: 'MsgHeartbeat', from: '1', to: '2', term: 3, commit: 0 })
  const rd2 = n.ready()
  assert.not.ok(rd2.mustSync)
  assert.is(rd2.messages.length, 1)
  n.advance(rd2)
  assert.not.ok(n.hasReady())
})

test.run()
