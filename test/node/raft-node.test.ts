// The node core (node/core/raft-node.ts) on its own: three cores over in-memory log stores, a
// hand-made network and the simulator's virtual clock, driven only through what the daemon and
// the simulator use (receive, propose, readIndex, ticks from injected timers). What it must do:
// elect and apply the same commands everywhere, answer proposals and reads, refuse a key already
// in flight, time proposals out on the injected clock, run the admission filter before the core.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { COMMIT_NOTICE_DELAY_MS, RaftNode } from '../../node/core/raft-node.ts'
import type { ProposalOutcome, RaftNodeOptions } from '../../node/core/raft-node.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { EventQueue } from '../../sim/event-queue.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../../storage/state-machine.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { seededSigner } from '../../protocols/auth.ts'
import type { Message } from '../../protocols/raft/types.ts'
import type { CommandEnvelope } from '../../protocols/commands.ts'
import { encodeEnvelope, envelopeDecodes } from '../../storage/envelope.ts'

const IDS = ['n1', 'n2', 'n3']
const TICK_MS = 10
const NET_DELAY_MS = 2

interface Env {
  sched: EventQueue
  cores: Map<string, RaftNode>
  sms: Map<string, StateMachine>
  stores: Map<string, MemoryLogStore>
  /** links that drop everything, as "from>to" */
  cut: Set<string>
}

function cluster (over: Partial<RaftNodeOptions> & { admitOn?: Record<string, RaftNodeOptions['admit']> } = {}): Env {
  const sched = new EventQueue()
  const env: Env = { sched, cores: new Map(), sms: new Map(), stores: new Map(), cut: new Set() }
  let seed = 7
  for (const id of IDS) {
    const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
    const store = new MemoryLogStore({ conf: { voters: IDS, learners: [] } })
    env.stores.set(id, store)
    const core = new RaftNode({
      id,
      store,
      sm,
      send: (msgs: Message[]) => {
        for (const m of msgs) {
          if (env.cut.has(`${m.from}>${m.to}`)) continue
          sched.after(NET_DELAY_MS, () => { env.cores.get(m.to)?.receive(m, m.from) })
        }
      },
      timers: { after: (ms, run) => { let live = true; sched.after(ms, () => { if (live) run() }); return () => { live = false } } },
      defer: null,
      random: () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 },
      readContextPrefix: id,
      tickMs: TICK_MS,
      firstTickMs: IDS.indexOf(id) + 1,
      electionTick: 10,
      heartbeatTick: 2,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1 << 20,
      maxInflightMsgs: 64,
      proposalTimeoutMs: 1_000,
      compaction: { due: (n) => n >= 5, keep: () => 1 },
      applyEachEntryAlone: false,
      readiesPerDrain: 1_000,
      admit: over.admitOn?.[id],
      ...over
    })
    env.cores.set(id, core)
    env.sms.set(id, sm)
  }
  for (const c of env.cores.values()) c.start()
  return env
}

function leader (env: Env): RaftNode {
  for (let t = 0; t < 100; t++) {
    for (const c of env.cores.values()) if (c.isLeader()) return c
    env.sched.runUntil(env.sched.now() + 50)
  }
  throw new Error('no leader within 5 s of virtual time')
}

const ADMINS = [0, 1, 2, 3, 4, 5, 6, 7].map(i => seededSigner(new Uint8Array(32).fill(i + 1)).peerId)
function addAdmin (i: number, key = `k${i}`): CommandEnvelope & { key: string } {
  return { at: 0, key, cmd: { type: 'AddAdmin', peerId: ADMINS[i], name: `admin${i}` } }
}

test('three cores elect one leader, apply every proposal everywhere and answer each with its result', () => {
  const env = cluster()
  const l = leader(env)
  const outcomes: ProposalOutcome[] = []
  for (let i = 0; i < 8; i++) l.propose(addAdmin(i), (o) => outcomes.push(o))
  env.sched.runUntil(env.sched.now() + 500)
  assert.is(outcomes.length, 8)
  assert.ok(outcomes.every(o => o.ok && o.result.ok), JSON.stringify(outcomes.filter(o => !o.ok)))
  const indexes = outcomes.map(o => o.ok ? o.index : -1)
  assert.equal(indexes, [...indexes].sort((a, b) => a - b), 'answered in log order')
  const hashes = new Set([...env.sms.values()].map(sm => sm.stateHash()))
  assert.is(hashes.size, 1, 'every replica holds the same state')
  assert.is(env.sms.get('n1')?.listAdmins().length, 8)
})

test('an entry is decoded once in a process: the check before proposing serves the apply on every replica that holds the same bytes', () => {
  const env = cluster()
  const l = leader(env)
  const before = envelopeDecodes()
  const outcomes: ProposalOutcome[] = []
  for (let i = 0; i < 8; i++) l.propose(addAdmin(i), (o) => outcomes.push(o))
  env.sched.runUntil(env.sched.now() + 500)
  assert.ok(outcomes.length === 8 && outcomes.every(o => o.ok && o.result.ok))
  // here the three cores share one process and messages carry the entries' byte arrays as they
  // are, as a real leader's own entries and a real follower's received ones reach its apply: 8
  // decodes (the leader's check of each proposal), not 32 (and one per replica each apply)
  assert.is(envelopeDecodes() - before, 8)
  assert.is(new Set([...env.sms.values()].map(sm => sm.stateHash())).size, 1)
  // an entry in an array of its own decodes again (the memo is by array, never by content)
  const data = encodeEnvelope(addAdmin(0, 'k-again'))
  const n = envelopeDecodes()
  env.sms.get('n1')?.applyBatch([{ index: 1_000, data: new Uint8Array(data) }], [])
  assert.is(envelopeDecodes() - n, 1)
})

test('a key already in flight is answered InFlight; a follower refuses with NotLeader and a hint', () => {
  const env = cluster()
  const l = leader(env)
  env.sched.runUntil(env.sched.now() + 50) // the followers hear from the new leader
  const got: string[] = []
  l.propose(addAdmin(0), (o) => got.push(o.ok ? 'ok' : o.error.kind))
  l.propose(addAdmin(1, 'k0'), (o) => got.push(o.ok ? 'ok' : o.error.kind))
  const follower = [...env.cores.values()].find(c => c !== l) as RaftNode
  let hint: string | undefined
  follower.propose(addAdmin(2), (o) => { if (!o.ok) { got.push(o.error.kind); hint = o.error.leader } })
  env.sched.runUntil(env.sched.now() + 200)
  assert.equal(got.sort(), ['InFlight', 'NotLeader', 'ok'])
  assert.is(hint, l.id)
})

test('an envelope that would not validate is refused before it is appended (followers would refuse the append and stall)', () => {
  const env = cluster()
  const l = leader(env)
  env.sched.runUntil(env.sched.now() + 50)
  const last = env.stores.get(l.id)!.lastIndex()
  const got: string[] = []
  // a negative timestamp: CBOR carries it, the envelope schema refuses it
  l.propose({ at: -1, key: 'bad', cmd: { type: 'AddAdmin', peerId: ADMINS[0], name: 'a' } }, (o) => got.push(o.ok ? 'ok' : o.error.kind))
  assert.equal(got, ['InvalidSpec'], 'answered at once')
  assert.is(env.stores.get(l.id)!.lastIndex(), last, 'nothing appended')
  // and the log keeps replicating
  l.propose(addAdmin(1), (o) => got.push(o.ok ? 'ok' : o.error.kind))
  env.sched.runUntil(env.sched.now() + 300)
  assert.equal(got, ['InvalidSpec', 'ok'])
  assert.is(new Set([...env.sms.values()].map(sm => sm.stateHash())).size, 1)
})

test('readIndex answers after the writes before it are applied; a proposal cut off times out on the injected clock', () => {
  const env = cluster()
  const l = leader(env)
  let written = -1
  let readAt = -1
  let admins = -1
  l.propose(addAdmin(0), (o) => {
    if (!o.ok) return
    written = o.index
    const follower = env.cores.get(l.id === 'n1' ? 'n2' : 'n1') as RaftNode
    const sm = env.sms.get(follower.id) as StateMachine
    // A read on a follower that started after the write was answered must see it.
    follower.readIndex(null, (err, index) => { assert.is(err, null); readAt = index; admins = sm.listAdmins().length })
  })
  env.sched.runUntil(env.sched.now() + 200)
  assert.ok(written > 0 && readAt >= written, `read index ${readAt} after write at ${written}`)
  assert.is(admins, 1, 'the follower had applied the write when its read was answered')
  for (const id of IDS) if (id !== l.id) { env.cut.add(`${l.id}>${id}`); env.cut.add(`${id}>${l.id}`) }
  let answer: ProposalOutcome | null = null
  const t0 = env.sched.now()
  l.propose(addAdmin(1), (o) => { answer = o; assert.ok(env.sched.now() - t0 >= 1_000 || !o.ok) })
  env.sched.runUntil(t0 + 1_500)
  const a = answer as ProposalOutcome | null
  assert.ok(a !== null && !a.ok, 'answered with an error')
  // Either the timeout or, once check-quorum deposes the cut-off leader, the leadership change.
  assert.ok(a !== null && !a.ok && (a.error.kind === 'Timeout' || a.error.kind === 'Unavailable'), JSON.stringify(a))
})

test('the admission filter runs before the core: a node refusing every append never applies anything', () => {
  const refused: string[] = []
  const env = cluster({ admitOn: { n3: (m) => { if (m.type !== 'MsgApp') return null; refused.push(m.type); return 'test filter' } } })
  const l = leader(env)
  const done: boolean[] = []
  for (let i = 0; i < 3; i++) l.propose(addAdmin(i), (o) => done.push(o.ok))
  env.sched.runUntil(env.sched.now() + 300)
  assert.equal(done, [true, true, true], 'two of three are a quorum')
  assert.ok(refused.length > 0)
  assert.is(env.sms.get('n3')?.listAdmins().length ?? -1, 0)
})

test('commit notices: writes one after another send no commit-only MsgApp; after the last, followers are told within the delay, before any heartbeat', () => {
  const env = cluster({ electionTick: 60, heartbeatTick: 30 }) // heartbeats every 300 ms
  const l = leader(env)
  env.sched.runUntil(env.sched.now() + 50)
  const sent: Message[] = []
  for (const [id, c] of env.cores) {
    const receive = c.receive.bind(c)
    c.receive = (m, from) => { if (from === l.id && id !== l.id) sent.push(m); return receive(m, from) }
  }
  let answered = 0
  let lastAt = 0
  const next = (i: number): void => {
    l.propose(addAdmin(i), (o) => {
      assert.ok(o.ok)
      answered++
      lastAt = env.sched.now()
      if (i < 7) next(i + 1)
    })
  }
  next(0)
  while (answered < 8 && env.sched.now() < 5_000) env.sched.runUntil(env.sched.now() + 1)
  assert.is(answered, 8)
  const lastIndex = l.applied()
  // the flush leaves COMMIT_NOTICE_DELAY_MS after the last write applied on the leader, and takes
  // one network delay; the next heartbeat is ~300 ms away
  env.sched.runUntil(lastAt + COMMIT_NOTICE_DELAY_MS + NET_DELAY_MS + 1)
  for (const [id, sm] of env.sms) assert.is(sm.applied(), lastIndex, `${id} applied the last write`)
  // the only empty MsgApps are that flush: one to each follower, with the last commit index
  const empty = sent.filter((m) => m.type === 'MsgApp' && (m.entries ?? []).length === 0)
  assert.equal(empty.map((m) => [m.to, m.commit]).sort(), [...env.cores.keys()].filter((id) => id !== l.id).map((id) => [id, lastIndex]).sort())
})

test('compaction runs by the policy, and a stopped core answers Unavailable', () => {
  const env = cluster()
  const l = leader(env)
  for (let i = 0; i < 8; i++) l.propose(addAdmin(i), () => {})
  env.sched.runUntil(env.sched.now() + 300)
  for (const id of IDS) {
    const store = env.stores.get(id) as MemoryLogStore
    assert.ok(store.snapshot().meta.index > 0, `${id} took a snapshot`)
  }
  l.stop(true)
  let kind = ''
  l.propose(addAdmin(7, 'late'), (o) => { if (!o.ok) kind = o.error.kind })
  assert.is(kind, 'Unavailable')
})

test.run()
