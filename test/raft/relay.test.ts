// Relayed learners (RaftConfig.relayLearners, protocols/raft/relay.ts): 3 voters and 6 learners
// of the real core, messages delivered in memory, ticks driven by the test. What must hold: the
// leader sends nothing to learners once they have subscribed, while every learner still applies
// every write; a relay forwards only committed entries; a dead relay's learners move and catch up;
// a new leader stops feeding them once they say who does; a learner behind a relay's compaction
// gets the relay's snapshot; and the leader still knows how far each learner is (for promotion).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RawNode } from '../../protocols/raft/index.ts'
import type { Entry, Message } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { relayOrder } from '../../protocols/raft/relay.ts'
import { settleReadies } from './settle.ts'

const enc = new TextEncoder()
const VOTERS = ['1', '2', '3']
const LEARNERS = ['4', '5', '6', '7', '8', '9']
const ELECTION = 10

interface Net {
  nodes: Map<string, RawNode>
  stores: Map<string, MemoryLogStore>
  sent: Message[]
  applied: Map<string, Entry[]>
  /** nodes whose messages (in and out) are lost */
  down: Set<string>
  /** a violation seen on the wire */
  bad: string[]
}

function cluster (relay: boolean): Net {
  const nodes = new Map<string, RawNode>()
  const stores = new Map<string, MemoryLogStore>()
  let seed = 1
  for (const id of [...VOTERS, ...LEARNERS]) {
    const store = new MemoryLogStore({ conf: { voters: VOTERS, learners: LEARNERS } })
    stores.set(id, store)
    const r = seed++
    nodes.set(id, new RawNode({ id, storage: store, electionTick: ELECTION, heartbeatTick: 2, random: () => (r * 0.13) % 1, checkQuorum: true, preVote: true, relayLearners: relay }))
  }
  return { nodes, stores, sent: [], applied: new Map([...nodes.keys()].map((id) => [id, []])), down: new Set(), bad: [] }
}

function settle (net: Net): void {
  settleReadies(net.nodes, net.stores, {
    rounds: 200,
    onReady: (id, rd) => {
      if (rd.snapshot !== null) net.applied.set(id, [])
      net.applied.get(id)?.push(...rd.committedEntries)
    },
    deliver: (m) => {
      if (m.type === 'MsgRelayApp') {
        const last = m.entries?.at(-1)?.index ?? 0
        if (last > (m.commit ?? 0)) net.bad.push(`${m.from} relayed entry ${last} above its commit ${m.commit ?? 0}`)
      }
      if (net.down.has(m.from) || net.down.has(m.to)) return
      net.sent.push(m)
      net.nodes.get(m.to)?.step(m)
    }
  })
}

function tick (net: Net, n: number): void {
  for (let i = 0; i < n; i++) {
    for (const [id, node] of net.nodes) if (!net.down.has(id)) node.tick()
    settle(net)
  }
}

function leaderOf (net: Net): RawNode {
  const ls = [...net.nodes].filter(([id, n]) => !net.down.has(id) && n.status().role === 'leader')
  assert.is(ls.length, 1, 'one leader')
  return ls[0][1]
}

function start (relay: boolean): Net {
  const net = cluster(relay)
  ;(net.nodes.get('1') as RawNode).campaign()
  settle(net)
  tick(net, 3 * ELECTION) // learners subscribe and tell the leader
  return net
}

function write (net: Net, k: number, tag: string): void {
  for (let i = 0; i < k; i++) {
    leaderOf(net).propose(enc.encode(`${tag}${i}`))
    settle(net)
  }
  tick(net, 4) // a heartbeat round tells relays and learners the last commit index
}

const toLearners = (msgs: Message[], from: string): Message[] => msgs.filter((m) => m.from === from && LEARNERS.includes(m.to))

function assertCaughtUp (net: Net, ids: string[]): void {
  const leader = leaderOf(net)
  const commit = leader.status().commit
  for (const id of ids) {
    assert.is(net.nodes.get(id)?.status().commit, commit, `learner ${id} has the leader's commit index`)
  }
}

/** Every learner's applied entries are the leader's log at the same indexes. */
function assertPrefix (net: Net, leaderId: string): void {
  const store = net.stores.get(leaderId) as MemoryLogStore
  for (const id of LEARNERS) {
    for (const e of net.applied.get(id) ?? []) {
      if (e.index < store.firstIndex()) continue
      const [l] = store.entries(e.index, e.index + 1)
      assert.is(l.term, e.term, `learner ${id} entry ${e.index}: term`)
      assert.equal(l.data, e.data, `learner ${id} entry ${e.index}: data`)
    }
  }
}

test('without relays the leader sends every write to every learner; with them, none', () => {
  const plain = start(false)
  let from = plain.sent.length
  write(plain, 30, 'w')
  const plainToLearners = toLearners(plain.sent.slice(from), '1').length
  assert.ok(plainToLearners >= 30 * LEARNERS.length, `leader-fed: ${plainToLearners} messages to learners`)

  const net = start(true)
  from = net.sent.length
  write(net, 30, 'w')
  const sent = net.sent.slice(from)
  assert.is(toLearners(sent, '1').length, 0, 'the leader sends nothing to a subscribed learner')
  assert.ok(sent.filter((m) => m.type === 'MsgRelayApp').length >= 30, 'followers feed the learners')
  assertCaughtUp(net, LEARNERS)
  assertPrefix(net, '1')
  assert.equal(net.bad, [])
  // each learner is fed by the follower that ranks first for it
  for (const l of LEARNERS) {
    const feeders = new Set(sent.filter((m) => m.type === 'MsgRelayApp' && m.to === l).map((m) => m.from))
    assert.equal([...feeders], [relayOrder(l, ['2', '3'])[0]], `learner ${l} is fed by its first relay`)
  }
})

test('the leader knows each relayed learner\'s progress (what autopilot promotes by)', () => {
  const net = start(true)
  write(net, 20, 'p')
  const st = leaderOf(net).status()
  for (const l of LEARNERS) {
    assert.ok((st.progress?.[l]?.match ?? 0) >= st.commit - 1, `leader's match for ${l}: ${st.progress?.[l]?.match} of ${st.commit}`)
  }
})

test('a relay forwards committed entries only, never its uncommitted tail', () => {
  const net = start(true)
  // the leader appends and replicates, but the followers' answers are lost: nothing commits
  const leader = leaderOf(net)
  const commit0 = leader.status().commit
  const before = net.sent.length
  leader.propose(enc.encode('pending'))
  const rd = leader.ready()
  ;(net.stores.get('1') as MemoryLogStore).save({ hardState: rd.hardState ?? undefined, entries: rd.entries })
  leader.advance(rd)
  for (const m of rd.messages) net.nodes.get(m.to)?.step(m) // followers append the entry
  for (const id of ['2', '3']) {
    const f = net.nodes.get(id) as RawNode
    while (f.hasReady()) {
      const frd = f.ready()
      ;(net.stores.get(id) as MemoryLogStore).save({ hardState: frd.hardState ?? undefined, entries: frd.entries })
      f.advance(frd)
      // answers to the leader are dropped; relay traffic still flows
      for (const m of frd.messages) if (m.to !== '1') net.nodes.get(m.to)?.step(m)
    }
    assert.ok(f.lastIndex() > commit0, `follower ${id} holds the uncommitted entry`)
  }
  settleExcept(net, '1')
  for (const l of LEARNERS) assert.ok((net.nodes.get(l) as RawNode).lastIndex() <= commit0, `learner ${l} got nothing uncommitted`)
  assert.ok(net.sent.length >= before)
  assert.equal(net.bad, [])
})

/** settle, with every message to `cut` lost */
function settleExcept (net: Net, cut: string): void {
  net.down.add(cut)
  try { settle(net) } finally { net.down.delete(cut) }
}

test('a dead relay\'s learners move to another voter and keep up', () => {
  const net = start(true)
  write(net, 5, 'a')
  const dead = '2'
  const orphans = LEARNERS.filter((l) => relayOrder(l, ['2', '3'])[0] === dead)
  assert.ok(orphans.length > 0, 'some learner is fed by 2')
  net.down.add(dead)
  tick(net, 3 * ELECTION)
  const from = net.sent.length
  write(net, 20, 'b')
  assertCaughtUp(net, LEARNERS)
  assertPrefix(net, '1')
  const sent = net.sent.slice(from)
  for (const l of orphans) {
    const feeders = new Set(sent.filter((m) => m.to === l && (m.type === 'MsgRelayApp' || m.type === 'MsgApp')).map((m) => m.from))
    assert.ok(!feeders.has(dead) && feeders.size === 1, `learner ${l} has one new feeder: ${[...feeders].join(',')}`)
  }
  assert.equal(net.bad, [])
})

test('a new leader feeds the learners only until they say who feeds them', () => {
  const net = start(true)
  write(net, 5, 'a')
  net.down.add('1')
  tick(net, 4 * ELECTION)
  const leader = leaderOf(net)
  const lid = leader.status().id
  assert.ok(lid !== '1')
  tick(net, 2 * ELECTION)
  const from = net.sent.length
  write(net, 20, 'c')
  assert.is(toLearners(net.sent.slice(from), lid).length, 0, `new leader ${lid} sends nothing to learners`)
  assertCaughtUp(net, LEARNERS)
  assertPrefix(net, lid)
  assert.equal(net.bad, [])
})

test('a learner behind its relay\'s compaction gets the relay\'s snapshot', () => {
  const net = start(true)
  const late = '9'
  net.down.add(late)
  write(net, 30, 'd')
  // every voter compacts its log past what the late learner holds
  for (const id of VOTERS) {
    const n = net.nodes.get(id) as RawNode
    const st = n.status()
    ;(net.stores.get(id) as MemoryLogStore).compact(st.applied, st.conf, enc.encode(`snap@${st.applied}`), 0)
  }
  net.down.delete(late)
  const from = net.sent.length
  tick(net, 3 * ELECTION)
  write(net, 3, 'e')
  const snaps = net.sent.slice(from).filter((m) => m.to === late && (m.type === 'MsgRelaySnap' || m.type === 'MsgSnap'))
  assert.ok(snaps.some((m) => m.type === 'MsgRelaySnap'), `the late learner got a relay snapshot (${snaps.map((m) => `${m.type} from ${m.from}`).join(', ')})`)
  assertCaughtUp(net, LEARNERS)
  assert.equal(net.bad, [])
})

test('a promoted learner leaves its relay and votes', () => {
  const net = start(true)
  write(net, 5, 'f')
  const leader = leaderOf(net)
  leader.proposeConfChange({ type: 'promote', node: '4' })
  settle(net)
  tick(net, 3 * ELECTION)
  const from = net.sent.length
  write(net, 10, 'g')
  const sent = net.sent.slice(from)
  assert.ok(sent.some((m) => m.from === '1' && m.to === '4' && m.type === 'MsgApp'), 'the leader feeds its new voter')
  assert.ok(!sent.some((m) => m.to === '4' && m.type === 'MsgRelayApp'), 'no relay feeds a voter')
  assertCaughtUp(net, ['4', ...LEARNERS.filter((l) => l !== '4')])
})

test.run()
