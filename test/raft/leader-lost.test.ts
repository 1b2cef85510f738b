// leaderLost(): the shell saw the connection to a peer close. For a follower whose leader that
// was, the next election starts within a few ticks instead of a whole election timeout (the
// remaining voters take turns, so they do not split the vote); a report that is wrong (the
// leader is alive) changes nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RawNode } from '../../protocols/raft/index.ts'
import type { Message } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

const ELECTION = 10

interface Net { nodes: Map<string, RawNode>, stores: Map<string, MemoryLogStore>, down: Set<string>, inbox: Message[] }

function cluster (seed: number): Net {
  const ids = ['1', '2', '3']
  const nodes = new Map<string, RawNode>()
  const stores = new Map<string, MemoryLogStore>()
  let x = seed
  for (const id of ids) {
    const store = new MemoryLogStore({ conf: { voters: ids, learners: [] } })
    stores.set(id, store)
    // a small deterministic PRNG per node (the core takes randomness as a parameter)
    const random = (): number => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
    nodes.set(id, new RawNode({ id, storage: store, electionTick: ELECTION, heartbeatTick: 1, random, preVote: true, checkQuorum: true }))
  }
  return { nodes, stores, down: new Set(), inbox: [] }
}

/** Process every Ready and deliver messages until the network is quiet. */
function settle (net: Net): void {
  for (let round = 0; round < 1000; round++) {
    let busy = false
    for (const [id, n] of net.nodes) {
      if (net.down.has(id)) continue
      while (n.hasReady()) {
        busy = true
        const rd = n.ready()
        const store = net.stores.get(id)!
        store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
        store.sync()
        net.inbox.push(...rd.messages)
        n.advance(rd)
      }
    }
    const msgs = net.inbox.splice(0)
    for (const m of msgs) {
      if (net.down.has(m.to) || net.down.has(m.from)) continue
      busy = true
      net.nodes.get(m.to)!.step(m)
    }
    if (!busy) return
  }
  throw new Error('network did not settle')
}

function tickAll (net: Net): void {
  for (const [id, n] of net.nodes) if (!net.down.has(id)) n.tick()
  settle(net)
}

function leaderOf (net: Net): string | null {
  const leaders = [...net.nodes].filter(([id, n]) => !net.down.has(id) && n.status().role === 'leader').map(([id]) => id)
  return leaders.length === 1 ? leaders[0] : null
}

function elect (net: Net): string {
  for (let i = 0; i < 10 * ELECTION; i++) {
    tickAll(net)
    const l = leaderOf(net)
    if (l != null) return l
  }
  throw new Error('no leader')
}

test('followers that lose their leader\'s connection elect a new leader within their turn, not an election timeout', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const net = cluster(seed)
    const old = elect(net)
    for (let i = 0; i < 3; i++) tickAll(net) // heartbeats: both followers hold the lease
    net.down.add(old)
    for (const [id, n] of net.nodes) if (id !== old) n.leaderLost(old, 3)
    let ticks = 0
    while (leaderOf(net) == null) {
      tickAll(net)
      ticks++
      assert.ok(ticks <= 3, `seed ${seed}: no new leader after ${ticks} ticks (the first in turn campaigns within 3)`)
    }
    const first = [...net.nodes.keys()].filter((id) => id !== old).sort()[0]
    assert.is(leaderOf(net), first, `seed ${seed}: the first voter in turn leads`)
  }
})

test('when the first in turn cannot win (its log is behind), the next one takes over in its own turn', () => {
  const net = cluster(11)
  const old = elect(net)
  const [a, b] = [...net.nodes.keys()].filter((id) => id !== old).sort()
  // a misses the last entries: down while the leader commits with b
  net.down.add(a)
  net.nodes.get(old)!.propose(new TextEncoder().encode('x'))
  settle(net)
  net.down.delete(a)
  net.down.add(old)
  for (const id of [a, b]) net.nodes.get(id)!.leaderLost(old, 3)
  let ticks = 0
  while (leaderOf(net) == null && ticks < 10) { tickAll(net); ticks++ }
  assert.is(leaderOf(net), b, 'the up-to-date follower leads')
  assert.ok(ticks <= 6, `${ticks} ticks (b's turn is ticks 4..6)`)
})

test('a wrong report (the leader is alive) costs no election: the other follower keeps the lease', () => {
  const net = cluster(7)
  const old = elect(net)
  for (let i = 0; i < 3; i++) tickAll(net)
  const term = net.nodes.get(old)!.status().term
  const follower = [...net.nodes.keys()].find((id) => id !== old)!
  net.nodes.get(follower)!.leaderLost(old, 4)
  assert.is(net.nodes.get(follower)!.status().lead, null, 'the follower forgets the leader')
  for (let i = 0; i < 3 * ELECTION; i++) tickAll(net)
  assert.is(leaderOf(net), old, 'the old leader still leads')
  assert.is(net.nodes.get(old)!.status().term, term, 'no term change')
  assert.is(net.nodes.get(follower)!.status().lead, old, 'the next heartbeat restores the leader')
})

test('a report about a peer that is not our leader is ignored', () => {
  const net = cluster(3)
  const old = elect(net)
  tickAll(net)
  const [a, b] = [...net.nodes.keys()].filter((id) => id !== old)
  net.nodes.get(a)!.leaderLost(b, 4)
  assert.is(net.nodes.get(a)!.status().lead, old)
  net.nodes.get(old)!.leaderLost(a, 4) // on the leader itself
  assert.is(net.nodes.get(old)!.status().role, 'leader')
})

test.run()
