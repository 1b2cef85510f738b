// One state of the model: three replicas (each the real RawNode over the
// simulator's MemoryLogStore, persisting and sending through the shipped loop's
// step, node/core/raft-loop.ts ReadyPersistence: send-first when leading,
// deferred commit-only HardState; the rest of the Ready loop is the model's own,
// since node/core/raft-node.ts holds closures a state copy cannot carry), the network as a multiset of in-flight messages, and the
// ghost history the invariants need (leaders per term, entries applied and
// persisted, writes acknowledged). The whole object is copied with
// cloneGraph and fingerprinted with encodeState, so everything in it is state.
import { RawNode } from '../../protocols/raft/index.ts'
import type { RaftBug, RaftStatus } from '../../protocols/raft/index.ts'
import type { Entry, Message, ReadState } from '../../protocols/raft/types.ts'
import { MemoryLogStore } from '../memory-log-store.ts'
import { LOOP_BUGS, ReadyPersistence } from '../../node/core/raft-loop.ts'
import type { LoopBug } from '../../node/core/raft-loop.ts'
import type { SimBug } from '../replica.ts'
import type { Replica } from '../replica.ts'
import type { Cluster } from '../cluster.ts'
import { ElectionSafety } from '../checkers/election-safety.ts'
import { LeaderCompleteness } from '../checkers/leader-completeness.ts'
import { LogMatching } from '../checkers/log-matching.ts'
import { StateMachineSafety } from '../checkers/state-machine-safety.ts'
import { ConfigSafety } from '../checkers/config-safety.ts'
import type { Checker } from '../checkers/checker.ts'
import { cloneGraph, decodeValue, encodeState, encodeValue, fingerprint } from './graph.ts'

/** Raft timing in the model. The smallest legal values (electionTick > heartbeatTick > 0): a
 * leader's every tick is a heartbeat, and the PRNG is pinned to 0 so a follower campaigns after
 * exactly ELECTION_TICK ticks; the "timeout" action ticks a node until it does. */
export const MODEL_ELECTION_TICK = 2
export const MODEL_HEARTBEAT_TICK = 1
/** Ready rounds one drive() may take before the model declares the core stuck. */
const MAX_READY_ROUNDS = 1000

export interface ModelConfig {
  ids: readonly string[]
  bugs: ReadonlySet<SimBug>
  preVote: boolean
  checkQuorum: boolean
  /** Bytes of payload per MsgApp: 1 sends one client write per message, which lets
   * the model reach states where a follower holds an older entry but not the next. */
  maxSizePerMsg: number
  maxInflightMsgs: number
  /** Deliver each directed link's messages in the order sent (one stream per peer pair, as the
   * libp2p transport has) instead of in any order. Loss and duplication stay. */
  fifo: boolean
}

/** A message in the network: "from>to", a tab, then its canonical encoding. */
export function messageKey (m: Message): string {
  return `${m.from}>${m.to}\t${encodeValue(m)}`
}

export function linkOf (k: string): string {
  return k.slice(0, k.indexOf('\t'))
}

export function messageOf (k: string): Message {
  return decodeValue<Message>(k.slice(k.indexOf('\t') + 1))
}

const ENC = new TextEncoder()
const DEC = new TextDecoder()

export function writePayload (k: number): Uint8Array {
  return ENC.encode(`w${k}`)
}

function writeId (data: Uint8Array): number | null {
  if (data.byteLength === 0) return null
  const s = DEC.decode(data)
  return s.startsWith('w') ? Number(s.slice(1)) : null
}

interface PendingRead {
  /** read index from the ReadState, -1 until it arrives */
  index: number
  /** writes acknowledged to a client before this read was issued */
  ackedBefore: number[]
}

/** The shell around one RawNode, as sim/replica.ts runs it minus timers, compaction (hence
 * snapshots) and the full state machine: the state machine here is the list of client writes
 * applied, in order, which is all the read check needs. */
export class ModelReplica {
  readonly id: string
  readonly store: MemoryLogStore
  node: RawNode
  up = true
  role = 'follower'
  term = 0
  applied = 0
  /** the state machine: write ids in apply order */
  sm: number[] = []
  /** writes this replica proposed and has not yet applied (client waiting) */
  waiting: number[] = []
  reads: Record<string, PendingRead> = {}

  /** what reached disk and the deferred commit-only HardState (the shipped loop's bookkeeping) */
  persistence: ReadyPersistence

  constructor (id: string, cfg: ModelConfig) {
    this.id = id
    this.store = new MemoryLogStore({ conf: { voters: [...cfg.ids], learners: [] }, countUncommittedConf: cfg.bugs.has('conf-not-rolled-back') })
    this.node = this.makeNode(cfg)
    this.persistence = this.makePersistence(cfg)
  }

  makePersistence (cfg: ModelConfig): ReadyPersistence {
    const loopBugs = new Set<LoopBug>()
    for (const b of cfg.bugs) if ((LOOP_BUGS as readonly string[]).includes(b)) loopBugs.add(b as LoopBug)
    return new ReadyPersistence(this.store.initialState().hardState, loopBugs)
  }

  /** The core's status, as sim/replica.ts Replica.raftStatus() gives it to the checkers. */
  raftStatus (): RaftStatus | null {
    return this.up ? this.node.status() : null
  }

  makeNode (cfg: ModelConfig): RawNode {
    const bugs = new Set<RaftBug>()
    for (const b of cfg.bugs) if (b !== 'ack-before-sync' && b !== 'vote-before-persist' && b !== 'conf-not-rolled-back' && b !== 'no-self-fence' && b !== 'retry-new-key' && b !== 'preempt-equal') bugs.add(b)
    return new RawNode({
      id: this.id,
      storage: this.store,
      electionTick: MODEL_ELECTION_TICK,
      heartbeatTick: MODEL_HEARTBEAT_TICK,
      random: pinnedRandom,
      applied: this.store.snapshot().meta.index,
      preVote: cfg.preVote,
      checkQuorum: cfg.checkQuorum,
      maxSizePerMsg: cfg.maxSizePerMsg,
      maxInflightMsgs: cfg.maxInflightMsgs,
      bugs
    })
  }
}

function pinnedRandom (): number {
  return 0
}

/** A replica as the simulator's checkers see it: they read only id, up, raftStatus() and store, which
 * ModelReplica has with the same meaning. */
function asReplica (r: ModelReplica): Replica {
  return r as unknown as Replica
}

export interface Ghost {
  /** [term, leader] in the order leaders took office */
  leaders: Array<[number, string]>
  /** first entry applied at each index, by whom, and the lowest term any replica was in when it
   * applied it (a bound from above on the term in which it was committed) */
  applied: Array<{ by: string, entry: Entry, term: number }>
  /** first entry persisted with each index/term, and by whom */
  persisted: Array<{ by: string, entry: Entry }>
  /** writes acknowledged to their client, sorted */
  acked: number[]
  writes: number
  reads: number
  confs: number
  joints: number
  crashes: number
  dups: number
  /** counted only when their budget is bounded (else they would split equal states) */
  timeouts: number
  heartbeats: number
}

const replicaText = new WeakMap<ModelReplica, string>()

export class World {
  readonly cfg: ModelConfig
  readonly reps: ModelReplica[]
  /** In-flight messages, canonically encoded, sorted (a multiset: copies repeat). */
  net: string[] = []
  ghost: Ghost = { leaders: [], applied: [], persisted: [], acked: [], writes: 0, reads: 0, confs: 0, joints: 0, crashes: 0, dups: 0, timeouts: 0, heartbeats: 0 }
  /** Invariant breaks found by the last transition (not part of the state). */
  violations: string[] = []
  /** When >= 0: crash replica `crashArmed` right after its next Ready's messages go out. */
  crashArmed = -1
  crashFired = false

  /** Replicas this copy has made its own (see fork). */
  private owned: boolean[]

  constructor (cfg: ModelConfig) {
    this.cfg = cfg
    this.reps = cfg.ids.map(id => new ModelReplica(id, cfg))
    this.owned = this.reps.map(() => true)
  }

  /** A copy that shares every replica with this state until own() is called for it: a transition
   * touches one replica (two for a snapshot's outcome), so only that one is copied. */
  fork (): World {
    const w = Object.create(World.prototype) as World
    Object.assign(w, {
      cfg: this.cfg,
      reps: [...this.reps],
      net: [...this.net],
      ghost: cloneGraph(this.ghost),
      violations: [],
      crashArmed: -1,
      crashFired: false,
      owned: this.reps.map(() => false)
    })
    return w
  }

  /** Copy replica `i` into this state before changing it. */
  own (i: number): ModelReplica {
    if (!this.owned[i]) {
      this.reps[i] = cloneGraph(this.reps[i])
      this.owned[i] = true
    }
    return this.reps[i]
  }

  /** Canonical text of the whole state, with each replica stood for by the fingerprint of its
   * own canonical text. That fingerprint is kept with the replica: shared replicas are never
   * changed (a fork copies before it writes), so it is computed once per replica copy. */
  encode (): string {
    let s = ''
    for (const r of this.reps) {
      let t = replicaText.get(r)
      if (t === undefined) {
        t = fingerprint(encodeState(r))
        replicaText.set(r, t)
      }
      s += t + '|'
    }
    return s + this.net.join('\n') + '|' + encodeState(this.ghost)
  }

  rep (id: string): ModelReplica | undefined {
    return this.reps.find(r => r.id === id)
  }

  // --- the network ------------------------------------------------------------

  /** Sorted by text (a canonical multiset); with fifo, sorted by link only and in sending order
   * within a link. */
  send (m: Message): void {
    const k = messageKey(m)
    const link = linkOf(k)
    let lo = 0
    let hi = this.net.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const before = this.cfg.fifo ? linkOf(this.net[mid]) <= link : this.net[mid] < k
      if (before) lo = mid + 1
      else hi = mid
    }
    this.net.splice(lo, 0, k)
  }

  /** Remove one copy of `k` from the network. */
  take (k: string): boolean {
    const i = this.net.indexOf(k)
    if (i < 0) return false
    this.net.splice(i, 1)
    return true
  }

  // --- crash and restart (as Replica.crash + Replica.start) -----------------------

  /** Power loss and restart: unsynced writes are gone, waiting clients and reads die with the
   * process, the state machine is rebuilt from the store's snapshot and the committed log. */
  restart (r: ModelReplica): void {
    r.store.crash()
    r.waiting = []
    r.reads = {}
    r.sm = []
    r.applied = r.store.snapshot().meta.index
    r.role = 'follower'
    r.node = r.makeNode(this.cfg)
    r.persistence = r.makePersistence(this.cfg)
    r.term = r.node.status().term
    this.drive(r)
  }

  // --- the Ready loop (node/core/raft-node.ts handle(), step for step) --------------

  drive (r: ModelReplica): void {
    let rounds = 0
    while (r.up && r.node.hasReady()) {
      if (++rounds > MAX_READY_ROUNDS) throw new Error(`${r.id}: still has a Ready after ${MAX_READY_ROUNDS} rounds`)
      const node = r.node
      const rd = node.ready()
      if (rd.hardState !== null) r.term = rd.hardState.term
      if (rd.softState !== null) {
        const was = r.role
        r.role = rd.softState.role
        if (was !== r.role && r.role === 'leader') this.onLeader(r, r.term)
      }
      const idx = this.reps.indexOf(r)
      const survived = r.persistence.persistAndSend(rd, r.role === 'leader', {
        store: r.store,
        send: (msgs) => { for (const m of msgs) this.send(m) },
        installSnapshot: (snap) => {
          // The model never compacts, so no leader sends a snapshot with state in it; the list of
          // applied writes could not be restored from one, so say so rather than go on wrongly.
          if (snap.data.byteLength > 0) throw new Error(`${r.id}: a snapshot with state reached the model, which does not model compaction`)
          r.applied = snap.meta.index
        },
        onSaved: (entries) => { this.onPersist(r, entries) },
        afterSend: () => {
          if (this.crashArmed !== idx || rd.messages.length === 0) return false
          // power loss between this Ready's send and the rest of its handling
          this.crashArmed = -1
          this.crashFired = true
          return true
        }
      })
      if (!survived) {
        this.restart(r)
        return
      }
      for (const e of rd.committedEntries) this.apply(r, e)
      this.noteReadStates(r, rd.readStates)
      node.advance(rd)
      this.serveReads(r)
    }
  }

  private apply (r: ModelReplica, e: Entry): void {
    if (e.index <= r.applied) return
    r.applied = e.index
    this.onApply(r, e)
    if (e.type !== 'normal') return
    const w = writeId(e.data)
    if (w === null) return
    r.sm.push(w)
    const k = r.waiting.indexOf(w)
    if (k >= 0) {
      r.waiting.splice(k, 1)
      if (!this.ghost.acked.includes(w)) {
        this.ghost.acked.push(w)
        this.ghost.acked.sort((a, b) => a - b)
      }
    }
  }

  private noteReadStates (r: ModelReplica, rs: readonly ReadState[]): void {
    for (const s of rs) {
      const p = r.reads[DEC.decode(s.context)]
      if (p !== undefined) p.index = s.index
    }
  }

  /** A ReadIndex read is served once applied reaches its index: it must see every write that was
   * acknowledged before it was issued (linearizable reads). */
  private serveReads (r: ModelReplica): void {
    for (const ctx of Object.keys(r.reads)) {
      const p = r.reads[ctx]
      if (p.index < 0 || p.index > r.applied) continue
      delete r.reads[ctx]
      const missing = p.ackedBefore.filter(w => !r.sm.includes(w))
      if (missing.length > 0) {
        this.violations.push(`linearizable-reads: read ${ctx} at ${r.id} (read index ${p.index}, applied ${r.applied}) returned [${r.sm.map(w => `w${w}`).join(' ')}], missing ${missing.map(w => `w${w}`).join(' ')} acknowledged before the read was issued`)
      }
    }
  }

  // --- invariants, through the simulator's own checkers ------------------------------
  // The checkers keep history (leaders per term, entries applied/persisted); here that history is
  // the ghost, part of the state, and a fresh checker is fed it before each new event.

  private collect (c: Checker): void {
    for (const v of c.violations) this.violations.push(`${v.checker}: ${v.message}`)
  }

  private onLeader (r: ModelReplica, term: number): void {
    const es = new ElectionSafety()
    for (const [t, id] of this.ghost.leaders) es.onLeader(asReplica(this.rep(id) as ModelReplica), t, 0)
    es.onLeader(asReplica(r), term, 0)
    this.collect(es)
    if (!this.ghost.leaders.some(([t, id]) => t === term && id === r.id)) this.ghost.leaders.push([term, r.id])
    // Completeness binds the leaders of terms after the commit only: a candidate of an older term
    // may still win on late votes after a newer leader committed. The checker bounds an entry's
    // commit term by its applier's term, so each entry is fed with the term it was committed in.
    const lc = new LeaderCompleteness()
    for (const a of this.ghost.applied) if (a.term < term) lc.onApply({ term: a.term } as unknown as Replica, a.entry)
    lc.onLeader(asReplica(r), term, 0)
    this.collect(lc)
  }

  private onApply (r: ModelReplica, e: Entry): void {
    const sms = new StateMachineSafety()
    for (const a of this.ghost.applied) sms.onApply(asReplica(this.rep(a.by) as ModelReplica), a.entry, 0)
    sms.onApply(asReplica(r), e, 0)
    this.collect(sms)
    const seen = this.ghost.applied.find(a => a.entry.index === e.index)
    if (seen !== undefined) {
      seen.term = Math.min(seen.term, r.term)
    } else {
      this.ghost.applied.push({ by: r.id, entry: e, term: r.term })
      this.ghost.applied.sort((a, b) => a.entry.index - b.entry.index)
    }
  }

  private onPersist (r: ModelReplica, entries: readonly Entry[]): void {
    const lm = new LogMatching()
    for (const p of this.ghost.persisted) lm.onPersist(asReplica(this.rep(p.by) as ModelReplica), [p.entry], 0)
    lm.onPersist(asReplica(r), entries, 0)
    this.collect(lm)
    for (const e of entries) {
      if (this.ghost.persisted.some(p => p.entry.index === e.index && p.entry.term === e.term)) continue
      this.ghost.persisted.push({ by: r.id, entry: e })
    }
    this.ghost.persisted.sort((a, b) => a.entry.index - b.entry.index || a.entry.term - b.entry.term)
  }

  /** The state-wide checks the simulator makes at each checkpoint, here after every transition. */
  checkState (): void {
    const cluster = { replicas: this.reps.map(asReplica) } as unknown as Cluster
    const lm = new LogMatching()
    lm.onCheckpoint(cluster, 0)
    this.collect(lm)
    const cs = new ConfigSafety()
    cs.onCheckpoint(cluster, 0)
    this.collect(cs)
  }
}
