// One Raft node: a RawNode and the Ready loop that drives it, with its whole environment as
// parameters (log store, transport, state machine, timers, randomness). node/raft-service.ts wires
// it to LMDB, libp2p and real timers; sim/replica.ts to sim/memory-log-store.ts, the simulated
// network and the virtual clock; bench/raft-core.ts to LMDB and an in-memory hand-over. So the
// simulator's seeds run the loop the daemon ships, send-first and deferred HardState included
// (node/core/raft-loop.ts). Nothing here reads a clock, draws randomness or sets a timer itself.
//
// One Ready, in order: soft state (role, leader), persist and send (raft-loop.ts), apply the
// committed entries (conf entries in applyConfEntry, commands in state-machine batches), answer
// proposals and reads whose index is applied, advance, compact when the policy says so.
//
// A commit index alone is not sent at once (RaftConfig.lazyCommitNotice): the empty MsgApps that
// would tell the followers wait COMMIT_NOTICE_DELAY_MS, and the next write's MsgApp, which carries
// the commit index, usually tells them first. At one client that was half of all Raft messages
// (a commit-only MsgApp to each follower and its answer, per write) and a Ready on each follower.
//
// Seams for other work: receive() is the one entry for inbound Raft messages (an admission filter
// sits in front of it, in the environment); applyConfEntry() is the one place a committed conf
// entry is handled.
import { RawNode } from '../../protocols/raft/rawnode.ts'
import type { RaftBug, RaftStatus } from '../../protocols/raft/rawnode.ts'
import type { AnyConfChange, ConfState, Entry, Message, NodeId, Ready, Role, Snapshot } from '../../protocols/raft/types.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { confChangeDone, confChangeText } from '../../protocols/raft/confchange.ts'
import type { LogStore } from '../../protocols/raft/storage.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { encodeEnvelope, tryDecodeEnvelope } from '../../storage/envelope.ts'
import { ReadyPersistence } from './raft-loop.ts'
import type { LoopBug } from './raft-loop.ts'

/** How long a leader holds back the empty MsgApps that only tell followers a new commit index
 * (ms). Long enough for a client's next write to carry it (an answer and the next request: ~1 ms
 * here), short enough that an idle cluster's followers apply a write within a few ms of the
 * leader (a heartbeat, every heartbeatTick × tickMs, carries it anyway). */
export const COMMIT_NOTICE_DELAY_MS = 5

/** What the core needs of a state machine (storage/state-machine.ts StateMachine is one). */
export interface CoreStateMachine {
  applied: () => number
  /** applies commands in order in one transaction; `decoded` receives each one's envelope; each
   * entry's term goes with it (a scheduling decision applies only in its leader's term) */
  applyBatch: (entries: ReadonlyArray<{ index: number, term: number, data: Uint8Array }>, decoded?: Array<CommandEnvelope | null>) => ApplyResult[]
  restore: (data: Uint8Array, index: number) => void
  snapshot: () => Uint8Array
}

/** Timers of the environment: real ones in node/, the virtual scheduler in sim/. */
export interface CoreTimers {
  /** runs `run` after `ms`; the returned function cancels it */
  after: (ms: number, run: () => void) => () => void
}

/** When to snapshot the state machine and compact the log, and how many entries to keep behind. */
export interface CompactionPolicy {
  /** asked after each Ready with the entries applied since the last compaction */
  due: (appliedSinceLast: number) => boolean
  keep: () => number
}

export interface CoreLog {
  info: (msg: string, fields?: Record<string, unknown>) => void
  warn: (msg: string, fields?: Record<string, unknown>) => void
}

/** Observers: metrics in node/, checkers and traces in sim/. All optional, none may throw. */
export interface RaftNodeHooks {
  /** role or leader changed (from a Ready's soft state) */
  onRole?: (role: Role, leader: NodeId | null, term: number) => void
  /** entries were saved to the log store (maybe not synced yet) */
  onPersisted?: (entries: readonly Entry[]) => void
  /** a committed entry was applied (the state machine reflects it); env/result are null for conf
   * entries, empty entries and undecodable ones */
  onApplied?: (e: Entry, env: CommandEnvelope | null, result: ApplyResult | null) => void
  onSnapshotInstalled?: (snap: Snapshot) => void
  onCompacted?: (index: number, keep: number) => void
  onMessagesSent?: (msgs: readonly Message[]) => void
  onMessageReceived?: (m: Message) => void
  /** before each Ready is handled (metrics time it) */
  onReadyStart?: () => void
  /** after each Ready is handled (status is up to date) */
  onReadyDone?: (rd: Ready) => void
  /** storage failed mid-Ready: the core has stopped and rethrows `err` after this */
  onFatal?: (err: unknown) => void
  /** asked right after a Ready's messages were handed to the transport: true means the process
   * died there (the simulator's power loss); the core stops at once */
  afterSend?: (rd: Ready) => boolean
}

export interface RaftNodeOptions {
  id: NodeId
  store: LogStore
  sm: CoreStateMachine
  /** hands messages to the transport; must not block */
  send: (msgs: Message[]) => void
  timers: CoreTimers
  /** runs the Ready loop later (node/: setImmediate, so many inputs share one pass); null: at once,
   * inside the call that made work (sim/: deterministic, no extra events) */
  defer: ((run: () => void) => void) | null
  /** election jitter, in [0, 1) */
  random: () => number
  /** makes read contexts unique across restarts of this node (a random nonce, or an incarnation) */
  readContextPrefix: string
  tickMs: number
  /** delay of the first tick (default tickMs); the simulator staggers replicas with it */
  firstTickMs?: number
  electionTick: number
  heartbeatTick: number
  preVote: boolean
  checkQuorum: boolean
  maxSizePerMsg: number
  maxInflightMsgs: number
  /** learners take their feed from a follower, not the leader (protocols/raft/relay.ts) */
  relayLearners?: boolean
  /** a proposal not applied within this long is answered Timeout; null: never (the caller's
   * own deadline governs, as the simulator's clients do) */
  proposalTimeoutMs: number | null
  compaction: CompactionPolicy
  /** one state-machine batch per command instead of per Ready: the simulator's checkers look at the
   * state right after each entry (onApplied); node/ batches (one LMDB commit per Ready) */
  applyEachEntryAlone: boolean
  /** Ready passes per drain before yielding to the event loop (or, drained at once, failing) */
  readiesPerDrain: number
  log?: CoreLog
  hooks?: RaftNodeHooks
  /** The admission filter on the receive path: null admits the message, a string is why it was
   * refused (dropped, logged). Runs before the core sees anything, in node/ and sim/ alike. */
  admit?: (m: Message, fromPeer: NodeId | null) => string | null
  /** planted bugs (simulator only) */
  raftBugs?: ReadonlySet<RaftBug>
  loopBugs?: ReadonlySet<LoopBug>
}

export type ProposalOutcome =
  | { ok: true, index: number, env: CommandEnvelope, data: Uint8Array, result: ApplyResult }
  | { ok: false, error: BlixardError }

interface ProposalWaiter {
  done: (o: ProposalOutcome) => void
  cancel: (() => void) | null
}

interface ReadWaiter {
  done: (err: BlixardError | null, index: number) => void
  cancel: (() => void) | null
  /** read index from the ReadState, -1 until it arrives */
  index: number
}

export class RaftNode {
  readonly id: NodeId
  private readonly node: RawNode
  private readonly persistence: ReadyPersistence
  private readonly proposals = new Map<string, ProposalWaiter>()
  private readonly reads = new Map<string, ReadWaiter>()
  private readSeq = 0
  private stopped = false
  private scheduled = false
  private draining = false
  private cancelTick: (() => void) | null = null
  /** the pending flush of held-back commit notices (COMMIT_NOTICE_DELAY_MS) */
  private cancelNotice: (() => void) | null = null
  /** role as of the last Ready's soft state */
  private leading = false
  private role: Role = 'follower'
  private leader: NodeId | null = null
  /** last log index handed out as committed and processed, conf entries included (what ReadIndex
   * waits for); never below the state machine's applied index */
  private appliedIdx: number
  /** index of the last snapshot (taken here or installed): compaction counts from it */
  private lastCompactIndex: number

  constructor (private readonly o: RaftNodeOptions) {
    this.id = o.id
    const snap = o.store.snapshot()
    // The state machine may be behind the log's snapshot (node/: it commits without fsync and the
    // entries in between may be compacted away; sim/: a fresh one after a crash): start from it.
    if (snap.meta.index > o.sm.applied()) {
      o.sm.restore(snap.data, snap.meta.index)
      o.log?.info('state machine restored from the log snapshot', { index: snap.meta.index })
    }
    this.appliedIdx = Math.max(o.sm.applied(), snap.meta.index)
    this.lastCompactIndex = snap.meta.index
    this.persistence = new ReadyPersistence(o.store.initialState().hardState, o.loopBugs)
    this.node = new RawNode({
      id: o.id,
      storage: o.store,
      electionTick: o.electionTick,
      heartbeatTick: o.heartbeatTick,
      random: o.random,
      applied: o.sm.applied(),
      maxSizePerMsg: o.maxSizePerMsg,
      maxInflightMsgs: o.maxInflightMsgs,
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      lazyCommitNotice: true,
      relayLearners: o.relayLearners ?? false,
      bugs: o.raftBugs
    })
  }

  // --- life cycle ---------------------------------------------------------------------------

  start (): void {
    if (this.cancelTick != null || this.stopped) return
    this.armTick(this.o.firstTickMs ?? this.o.tickMs)
    this.schedule()
  }

  /** Stops ticking and answers every waiter Unavailable. `flush`: write the deferred commit-only
   * HardState first (a clean stop; a crash writes nothing). */
  stop (flush: boolean): void {
    if (this.stopped) return
    this.stopped = true
    this.cancelTick?.()
    this.cancelTick = null
    this.cancelNotice?.()
    this.cancelNotice = null
    if (flush) this.persistence.flushDeferred(this.o.store)
    this.failAll(new BlixardError('Unavailable', 'the node is shutting down; retry on another node'))
  }

  /** Power loss (simulator): stop where we are, write nothing more, answer nobody (the clients
   * of a dead process time out). */
  crash (): void {
    this.stopped = true
    this.cancelTick?.()
    this.cancelTick = null
    this.cancelNotice?.()
    this.cancelNotice = null
    for (const w of this.proposals.values()) w.cancel?.()
    for (const w of this.reads.values()) w.cancel?.()
    this.proposals.clear()
    this.reads.clear()
  }

  isStopped (): boolean { return this.stopped }

  private armTick (ms: number): void {
    this.cancelTick = this.o.timers.after(ms, () => {
      this.cancelTick = null
      if (this.stopped) return
      this.node.tick()
      this.schedule()
      if (!this.stopped && this.cancelTick == null) this.armTick(this.o.tickMs)
    })
  }

  // --- inputs -------------------------------------------------------------------------------

  /** The receive hook: one Raft message from the transport, already decoded and admitted by the
   * environment's decoder; `fromPeer` is the transport's authenticated sender, when it has one.
   * False when this node is stopped and nobody took it. */
  receive (m: Message, fromPeer: NodeId | null = null): boolean {
    if (this.stopped) return false
    // the filter counts and logs its own refusals (once per peer, not per message)
    if ((this.o.admit?.(m, fromPeer) ?? null) != null) return true
    this.o.hooks?.onMessageReceived?.(m)
    try {
      this.node.step(m)
    } catch (e) {
      // A message the core refuses (wrong shape for its state) is dropped, never fatal.
      this.o.log?.warn('raft step failed', { type: m.type, from: m.from, err: e })
    }
    this.schedule()
    return true
  }

  reportUnreachable (peer: NodeId): void { if (this.stopped) return; this.node.reportUnreachable(peer); this.schedule() }
  reportSnapshot (peer: NodeId, ok: boolean): void { if (this.stopped) return; this.node.reportSnapshot(peer, ok); this.schedule() }

  /** Every connection to `peer` closed: if it was our leader, campaign within `slotTicks` ticks
   * (RawNode.leaderLost) instead of waiting out the election timeout. True when it was the leader. */
  leaderLost (peer: NodeId, slotTicks: number): boolean {
    if (this.stopped || this.node.lead() !== peer) return false
    this.node.leaderLost(peer, slotTicks)
    this.schedule()
    return true
  }

  transferLeadership (to: NodeId): void { if (this.stopped) return; this.node.transferLeadership(to); this.schedule() }
  campaign (): void { if (this.stopped) return; this.node.campaign(); this.schedule() }

  /** Proposes a membership change; throws (as BlixardError) if the core refuses it. */
  proposeConfChange (cc: AnyConfChange): void {
    if (this.stopped) throw new BlixardError('Unavailable', 'the node is shutting down')
    try { this.node.proposeConfChange(cc) } catch (e) { throw raftToBlix(e) }
    this.schedule()
  }

  /** Proposes a membership change and answers `done` once the leader's configuration shows it
   * applied (null), or why not: refused now, leadership lost, this node stopped, or not applied
   * within `timeoutMs` (looked at every `pollMs`, on the environment's timers, so the simulator
   * runs the same wait as the daemon). */
  proposeConfChangeWatched (cc: AnyConfChange, timeoutMs: number, pollMs: number, done: (err: BlixardError | null) => void): void {
    try { this.proposeConfChange(cc) } catch (e) { done(e instanceof BlixardError ? e : raftToBlix(e)); return }
    let polls = Math.max(1, Math.ceil(timeoutMs / pollMs))
    const check = (): void => {
      if (this.stopped) { done(new BlixardError('Unavailable', 'the node stopped during the membership change')); return }
      const st = this.node.status()
      if (confChangeDone(st.conf, cc)) { done(null); return }
      if (st.role !== 'leader') { done(new BlixardError('NotLeader', 'leadership changed during the membership change', st.lead ?? undefined)); return }
      if (polls-- <= 0) { done(new BlixardError('Timeout', `membership change ${confChangeText(cc)} not applied in time`)); return }
      this.o.timers.after(pollMs, check)
    }
    check()
  }

  /** Proposes a command without waiting for it (a scheduler's fire-and-forget); throws if refused. */
  proposeUnwatched (env: CommandEnvelope): void {
    if (this.stopped) throw new BlixardError('Unavailable', 'the node is shutting down')
    try { this.node.propose(encodeEnvelope(env)) } catch (e) { throw raftToBlix(e) }
    this.schedule()
  }

  /** Proposes a command (its key set by the caller) and answers `done` once it applied here,
   * or with an error: refused now, leadership lost, timed out, or the node stopped. A second
   * proposal with a key still in flight here is answered InFlight. */
  propose (env: CommandEnvelope & { key: string }, done: (o: ProposalOutcome) => void): void {
    if (this.stopped) { done({ ok: false, error: new BlixardError('Unavailable', 'the node is shutting down') }); return }
    const key = env.key
    if (this.proposals.has(key)) {
      done({ ok: false, error: new BlixardError('InFlight', `a command with idempotency key ${key} is already in flight; retry later with the same key`) })
      return
    }
    // Only what every replica's admission filter accepts goes into the log: followers refuse a
    // MsgApp carrying an entry that does not decode as a valid command (node/core/raft-ingress.ts),
    // so one such entry from this leader would stall replication for good.
    const data = encodeEnvelope(env)
    const valid = tryDecodeEnvelope(data)
    if (!valid.ok) { done({ ok: false, error: BlixardError.from(valid.error) }); return }
    try {
      this.node.propose(data)
    } catch (e) {
      done({ ok: false, error: raftToBlix(e) })
      return
    }
    const w: ProposalWaiter = { done, cancel: null }
    const limit = this.o.proposalTimeoutMs
    if (limit != null) {
      w.cancel = this.o.timers.after(limit, () => {
        if (this.proposals.get(key) !== w) return
        this.proposals.delete(key)
        done({ ok: false, error: new BlixardError('Timeout', `command not committed within ${limit} ms; it may still apply — retry with the same key`) })
      })
    }
    this.proposals.set(key, w)
    this.schedule()
  }

  /** Linearizable read barrier: `done(null, index)` once this node has applied everything
   * committed before the call; `timeoutMs` null: no timeout. */
  readIndex (timeoutMs: number | null, done: (err: BlixardError | null, index: number) => void): void {
    if (this.stopped) { done(new BlixardError('Unavailable', 'the node is shutting down'), -1); return }
    const ctx = `${this.o.readContextPrefix}/${this.readSeq++}`
    try {
      this.node.readIndex(new TextEncoder().encode(ctx))
    } catch (e) {
      done(raftToBlix(e), -1)
      return
    }
    const w: ReadWaiter = { done, cancel: null, index: -1 }
    if (timeoutMs != null) {
      w.cancel = this.o.timers.after(timeoutMs, () => {
        if (this.reads.get(ctx) !== w) return
        this.reads.delete(ctx)
        done(new BlixardError('Timeout', `linearizable read not confirmed within ${timeoutMs} ms (no quorum?); retry, or read with --stale`), -1)
      })
    }
    this.reads.set(ctx, w)
    this.schedule()
  }

  // --- state --------------------------------------------------------------------------------

  status (): RaftStatus { return this.node.status() }
  lastIndex (): number { return this.node.lastIndex() }
  isLeader (): boolean { return this.role === 'leader' }
  leaderId (): NodeId | null { return this.node.lead() }
  term (): number { return this.node.term() }
  /** the core's role now (isLeader() answers from the last Ready handled) */
  coreRole (): Role { return this.node.role() }
  /** the configuration, shared: do not modify (RawNode.conf) */
  conf (): Readonly<ConfState> { return this.node.conf() }
  /** last committed index processed here, conf entries included */
  applied (): number { return this.appliedIdx }

  // --- the Ready loop -----------------------------------------------------------------------

  private schedule (): void {
    if (this.stopped || this.draining) return // a drain in progress looks at hasReady() again
    if (this.o.defer == null) { this.drain(); return }
    if (this.scheduled) return
    this.scheduled = true
    this.o.defer(() => { this.scheduled = false; this.drain() })
  }

  private drain (): void {
    this.draining = true
    let rounds = 0
    try {
      while (!this.stopped && this.node.hasReady()) {
        if (rounds++ >= this.o.readiesPerDrain) {
          if (this.o.defer != null) { this.draining = false; this.schedule(); return }
          throw new Error(`${this.id}: still has a Ready after ${this.o.readiesPerDrain} rounds (a Ready loop that never settles)`)
        }
        try {
          this.o.hooks?.onReadyStart?.()
          this.handle(this.node.ready())
        } catch (err) {
          // A Ready half-handled (the log not written or not known durable, the state not
          // committed) can never be taken as done: stop at once, sending nothing more; the
          // restart recovers from what the log holds (storage/wal-log-store.ts LogDurabilityError).
          this.stopped = true
          this.cancelTick?.()
          this.o.hooks?.onFatal?.(err)
          throw err
        }
      }
    } finally {
      this.draining = false
    }
    this.armCommitNotice()
  }

  /** Followers not yet told the commit index are told within COMMIT_NOTICE_DELAY_MS. */
  private armCommitNotice (): void {
    if (this.stopped || this.cancelNotice != null || !this.node.commitNoticesDue()) return
    this.cancelNotice = this.o.timers.after(COMMIT_NOTICE_DELAY_MS, () => {
      this.cancelNotice = null
      if (this.stopped) return
      this.node.flushCommitNotices()
      this.schedule()
    })
  }

  private handle (rd: Ready): void {
    const { store, sm, hooks } = this.o
    if (rd.softState != null) this.noteSoftState(rd.softState.role, rd.softState.leader)
    const survived = this.persistence.persistAndSend(rd, this.leading, {
      store,
      send: (msgs) => {
        if (msgs.length === 0) return
        hooks?.onMessagesSent?.(msgs)
        this.o.send(msgs)
      },
      installSnapshot: (snap) => this.installSnapshot(snap),
      onSaved: (entries) => hooks?.onPersisted?.(entries),
      afterSend: hooks?.afterSend == null ? undefined : () => hooks.afterSend?.(rd) === true
    })
    if (!survived) { this.stopped = true; this.cancelTick?.(); return }
    this.applyCommitted(rd.committedEntries)
    for (const rs of rd.readStates) {
      const w = this.reads.get(new TextDecoder().decode(rs.context))
      if (w != null) w.index = rs.index
    }
    this.node.advance(rd)
    this.releaseReads()
    const since = this.appliedIdx - this.lastCompactIndex
    if (since > 0 && this.o.compaction.due(since)) this.compact()
    hooks?.onReadyDone?.(rd)
  }

  private installSnapshot (snap: Snapshot): void {
    // A joiner's first snapshot may be the leader's index-0 one: only the membership, no state.
    if (snap.meta.index > 0 || snap.data.byteLength > 0) this.o.sm.restore(snap.data, snap.meta.index)
    this.appliedIdx = Math.max(this.appliedIdx, snap.meta.index)
    this.lastCompactIndex = Math.max(this.lastCompactIndex, snap.meta.index)
    this.o.hooks?.onSnapshotInstalled?.(snap)
    this.o.log?.info('installed snapshot', { index: snap.meta.index, term: snap.meta.term })
  }

  /** Committed entries in log order: runs of commands in one state-machine batch each (one
   * transaction instead of one per command), unless applyEachEntryAlone. */
  private applyCommitted (entries: readonly Entry[]): void {
    const perEntry = this.o.applyEachEntryAlone
    let run: Entry[] = []
    for (const e of entries) {
      if (e.index <= this.appliedIdx) continue // covered by a snapshot, or applied before a restart
      if (e.type === 'conf') {
        this.applyCommands(run)
        run = []
        this.applyConfEntry(e)
      } else {
        run.push(e)
        if (perEntry) { this.applyCommands(run); run = [] }
      }
    }
    this.applyCommands(run)
  }

  /** A committed conf entry: the RawNode already switched to the new configuration as it handed the
   * entry out (protocols/raft/rawnode.ts); the shell only counts it as applied. */
  private applyConfEntry (e: Entry): void {
    this.appliedIdx = e.index
    this.o.hooks?.onApplied?.(e, null, null)
  }

  private applyCommands (run: readonly Entry[]): void {
    if (run.length === 0) return
    const envs: Array<CommandEnvelope | null> = []
    const results = this.o.sm.applyBatch(run, envs)
    for (const [i, e] of run.entries()) {
      this.appliedIdx = e.index
      const env = envs[i] ?? null
      const result = results[i]
      this.o.hooks?.onApplied?.(e, env, env == null ? null : result)
      if (env?.key == null) continue
      const w = this.proposals.get(env.key)
      if (w == null) continue
      this.proposals.delete(env.key)
      w.cancel?.()
      w.done({ ok: true, index: e.index, env, data: e.data, result })
    }
  }

  private releaseReads (): void {
    if (this.reads.size === 0) return
    for (const [ctx, w] of this.reads) {
      if (w.index < 0 || w.index > this.appliedIdx) continue
      this.reads.delete(ctx)
      w.cancel?.()
      w.done(null, w.index)
    }
  }

  private noteSoftState (role: Role, leader: NodeId | null): void {
    const was = this.role
    const wasLeader = this.leader
    this.role = role
    this.leading = role === 'leader'
    this.leader = leader
    if (was !== role || wasLeader !== leader) this.o.hooks?.onRole?.(role, leader, this.node.status().term)
    if (!this.leading && this.proposals.size > 0) {
      // Our proposals may or may not commit under the new leader; callers retry with the same key (applied once).
      const err = new BlixardError('Unavailable', 'leadership changed before the command committed; retry with the same key')
      for (const [k, w] of this.proposals) { w.cancel?.(); this.proposals.delete(k); w.done({ ok: false, error: err }) }
    }
  }

  /** Snapshot the state machine at the applied index and drop the log behind it (but `keep`). */
  private compact (): void {
    const index = this.appliedIdx
    const keep = this.o.compaction.keep()
    // The snapshot must not get ahead of the commit index on disk.
    this.persistence.flushDeferred(this.o.store)
    this.o.store.compact(index, this.node.status().conf, this.o.sm.snapshot(), keep)
    this.lastCompactIndex = index
    this.o.hooks?.onCompacted?.(index, keep)
  }

  private failAll (err: BlixardError): void {
    for (const [k, w] of this.proposals) { w.cancel?.(); this.proposals.delete(k); w.done({ ok: false, error: err }) }
    for (const [k, w] of this.reads) { w.cancel?.(); this.reads.delete(k); w.done(err, -1) }
  }
}

/** A refusal of the Raft core as the error kinds clients know. */
export function raftToBlix (e: unknown): BlixardError {
  if (e instanceof BlixardError) return e
  if (e instanceof RaftError) {
    if (e.kind === 'NotLeader') return new BlixardError('NotLeader', e.message, e.leaderHint ?? undefined)
    if (e.kind === 'ConfChangeInProgress') return new BlixardError('Conflict', e.message)
    if (e.kind === 'InvalidConfChange') return new BlixardError('InvalidCommand', e.message)
    return new BlixardError('Unavailable', e.message)
  }
  throw e
}
