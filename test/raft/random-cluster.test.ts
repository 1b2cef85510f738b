// Randomized runs of a small cluster (three voters and a joiner) over a lossy, reordering
// network with partitions, crashes (losing unsynced writes), compaction and membership
// changes. Checks Raft's safety properties on every step; then shows that a deliberately
// broken vote rule is caught by the same checks. Also: step() never throws on odd messages.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { RawNode, MESSAGE_TYPES } from '../../protocols/raft/index.ts'
import type { ConfChange, Entry, Message, MessageType, RaftBug } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Member {
  id: string
  store: MemoryLogStore
  raw: RawNode | null
  /** Applied entries as "term:data" by index (the state machine), from its snapshot on. */
  applied: string[]
  appliedIndex: number
}

const VOTERS = ['1', '2', '3']
const ALL = ['1', '2', '3', '4']

class Cluster {
  readonly rnd: () => number
  readonly members = new Map<string, Member>()
  net: Message[] = []
  cut = new Set<string>()
  /** What each committed index holds, as first seen applied anywhere. */
  readonly committed = new Map<number, string>()
  readonly leaders = new Map<number, string>()
  violation: string | null = null
  private proposals = 0

  constructor (seed: number, readonly bugs: ReadonlySet<RaftBug>, readonly maxSizePerMsg: number) {
    this.rnd = mulberry32(seed)
    for (const id of ALL) {
      const conf = VOTERS.includes(id) ? { voters: VOTERS, learners: [] } : { voters: [], learners: [] }
      const m: Member = { id, store: new MemoryLogStore({ conf }), raw: null, applied: [], appliedIndex: 0 }
      this.start(m)
      this.members.set(id, m)
    }
  }

  private start (m: Member): void {
    const snap = m.store.snapshot()
    m.applied = snap.data.byteLength > 0 ? JSON.parse(new TextDecoder().decode(snap.data)) as string[] : []
    m.appliedIndex = snap.meta.index
    m.raw = new RawNode({
      id: m.id, storage: m.store, electionTick: 10, heartbeatTick: 2, random: this.rnd,
      applied: m.appliedIndex, maxSizePerMsg: this.maxSizePerMsg, maxInflightMsgs: 4, bugs: this.bugs
    })
  }

  private fail (why: string): void {
    if (this.violation === null) this.violation = why
  }

  private record (index: number, key: string, who: string): void {
    const seen = this.committed.get(index)
    if (seen === undefined) this.committed.set(index, key)
    else if (seen !== key) this.fail(`index ${index}: ${who} applied ${key}, another node applied ${seen}`)
  }

  private handleReady (m: Member): void {
    const raw = m.raw!
    if (!raw.hasReady()) return
    const rd = raw.ready()
    m.store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
    if (this.rnd() < 0.01) {
      // Power loss after the write but before the sync: nothing of it was acknowledged.
      m.store.crash()
      m.raw = null
      return
    }
    m.store.sync()
    this.net.push(...rd.messages)
    if (rd.snapshot !== null) {
      const data = rd.snapshot.data.byteLength > 0 ? JSON.parse(new TextDecoder().decode(rd.snapshot.data)) as string[] : []
      data.forEach((k, i) => { if (k !== '') this.record(i + 1, k, m.id) })
      m.applied = data
      m.appliedIndex = rd.snapshot.meta.index
    }
    for (const e of rd.committedEntries) {
      if (e.index !== m.appliedIndex + 1) this.fail(`${m.id} applied ${e.index} after ${m.appliedIndex}`)
      const key = keyOf(e)
      this.record(e.index, key, m.id)
      m.applied[e.index - 1] = key
      m.appliedIndex = e.index
    }
    raw.advance(rd)
  }

  private checkLeader (m: Member): void {
    const s = m.raw!.status()
    if (s.role !== 'leader') return
    const other = this.leaders.get(s.term)
    if (other === undefined) this.leaders.set(s.term, m.id)
    else if (other !== m.id) this.fail(`two leaders in term ${s.term}: ${other} and ${m.id}`)
  }

  step (): void {
    const r = this.rnd()
    const up = [...this.members.values()].filter(m => m.raw !== null)
    const pick = <T>(xs: T[]): T => xs[Math.floor(this.rnd() * xs.length)]
    if (r < 0.35) {
      for (const m of up) m.raw!.tick()
    } else if (r < 0.75) {
      // deliver a few messages, in random order, some lost or duplicated
      for (let k = 0; k < 4 && this.net.length > 0; k++) {
        const i = Math.floor(this.rnd() * this.net.length)
        const msg = this.net[i]
        this.net.splice(i, 1)
        if (this.rnd() < 0.05) this.net.push(msg)
        const to = this.members.get(msg.to)
        if (to?.raw == null || this.cut.has(msg.to) || this.cut.has(msg.from) || this.rnd() < 0.08) {
          if (msg.type === 'MsgSnap') this.members.get(msg.from)?.raw?.reportSnapshot(msg.to, false)
          continue
        }
        to.raw.step(msg)
      }
    } else if (r < 0.85) {
      const leader = up.find(m => m.raw!.status().role === 'leader')
      if (leader !== undefined) {
        try {
          if (this.rnd() < 0.15) leader.raw!.proposeConfChange(this.confStep(leader.raw!.status().conf))
          else leader.raw!.propose(new TextEncoder().encode(`v${++this.proposals}`))
        } catch { /* refusals are fine here */ }
      }
    } else if (r < 0.88) {
      const m = pick(up)
      if (m !== undefined && m.appliedIndex > 0 && this.rnd() < 0.5) {
        const s = m.raw!.status()
        m.store.compact(m.appliedIndex, s.conf, new TextEncoder().encode(JSON.stringify(m.applied.slice(0, m.appliedIndex))))
      }
    } else if (r < 0.9) {
      if (this.cut.size > 0) this.cut.clear()
      else this.cut.add(pick(ALL))
    } else if (r < 0.91) {
      const m = pick(up)
      if (m !== undefined) { m.store.crash(); m.raw = null }
    } else if (r < 0.93) {
      const down = [...this.members.values()].filter(m => m.raw === null)
      if (down.length > 0) this.start(pick(down))
    } else {
      const m = pick(up)
      if (m !== undefined) {
        try { m.raw!.readIndex(new Uint8Array([1])) } catch { /* no leader known */ }
      }
    }
    for (const m of this.members.values()) {
      if (m.raw === null) continue
      this.handleReady(m)
      if (m.raw !== null) this.checkLeader(m)
    }
  }

  private confStep (conf: { voters: string[], learners: string[] }): ConfChange {
    if (conf.learners.includes('4')) return { type: 'promote', node: '4' }
    if (conf.voters.includes('4')) return { type: 'remove', node: '4' }
    return { type: 'addLearner', node: '4' }
  }
}

function keyOf (e: Entry): string {
  return `${e.term}:${e.type}:${new TextDecoder().decode(e.data)}`
}

function run (seed: number, steps: number, bugs: ReadonlySet<RaftBug>, maxSizePerMsg = 64): Cluster {
  const c = new Cluster(seed, bugs, maxSizePerMsg)
  for (let i = 0; i < steps && c.violation === null; i++) c.step()
  return c
}

test('randomized clusters keep one leader per term and never lose or change a committed entry', () => {
  let commits = 0
  let terms = 0
  for (let seed = 1; seed <= 40; seed++) {
    const c = run(seed, 1500, new Set())
    assert.is(c.violation, null, `seed ${seed}: ${c.violation}`)
    commits += c.committed.size
    terms += c.leaders.size
  }
  // The runs must actually do something for the checks to mean anything.
  assert.ok(commits > 400, `only ${commits} committed entries`)
  assert.ok(terms > 40, `only ${terms} terms with a leader`)
})

test('the same checks catch bugs=vote-ignores-term', () => {
  let caught = -1
  for (let seed = 1; seed <= 200 && caught < 0; seed++) {
    if (run(seed, 1500, new Set(['vote-ignores-term'])).violation !== null) caught = seed
  }
  assert.ok(caught > 0, 'no violation found with a broken vote rule')
})

test('the same checks catch bugs=commit-old-term (one entry per MsgApp)', () => {
  // The Figure 8 schedule is rare (seeds 2, 14, 431 of 1..500 here, since a caught-up follower in probe is moved back to replicate), so the seed is pinned: it was
  // found by scanning seeds with these settings. If the core's behaviour changes, scan
  // again rather than deleting this test.
  const c = run(14, 3000, new Set(['commit-old-term']), 1)
  assert.ok(c.violation !== null, 'the broken commit rule went unnoticed')
  assert.is(run(14, 3000, new Set(), 1).violation, null)
})

const arbMessage = fc.record({
  type: fc.constantFrom<MessageType>(...MESSAGE_TYPES),
  from: fc.constantFrom('1', '2', '3', '4', 'zz'),
  to: fc.constant('1'),
  term: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(Number.MAX_SAFE_INTEGER)),
  logTerm: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
  index: fc.option(fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constant(1e12)), { nil: undefined }),
  commit: fc.option(fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constant(1e12)), { nil: undefined }),
  reject: fc.option(fc.boolean(), { nil: undefined }),
  rejectHint: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
  entries: fc.option(fc.array(fc.record({
    term: fc.integer({ min: 0, max: 6 }),
    index: fc.integer({ min: 0, max: 12 }),
    type: fc.constantFrom<'normal' | 'conf'>('normal', 'conf'),
    data: fc.uint8Array({ maxLength: 4 })
  }), { maxLength: 4 }), { nil: undefined }),
  snapshot: fc.option(fc.record({
    meta: fc.record({
      index: fc.integer({ min: 0, max: 12 }),
      term: fc.integer({ min: 0, max: 6 }),
      conf: fc.record({ voters: fc.subarray(['1', '2', '3']), learners: fc.subarray(['4']) })
    }),
    data: fc.uint8Array({ maxLength: 4 })
  }), { nil: undefined }),
  context: fc.option(fc.uint8Array({ maxLength: 6 }), { nil: undefined })
}, { requiredKeys: ['type', 'from', 'to', 'term'] })

test('step() never throws on well-typed messages with any field values, in any role', () => {
  fc.assert(fc.property(fc.constantFrom('follower', 'leader', 'candidate'), fc.array(arbMessage, { maxLength: 25 }), (role, msgs) => {
    const store = new MemoryLogStore({ conf: { voters: VOTERS, learners: ['4'] } })
    const n = new RawNode({ id: '1', storage: store, electionTick: 10, heartbeatTick: 1, random: () => 0.5, preVote: role !== 'candidate' })
    if (role !== 'follower') n.campaign()
    if (role === 'leader') {
      n.step({ type: 'MsgVoteResp', from: '2', to: '1', term: 1 })
      n.step({ type: 'MsgPreVoteResp', from: '2', to: '1', term: 1 })
      n.step({ type: 'MsgVoteResp', from: '2', to: '1', term: 1 })
    }
    for (const m of msgs) {
      n.step(m as Message)
      while (n.hasReady()) {
        const rd = n.ready()
        store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
        store.sync()
        n.advance(rd)
      }
      const s = n.status()
      if (s.commit > store.lastIndex() || s.applied > s.commit) throw new Error(`bad indexes ${JSON.stringify(s)}`)
    }
  }), { numRuns: 400, seed: 42 })
})

test.run()
