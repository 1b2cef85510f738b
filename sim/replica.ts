// One simulated server: a RawNode over a MemoryLogStore, a StateMachine over
// a MemoryKv, and the shell that runs the Ready loop the way node/ does
// (persist, sync, send, apply, serve reads, advance). A crash drops the RawNode
// and the state machine and reverts the store to its last sync; a restart
// rebuilds the state machine from the store's snapshot and lets the core
// replay the committed log after it.
import { RawNode } from '../protocols/raft/index.ts'
import type { RaftBug } from '../protocols/raft/index.ts'
import type { Entry, Message, Ready } from '../protocols/raft/types.ts'
import { RaftError } from '../protocols/raft/types.ts'
import type { ApplyResult, BlixError, CommandEnvelope } from '../protocols/commands.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../storage/state-machine.ts'
import { decodeCbor } from '../storage/codec.ts'
import { MemoryKv } from '../storage/memory-kv.ts'
import { MemoryLogStore } from './memory-log-store.ts'
import type { Prng } from './prng.ts'
import type { Scheduler } from './scheduler.ts'
import type { Network } from './network.ts'
import type { Checker } from './checkers/checker.ts'
import type { VmView } from './history.ts'

/** Raft timing, in ticks of TICK_MS virtual ms. */
export const TICK_MS = 10
export const ELECTION_TICK = 10
export const HEARTBEAT_TICK = 2

/** Ready rounds one drive() may take before the run is declared stuck. */
const MAX_READY_ROUNDS = 10_000

/** Shell-level planted bugs: 'ack-before-sync' sends before the sync; 'conf-not-rolled-back'
 * reads an uncommitted (later truncated) conf entry into the configuration after a restart. */
export type SimBug = RaftBug | 'ack-before-sync' | 'conf-not-rolled-back'

export type RpcReply =
  | { ok: true, view: VmView | null, index: number, data: Uint8Array | null, node: string, incarnation: number, applied: number }
  | { ok: false, error: BlixError, index: number, data: Uint8Array | null, node: string }

/** What a seed sets for every replica alike (the cluster passes it through unchanged). */
export interface ReplicaTuning {
  sched: Scheduler
  rng: Prng
  bugs: ReadonlySet<SimBug>
  checkers: readonly Checker[]
  preVote: boolean
  checkQuorum: boolean
  /** per-seed replication tuning: small messages and windows stretch replication over many rounds */
  maxSizePerMsg: number
  maxInflightMsgs: number
  trace: ((line: string) => void) | null
}

export interface ReplicaEnv extends ReplicaTuning {
  net: Network<Message>
  /** Asked right after a Ready's messages went out: crash now? (power loss between send and the next step) */
  crashAfterSend: (r: Replica, rd: Ready) => boolean
  /** Told after a Ready's committed entries were applied (a fault may strike right then). */
  afterApply: (r: Replica, rd: Ready) => void
  /** Role changes, for the cluster's bookkeeping. */
  onRole: (r: Replica) => void
}

interface PendingRead {
  vm: string
  reply: (r: RpcReply) => void
  /** read index from the ReadState, -1 until it arrives */
  index: number
}

export function viewOf (sm: StateMachine, vm: string): VmView | null {
  const rec = sm.getVm(vm)
  if (rec == null) return null
  return { vcpus: rec.spec.vcpus, memoryMiB: rec.spec.memoryMiB, desired: rec.desired }
}

export class Replica {
  readonly id: string
  readonly store: MemoryLogStore
  node: RawNode | null = null
  sm: StateMachine | null = null
  /** bumped on every crash, so timers and replies of an earlier life are ignored */
  incarnation = 0
  /** highest committed index handed to the shell (conf entries included) */
  applied = 0
  up = false
  /** removed from the configuration and stopped for good */
  removed = false
  role = 'follower'
  term = 0
  private pendingWrites = new Map<string, Array<(r: RpcReply) => void>>()
  private pendingReads = new Map<string, PendingRead>()
  private readSeq = 0
  /** apply count since the last compaction, and when to compact next */
  private sinceCompact = 0
  private compactEvery: number
  /** The incarnation whose tick chain is pending (null: none). */
  private tickingInc: number | null = null

  constructor (id: string, store: MemoryLogStore, private readonly env: ReplicaEnv) {
    this.id = id
    this.store = store
    this.compactEvery = env.rng.range(8, 60)
  }

  private trace (line: string): void {
    if (this.env.trace !== null) this.env.trace(`${this.id} ${line}`)
  }

  start (): void {
    this.up = true
    const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
    const snap = this.store.snapshot()
    if (snap.meta.index > 0) sm.restore(snap.data, snap.meta.index)
    this.sm = sm
    this.applied = snap.meta.index
    this.role = 'follower'
    const rng = this.env.rng.fork(`election/${this.incarnation}`)
    const bugs = new Set<RaftBug>()
    for (const b of this.env.bugs) if (b !== 'ack-before-sync' && b !== 'conf-not-rolled-back') bugs.add(b)
    this.node = new RawNode({
      id: this.id,
      storage: this.store,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      random: () => rng.float(),
      applied: this.applied,
      preVote: this.env.preVote,
      checkQuorum: this.env.checkQuorum,
      maxSizePerMsg: this.env.maxSizePerMsg,
      maxInflightMsgs: this.env.maxInflightMsgs,
      bugs
    })
    this.term = this.node.status().term
    this.trace(`start inc=${this.incarnation} snap=${snap.meta.index} last=${this.store.lastIndex()} term=${this.term}`)
    this.scheduleTick(this.env.rng.range(1, TICK_MS))
    this.drive()
  }

  /** Power loss: unsynced writes are gone, in-flight client requests die with the process. */
  crash (why: string): void {
    if (!this.up) return
    this.store.crash()
    this.node = null
    this.sm = null
    this.up = false
    this.incarnation++
    this.pendingWrites.clear()
    this.pendingReads.clear()
    this.role = 'down'
    this.trace(`crash (${why})`)
    this.env.onRole(this)
  }

  private scheduleTick (delay: number): void {
    // One tick chain per incarnation: a chain of the previous incarnation that is still pending
    // (a crash and a restart within one tick, seed 52256) must not stop this one from starting.
    if (this.tickingInc === this.incarnation) return
    const inc = this.incarnation
    this.tickingInc = inc
    this.env.sched.after(delay, () => {
      if (this.tickingInc === inc) this.tickingInc = null
      if (!this.up || this.incarnation !== inc || this.node === null) return
      this.node.tick()
      this.drive()
      if (this.up && this.incarnation === inc) this.scheduleTick(TICK_MS)
    })
  }

  /** The shell saw every connection to `peer` close (node/ gets libp2p's peer:disconnect). */
  peerLost (peer: string): void {
    if (!this.up || this.node === null) return
    this.node.leaderLost(peer, 3)
    this.drive()
  }

  /** A Raft message arrived from the network. False when there was nobody to take it. */
  receive (m: Message): boolean {
    if (!this.up || this.node === null) return false
    this.node.step(m)
    this.drive()
    return true
  }

  // --- client requests -------------------------------------------------------

  write (env: CommandEnvelope, reply: (r: RpcReply) => void): void {
    if (!this.up || this.node === null) return
    try {
      this.node.propose(encodeEnvelope(env))
    } catch (err) {
      reply(this.refusal(err))
      return
    }
    const key = env.key as string
    const list = this.pendingWrites.get(key)
    if (list === undefined) this.pendingWrites.set(key, [reply])
    else list.push(reply)
    this.drive()
  }

  read (vm: string, reply: (r: RpcReply) => void): void {
    if (!this.up || this.node === null) return
    const ctx = `${this.id}/${this.incarnation}/${this.readSeq++}`
    try {
      this.node.readIndex(new TextEncoder().encode(ctx))
    } catch (err) {
      reply(this.refusal(err))
      return
    }
    this.pendingReads.set(ctx, { vm, reply, index: -1 })
    this.drive()
  }

  /** A local read, possibly stale: whatever this replica has applied. */
  staleRead (vm: string, reply: (r: RpcReply) => void): void {
    if (!this.up || this.sm === null) return
    reply({ ok: true, view: viewOf(this.sm, vm), index: -1, data: null, node: this.id, incarnation: this.incarnation, applied: this.applied })
  }

  private refusal (err: unknown): RpcReply {
    if (err instanceof RaftError) {
      const kind = err.kind === 'NotLeader' ? 'NotLeader' : 'Unavailable'
      const error: BlixError = { kind, message: err.message }
      if (err.leaderHint !== null) error.leader = err.leaderHint
      return { ok: false, error, index: -1, data: null, node: this.id }
    }
    throw err
  }

  // --- the Ready loop ---------------------------------------------------------

  /** Handle every Ready the core has, exactly in the order raft-api.md fixes. */
  drive (): void {
    let rounds = 0
    while (this.up && this.node !== null && this.node.hasReady()) {
      if (++rounds > MAX_READY_ROUNDS) throw new Error(`${this.id}: still has a Ready after ${MAX_READY_ROUNDS} rounds (a Ready loop that never settles)`)
      const node = this.node
      const rd = node.ready()
      const now = this.env.sched.now()
      if (rd.snapshot !== null) {
        const sm = this.sm as StateMachine
        this.store.save({ snapshot: rd.snapshot })
        // A joiner may get the leader's initial snapshot (index 0, no data): it only carries the configuration.
        if (rd.snapshot.data.byteLength > 0) sm.restore(rd.snapshot.data, rd.snapshot.meta.index)
        this.applied = rd.snapshot.meta.index
        this.trace(`install snapshot index=${rd.snapshot.meta.index} term=${rd.snapshot.meta.term}`)
      }
      this.store.save({ hardState: rd.hardState, entries: rd.entries })
      if (rd.entries.length > 0) for (const c of this.env.checkers) c.onPersist?.(this, rd.entries, now)
      if (rd.hardState !== null) this.term = rd.hardState.term
      if (rd.softState !== null) {
        const was = this.role
        this.role = rd.softState.role
        if (was !== this.role) {
          this.trace(`role ${this.role} term=${this.term}`)
          if (this.role === 'leader') for (const c of this.env.checkers) c.onLeader?.(this, this.term, now)
          this.env.onRole(this)
        }
      }
      const ackFirst = this.env.bugs.has('ack-before-sync')
      if (rd.mustSync && !ackFirst) this.store.sync()
      this.send(rd.messages)
      if (this.env.crashAfterSend(this, rd)) {
        this.crash('right after sending')
        return
      }
      if (rd.mustSync && ackFirst) this.store.sync()
      for (const e of rd.committedEntries) this.apply(e, now)
      if (rd.committedEntries.length > 0) this.env.afterApply(this, rd)
      for (const rs of rd.readStates) {
        const p = this.pendingReads.get(new TextDecoder().decode(rs.context))
        if (p !== undefined) p.index = rs.index
      }
      node.advance(rd)
      this.serveReads()
      if (this.sinceCompact >= this.compactEvery) this.compact(now)
    }
  }

  private send (messages: readonly Message[]): void {
    const inc = this.incarnation
    for (const m of messages) {
      if (m.type === 'MsgSnap') {
        this.trace(`send MsgSnap to ${m.to} index=${m.snapshot?.meta.index ?? -1}`)
        this.env.net.send(m.from, m.to, m, (delivered) => {
          if (!this.up || this.incarnation !== inc || this.node === null) return
          this.node.reportSnapshot(m.to, delivered)
          this.drive()
        })
      } else {
        this.env.net.send(m.from, m.to, m)
      }
    }
  }

  private apply (e: Entry, now: number): void {
    if (e.index <= this.applied) return // already covered by an installed snapshot
    const sm = this.sm as StateMachine
    let result: ApplyResult | null = null
    let key: string | undefined
    if (e.type === 'normal') {
      result = sm.apply(e.index, e.data)
      // Only a replica with clients waiting needs the key (decoding every entry on every replica is costly).
      if (e.data.byteLength > 0 && this.pendingWrites.size > 0) key = (decodeCbor(e.data) as { key?: string }).key
    }
    this.applied = e.index
    this.sinceCompact++
    for (const c of this.env.checkers) c.onApply?.(this, e, now)
    if (key !== undefined && result !== null) {
      const waiting = this.pendingWrites.get(key)
      if (waiting !== undefined) {
        this.pendingWrites.delete(key)
        const r: RpcReply = result.ok
          ? { ok: true, view: null, index: e.index, data: e.data, node: this.id, incarnation: this.incarnation, applied: e.index }
          : { ok: false, error: result.error, index: e.index, data: e.data, node: this.id }
        for (const reply of waiting) reply(r)
      }
    }
  }

  private serveReads (): void {
    if (this.pendingReads.size === 0) return
    const sm = this.sm as StateMachine
    for (const [ctx, p] of this.pendingReads) {
      if (p.index < 0 || p.index > this.applied) continue
      this.pendingReads.delete(ctx)
      p.reply({ ok: true, view: viewOf(sm, p.vm), index: p.index, data: null, node: this.id, incarnation: this.incarnation, applied: this.applied })
    }
  }

  /** Snapshot the state machine and drop most of the log, so slow followers need install-snapshot. */
  private compact (now: number): void {
    const node = this.node as RawNode
    const sm = this.sm as StateMachine
    const keep = this.env.rng.int(4)
    this.store.compact(this.applied, node.status().conf, sm.snapshot(), keep)
    this.sinceCompact = 0
    this.compactEvery = this.env.rng.range(8, 60)
    this.trace(`compact index=${this.applied} keep=${keep}`)
    const hash = sm.stateHash()
    for (const c of this.env.checkers) c.onSnapshot?.(this, this.applied, hash, now)
  }
}
