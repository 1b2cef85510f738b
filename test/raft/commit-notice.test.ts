// Commit notices held back (RaftConfig.lazyCommitNotice): a leader whose commit index moved sends
// no empty MsgApp at once; the next MsgApp with entries carries the commit index, and
// flushCommitNotices tells whoever is still behind. Without the option, etcd's behaviour: an
// empty MsgApp to each follower as soon as the commit index moves.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RawNode } from '../../protocols/raft/index.ts'
import type { Message } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { settleReadies } from './settle.ts'

const enc = new TextEncoder()
const IDS = ['1', '2', '3']

interface Net {
  nodes: Map<string, RawNode>
  stores: Map<string, MemoryLogStore>
  /** every message handed out so far, in order */
  sent: Message[]
  applied: Map<string, number>
}

function cluster (lazy: boolean): Net {
  const nodes = new Map<string, RawNode>()
  const stores = new Map<string, MemoryLogStore>()
  for (const id of IDS) {
    const store = new MemoryLogStore({ conf: { voters: IDS, learners: [] } })
    stores.set(id, store)
    nodes.set(id, new RawNode({ id, storage: store, electionTick: 10, heartbeatTick: 1, random: () => 0, lazyCommitNotice: lazy }))
  }
  return { nodes, stores, sent: [], applied: new Map(IDS.map((id) => [id, 0])) }
}

/** Persists, applies and advances every Ready of every node, delivering messages, until quiet. */
function settle (net: Net): void {
  settleReadies(net.nodes, net.stores, {
    rounds: 100,
    onReady: (id, rd) => { for (const e of rd.committedEntries) net.applied.set(id, e.index) },
    deliver: (m) => { net.sent.push(m); (net.nodes.get(m.to) as RawNode).step(m) }
  })
}

function elect (net: Net): RawNode {
  const leader = net.nodes.get('1') as RawNode
  leader.campaign()
  settle(net)
  assert.is(leader.status().role, 'leader')
  return leader
}

const emptyApps = (msgs: Message[]): Message[] => msgs.filter((m) => m.type === 'MsgApp' && (m.entries ?? []).length === 0)

test('eager (etcd): a commit sends an empty MsgApp to each follower at once', () => {
  const net = cluster(false)
  const leader = elect(net)
  const from = net.sent.length
  leader.propose(enc.encode('a'))
  settle(net)
  const commit = leader.status().commit
  assert.is(emptyApps(net.sent.slice(from)).filter((m) => m.commit === commit).length, 2)
  assert.is(net.applied.get('2'), commit)
  assert.is(net.applied.get('3'), commit)
  assert.is(leader.commitNoticesDue(), false, 'nothing is ever held back')
})

test('lazy: the commit index waits, rides on the next append, and a flush tells the rest', () => {
  const net = cluster(true)
  const leader = elect(net)
  leader.flushCommitNotices()
  settle(net)
  let from = net.sent.length
  leader.propose(enc.encode('a'))
  settle(net)
  const c1 = leader.status().commit
  assert.is(emptyApps(net.sent.slice(from)).length, 0, 'no commit-only MsgApp left with the commit')
  assert.is(net.applied.get('1'), c1, 'the leader applies at once')
  assert.ok((net.applied.get('2') as number) < c1, 'a follower does not know yet')
  assert.is(leader.commitNoticesDue(), true)

  // the next write's MsgApp carries the commit index: followers apply 'a' with it
  from = net.sent.length
  leader.propose(enc.encode('b'))
  settle(net)
  const apps = net.sent.slice(from).filter((m) => m.type === 'MsgApp')
  assert.ok(apps.length >= 2 && apps.every((m) => (m.commit ?? 0) >= c1), 'the appends carry the earlier commit')
  assert.ok((net.applied.get('2') as number) >= c1 && (net.applied.get('3') as number) >= c1)
  assert.is(emptyApps(net.sent.slice(from)).length, 0)

  // nothing follows 'b': the flush tells both followers
  const c2 = leader.status().commit
  assert.is(leader.commitNoticesDue(), true)
  from = net.sent.length
  leader.flushCommitNotices()
  settle(net)
  assert.equal(emptyApps(net.sent.slice(from)).map((m) => [m.to, m.commit]).sort(), [['2', c2], ['3', c2]])
  assert.is(net.applied.get('2'), c2)
  assert.is(net.applied.get('3'), c2)
  assert.is(leader.commitNoticesDue(), false)
  from = net.sent.length
  leader.flushCommitNotices()
  settle(net)
  assert.is(net.sent.length, from, 'a flush with nothing due sends nothing')
})

test('lazy: a heartbeat still carries the commit index (a lost flush is not forever)', () => {
  const net = cluster(true)
  const leader = elect(net)
  leader.propose(enc.encode('a'))
  settle(net)
  const c = leader.status().commit
  assert.ok((net.applied.get('3') as number) < c)
  leader.tick() // heartbeatTick 1
  settle(net)
  assert.is(net.applied.get('2'), c)
  assert.is(net.applied.get('3'), c)
})

test.run()
