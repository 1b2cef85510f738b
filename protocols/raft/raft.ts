// The Raft state machine: one step() for every message, one tick() per role,
// and an outbox the RawNode turns into Ready. Pure: time is tick(), randomness
// is the injected PRNG, the disk is RaftStorage (read) plus Ready (write).
import type { AnyConfChange, ConfState, Entry, Message, MessageType, NodeId, ReadState, Role } from './types.ts'
import type { RaftStorage } from './storage.ts'
import { RaftError } from './types.ts'
import { RaftLog, entryBytes } from './log.ts'
import { ProgressTracker } from './tracker.ts'
import { Progress } from './progress.ts'
import { ReadOnly, decodeReadContext, encodeReadContext } from './read-only.ts'
import { applyConfChange, confChangeError, copyConf, decodeConfChange, encodeConfChange, isJoint } from './confchange.ts'
import { DEFAULT_MAX_INFLIGHT_MSGS, DEFAULT_MAX_SIZE_PER_MSG, TRANSFER_CONTEXT } from './limits.ts'
import { RELAY_RETRY_PERIODS, relayOrder } from './relay.ts'

export type RaftBug = 'vote-ignores-term' | 'commit-old-term' | 'stale-read-index' | 'relay-stuck'

export interface RaftConfig {
  id: NodeId
  storage: RaftStorage
  /** Followers campaign after a randomized timeout in [electionTick, 2*electionTick) ticks. */
  electionTick: number
  heartbeatTick: number
  /** Injected PRNG in [0,1). */
  random: () => number
  /** Last applied index at restart; committed entries after it are handed out again. */
  applied?: number
  /** Bytes of entry payload per MsgApp (at least one entry is always sent). */
  maxSizePerMsg?: number
  /** MsgApps in flight per follower while replicating. */
  maxInflightMsgs?: number
  /** Bytes of uncommitted entry payload a leader accepts before dropping proposals (0: no limit). */
  maxUncommittedBytes?: number
  preVote?: boolean
  checkQuorum?: boolean
  /** A commit index alone does not make a leader send empty MsgApps at once: they wait for the
   * shell's flushCommitNotices(), and a follower that gets new entries meanwhile learns the commit
   * index with them (every MsgApp carries it). Default false: etcd's behaviour. */
  lazyCommitNotice?: boolean
  /** Learners take their feed from a follower, not from the leader (protocols/raft/relay.ts).
   * Default false: the leader feeds every member, as etcd does. */
  relayLearners?: boolean
  /** Deliberately broken variants, for the simulator's checker tests. */
  bugs?: ReadonlySet<RaftBug>
}

const TRANSFER_BYTES = new TextEncoder().encode(TRANSFER_CONTEXT)
const EMPTY = new Uint8Array(0)

function isTransferContext (ctx: Uint8Array | undefined): boolean {
  return ctx !== undefined && ctx.byteLength === TRANSFER_BYTES.byteLength && ctx.every((b, i) => b === TRANSFER_BYTES[i])
}

function voteRespType (t: MessageType): MessageType {
  return t === 'MsgPreVote' ? 'MsgPreVoteResp' : 'MsgVoteResp'
}

export class Raft {
  readonly id: NodeId
  term: number
  vote: NodeId | null
  lead: NodeId | null = null
  role: Role = 'follower'
  readonly log: RaftLog
  readonly tracker: ProgressTracker
  /** The applied configuration (changes take effect when handed out in Ready). */
  conf: ConfState
  /** Conf entries at or below this index are already reflected in `conf` (storage's committed
   * ones at start; see RaftStorage.initialState). */
  private confBase: number
  pendingConfIndex = 0
  leadTransferee: NodeId | null = null
  private uncommittedBytes = 0
  private bcastPending = false
  msgs: Message[] = []
  readStates: ReadState[] = []
  private readonly readOnly = new ReadOnly()
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  private pendingReads: Array<{ from: NodeId, context: Uint8Array }> = []

  private electionElapsed = 0
  private heartbeatElapsed = 0
  private randomizedElectionTimeout = 0
  readonly electionTimeout: number
  readonly heartbeatTimeout: number
  private readonly random: () => number
  readonly preVote: boolean
  readonly checkQuorum: boolean
  private readonly maxSizePerMsg: number
  private readonly maxUncommittedBytes: number
  private readonly bugs: ReadonlySet<RaftBug>
  private readonly lazyCommitNotice: boolean

  // ---- relayed learners (protocols/raft/relay.ts) ----
  readonly relayLearners: boolean
  /** follower: the learners it feeds, each with the flow control a leader keeps for a follower */
  private readonly relaySubs = new Map<NodeId, Progress>()
  private relayHeartbeatElapsed = 0
  private relaySweepElapsed = 0
  /** commit index the subscribers were last fed up to */
  private relayFedCommit = 0
  /** leader: learners that said a follower feeds them (learner → that follower) */
  private readonly relayedBy = new Map<NodeId, NodeId>()
  /** learner: the voter it takes its feed from, ticks since that voter last sent anything */
  relayTarget: NodeId | null = null
  private relayElapsed = 0
  private relayReportElapsed = 0
  private relayPeriods = 0
  private relayChosenAt = 0
  /** the leader we last told who feeds us */
  private relayToldLead: NodeId | null = null
  /** the target was the leader when chosen (not a relay that has since become leader) */
  private relayChoseLeader = false

  constructor (cfg: RaftConfig) {
    if (!(cfg.electionTick > cfg.heartbeatTick) || !(cfg.heartbeatTick > 0)) {
      throw new RangeError('raft config: need electionTick > heartbeatTick > 0')
    }
    this.id = cfg.id
    this.electionTimeout = cfg.electionTick
    this.heartbeatTimeout = cfg.heartbeatTick
    this.random = cfg.random
    this.preVote = cfg.preVote ?? true
    this.checkQuorum = cfg.checkQuorum ?? true
    this.maxSizePerMsg = cfg.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG
    this.maxUncommittedBytes = cfg.maxUncommittedBytes ?? 0
    this.bugs = cfg.bugs ?? new Set()
    this.lazyCommitNotice = cfg.lazyCommitNotice ?? false
    this.relayLearners = cfg.relayLearners ?? false
    const { hardState, conf } = cfg.storage.initialState()
    this.log = new RaftLog(cfg.storage, hardState.commit, cfg.applied ?? 0)
    this.term = hardState.term
    this.vote = hardState.vote
    this.conf = copyConf(conf)
    this.confBase = Math.max(hardState.commit, cfg.storage.firstIndex() - 1)
    this.tracker = new ProgressTracker(cfg.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS)
    this.tracker.setConf(this.conf, this.log.lastIndex() + 1)
    this.becomeFollower(this.term, null)
  }

  // ---- roles ---------------------------------------------------------------

  private reset (term: number): void {
    if (this.term !== term) {
      this.term = term
      this.vote = null
    }
    this.lead = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout)
    this.leadTransferee = null
    this.tracker.resetVotes()
    this.tracker.resetProgress(this.log.lastIndex() + 1)
    this.pendingConfIndex = 0
    this.uncommittedBytes = 0
    this.readOnly.reset()
    this.pendingReads = []
  }

  becomeFollower (term: number, lead: NodeId | null): void {
    this.reset(term)
    this.lead = lead
    this.role = 'follower'
  }

  private becomePreCandidate (): void {
    // Pre-vote changes neither term nor vote: a partitioned node cannot inflate terms.
    this.relaySubs.clear()
    this.tracker.resetVotes()
    this.lead = null
    this.role = 'pre-candidate'
  }

  private becomeCandidate (): void {
    this.relaySubs.clear()
    this.reset(this.term + 1)
    this.vote = this.id
    this.role = 'candidate'
  }

  private becomeLeader (): void {
    this.reset(this.term)
    // A new leader feeds every learner until each says which follower feeds it.
    this.relaySubs.clear()
    this.relayedBy.clear()
    this.lead = this.id
    this.role = 'leader'
    for (const pr of this.tracker.progress.values()) pr.recentActive = false
    const self = this.tracker.progress.get(this.id)
    if (self !== undefined) {
      self.becomeReplicate()
      self.match = this.log.stableIndex()
      self.next = this.log.lastIndex() + 1
      self.recentActive = true
    }
    // Entries from older terms may hold an unapplied conf change: allow no new one before it.
    this.pendingConfIndex = this.log.lastIndex()
    // The no-op lets this term commit, which commits everything before it (§5.4.2, §8).
    this.appendEntries([{ term: 0, index: 0, type: 'normal', data: EMPTY }])
  }

  promotable (): boolean {
    return this.tracker.isVoter(this.id) && this.log.unstable.snapshot === null
  }

  // ---- ticks ---------------------------------------------------------------

  tick (): void {
    if (this.role === 'leader') this.tickHeartbeat()
    else {
      this.tickElection()
      if (this.relayLearners) this.tickRelay()
    }
  }

  private tickElection (): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  private tickHeartbeat (): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0
      if (this.checkQuorum) {
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, null)
          return
        }
        for (const [id, pr] of this.tracker.progress) pr.recentActive = id === this.id
      }
      // A transfer that did not finish within an election timeout is abandoned.
      this.leadTransferee = null
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0
      this.bcastHeartbeat(undefined)
    }
  }

  // ---- elections -----------------------------------------------------------

  /** Start an election (pre-vote first unless forced by a transfer). */
  hup (transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return
    if (this.hasUnappliedConfChange()) return
    if (this.preVote && !transfer) this.campaign('pre', false)
    else this.campaign('real', transfer)
  }

  private hasUnappliedConfChange (): boolean {
    if (this.log.committed <= this.log.applying) return false
    try {
      const lo = Math.max(this.log.applying + 1, this.log.firstIndex())
      return this.log.entries(lo, this.log.committed + 1).some(e => e.type === 'conf')
    } catch {
      return false
    }
  }

  private campaign (kind: 'pre' | 'real', transfer: boolean): void {
    let term: number
    let type: MessageType
    if (kind === 'pre') {
      this.becomePreCandidate()
      term = this.term + 1
      type = 'MsgPreVote'
    } else {
      this.becomeCandidate()
      term = this.term
      type = 'MsgVote'
    }
    this.tracker.recordVote(this.id, true)
    if (this.tracker.tally().result === 'won') {
      if (kind === 'pre') this.campaign('real', transfer)
      else this.becomeLeader()
      return
    }
    for (const id of this.tracker.allVoters()) {
      if (id === this.id) continue
      this.send({
        type, to: id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm(),
        ...(transfer ? { context: TRANSFER_BYTES } : {})
      })
    }
  }

  private poll (from: NodeId, granted: boolean): void {
    this.tracker.recordVote(from, granted)
    const { result } = this.tracker.tally()
    if (result === 'won') {
      if (this.role === 'pre-candidate') this.campaign('real', false)
      else {
        this.becomeLeader()
        this.bcastAppend()
      }
    } else if (result === 'lost') {
      this.becomeFollower(this.term, null)
    }
  }

  // ---- sending ---------------------------------------------------------------

  private send (m: Omit<Message, 'from'>): void {
    this.msgs.push({ ...m, from: this.id })
  }

  /** Send entries (or a snapshot) to `to` if its flow control allows. */
  private maybeSendAppend (to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to)
    if (pr === undefined || to === this.id || pr.isPaused() || this.isRelayed(to, pr)) return false
    const prevIndex = pr.next - 1
    const prevTerm = this.log.term(prevIndex)
    let ents: Entry[] | undefined
    if (prevTerm !== undefined) {
      try {
        ents = this.log.entries(pr.next, this.log.lastIndex() + 1, this.maxSizePerMsg)
      } catch (e) {
        if (!(e instanceof RaftError)) throw e
      }
    }
    if (prevTerm === undefined || ents === undefined) return this.sendSnapshot(to, pr)
    if (ents.length === 0 && !sendIfEmpty) return false
    this.send({ type: 'MsgApp', to, term: this.term, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed })
    const last = ents.length > 0 ? ents[ents.length - 1].index : prevIndex
    pr.sentEntries(ents.length, last, entryBytes(ents))
    pr.sentCommit = Math.max(pr.sentCommit, this.log.committed)
    return true
  }

  private sendSnapshot (to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false
    const snapshot = this.log.snapshot()
    this.send({ type: 'MsgSnap', to, term: this.term, snapshot })
    pr.becomeSnapshot(snapshot.meta.index)
    return true
  }

  /** Broadcast once, when the shell next asks for a Ready: many proposals and acknowledgements
   * then share one MsgApp per follower (batching). */
  private bcastSoon (): void {
    this.bcastPending = true
  }

  /** Called by RawNode before it looks for a Ready. */
  flushBroadcast (): void {
    if (this.relaySubs.size > 0 && this.log.committed !== this.relayFedCommit) this.relayFlush()
    if (!this.bcastPending) return
    this.bcastPending = false
    if (this.role === 'leader') this.bcastAppend()
  }

  /** New entries to everyone; an empty MsgApp only to those not yet told the commit index (with
   * lazyCommitNotice, not even to them: see flushCommitNotices). */
  private bcastAppend (): void {
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id || !this.maybeSendAppend(id, !this.lazyCommitNotice && pr.sentCommit < this.log.committed)) continue
      // A replicating follower gets as many MsgApps as its window allows (pipelining).
      if (pr.state === 'replicate') while (this.maybeSendAppend(id, false)) { /* until paused or sent all */ }
    }
  }

  /** Is a follower that could be sent to (not paused) still to be told the commit index? Only
   * with lazyCommitNotice: the shell then calls flushCommitNotices a moment later. */
  commitNoticesDue (): boolean {
    if (!this.lazyCommitNotice || this.role !== 'leader') return false
    for (const [id, pr] of this.tracker.progress) {
      if (id !== this.id && pr.sentCommit < this.log.committed && !pr.isPaused() && !this.isRelayed(id, pr)) return true
    }
    return false
  }

  /** An empty MsgApp, carrying the commit index, to every follower not yet told it. */
  flushCommitNotices (): void {
    if (this.role !== 'leader') return
    for (const [id, pr] of this.tracker.progress) {
      if (id !== this.id && pr.sentCommit < this.log.committed) this.maybeSendAppend(id, true)
    }
  }

  private bcastHeartbeat (context: Uint8Array | undefined): void {
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id || this.isRelayed(id, pr)) continue
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed)
      this.send({ type: 'MsgHeartbeat', to: id, term: this.term, commit, ...(context !== undefined ? { context } : {}) })
    }
  }

  private sendTimeoutNow (to: NodeId): void {
    this.send({ type: 'MsgTimeoutNow', to, term: this.term })
  }

  // ---- the leader's log ----------------------------------------------------

  /** Append entries at the leader (terms and indexes assigned here). Returns false when the
   * uncommitted-bytes limit drops them. */
  private appendEntries (ents: Entry[]): boolean {
    const bytes = entryBytes(ents)
    if (this.maxUncommittedBytes > 0 && this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.maxUncommittedBytes) return false
    let index = this.log.lastIndex()
    const stamped = ents.map(e => ({ term: this.term, index: ++index, type: e.type, data: e.data }))
    this.log.append(stamped)
    this.uncommittedBytes += bytes
    return true
  }

  /** The leader's own entries count for the quorum only once the shell has persisted them. */
  onStable (index: number): void {
    if (this.role !== 'leader') return
    const self = this.tracker.progress.get(this.id)
    if (self !== undefined && self.maybeUpdate(index)) this.maybeCommitAndBroadcast()
  }

  private maybeCommit (): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term, this.bugs.has('commit-old-term'))
  }

  private maybeCommitAndBroadcast (): void {
    if (this.maybeCommit()) {
      this.bcastSoon()
      this.releasePendingReads()
    }
  }

  private committedInCurrentTerm (): boolean {
    return this.log.term(this.log.committed) === this.term
  }

  reduceUncommitted (ents: readonly Entry[]): void {
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entryBytes(ents))
  }

  // ---- local requests (called by RawNode) ------------------------------------

  propose (data: Uint8Array): void {
    this.checkCanPropose()
    if (!this.appendEntries([{ term: 0, index: 0, type: 'normal', data }])) {
      throw new RaftError('ProposalDropped', 'too many uncommitted bytes')
    }
    this.bcastSoon()
  }

  proposeConfChange (cc: AnyConfChange): void {
    this.checkCanPropose()
    if (this.pendingConfIndex > this.log.applying) {
      throw new RaftError('ConfChangeInProgress', `conf change at ${this.pendingConfIndex} not yet applied`)
    }
    const err = confChangeError(this.conf, cc)
    if (err !== null) throw err
    if (!this.appendEntries([{ term: 0, index: 0, type: 'conf', data: encodeConfChange(cc) }])) {
      throw new RaftError('ProposalDropped', 'too many uncommitted bytes')
    }
    this.pendingConfIndex = this.log.lastIndex()
    this.bcastSoon()
  }

  private checkCanPropose (): void {
    if (this.role !== 'leader') throw new RaftError('NotLeader', `${this.id} is not the leader`, this.lead)
    if (!this.tracker.progress.has(this.id)) throw new RaftError('ProposalDropped', `${this.id} is no longer a member`)
    if (this.leadTransferee !== null) throw new RaftError('ProposalDropped', `leadership is moving to ${this.leadTransferee}`, this.leadTransferee)
  }

  readIndex (context: Uint8Array): void {
    if (this.role === 'leader') {
      this.leaderRead(this.id, context)
      return
    }
    if (this.lead === null) throw new RaftError('NotLeader', 'no leader known', null)
    this.send({ type: 'MsgReadIndex', to: this.lead, term: this.term, context })
  }

  private leaderRead (from: NodeId, context: Uint8Array): void {
    const stale = this.bugs.has('stale-read-index')
    if (!stale && !this.committedInCurrentTerm()) {
      // Our commit index may lag the true one until an entry of this term commits.
      this.pendingReads.push({ from, context })
      return
    }
    if (stale || this.tracker.isSingleVoter(this.id)) {
      this.answerRead(from, this.log.committed, context)
      return
    }
    const r = this.readOnly.add(this.log.committed, from, context, this.id)
    this.bcastHeartbeat(encodeReadContext(r.seq))
  }

  private answerRead (from: NodeId, index: number, context: Uint8Array): void {
    if (from === this.id) this.readStates.push({ index, context })
    else this.send({ type: 'MsgReadIndexResp', to: from, term: this.term, index, context })
  }

  private releasePendingReads (): void {
    if (this.pendingReads.length === 0 || !this.committedInCurrentTerm()) return
    const reads = this.pendingReads
    this.pendingReads = []
    for (const r of reads) this.leaderRead(r.from, r.context)
  }

  transferLeadership (to: NodeId): void {
    if (this.role === 'leader') {
      this.startTransfer(to)
      return
    }
    if (this.lead === null) throw new RaftError('NotLeader', 'no leader known', null)
    this.send({ type: 'MsgTransferLeader', to: this.lead, term: this.term, context: new TextEncoder().encode(to) })
  }

  private startTransfer (to: NodeId): void {
    const pr = this.tracker.progress.get(to)
    if (pr === undefined || pr.isLearner || to === this.id) return
    if (this.leadTransferee === to) return
    this.leadTransferee = to
    // The transfer gets one election timeout to finish.
    this.electionElapsed = 0
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to)
    else this.maybeSendAppend(to, true)
  }

  /**
   * The shell saw its connection to `id` close (a crashed process's kernel resets its sockets at
   * once). If `id` is our leader, stop honouring its lease and campaign soon instead of after a
   * whole election timeout. Only timing changes: the election still needs pre-votes and votes
   * from a quorum, and a follower still connected to a live leader keeps refusing them (its
   * lease holds), so a wrong report costs at most a failed pre-vote. Followers that lost the same
   * leader take turns rather than tie: the remaining voters in id order, the k-th campaigning in
   * ticks [1 + k*slot, (k+1)*slot], at a point drawn from the injected randomness.
   */
  leaderLost (id: NodeId, slotTicks: number): void {
    if (this.role !== 'follower' || this.lead !== id || !this.promotable()) return
    this.lead = null
    const slot = Math.max(1, Math.floor(slotTicks))
    const rank = Math.max(0, this.tracker.allVoters().filter((v) => v !== id).sort().indexOf(this.id))
    const wait = 1 + rank * slot + Math.floor(this.random() * slot)
    this.electionElapsed = Math.max(this.electionElapsed, this.randomizedElectionTimeout - wait)
  }

  reportUnreachable (id: NodeId): void {
    if (this.role !== 'leader') return
    const pr = this.tracker.progress.get(id)
    // The message was lost: probe again (a lost snapshot is retried from probe too).
    if (pr !== undefined && (pr.state === 'replicate' || pr.state === 'snapshot')) pr.becomeProbe()
  }

  reportSnapshot (id: NodeId, ok: boolean): void {
    if (this.role !== 'leader') return
    const pr = this.tracker.progress.get(id)
    if (pr === undefined || pr.state !== 'snapshot') return
    if (!ok) pr.pendingSnapshot = 0
    pr.becomeProbe()
    // Wait for the follower's answer (MsgAppResp or heartbeat) before probing again.
    pr.msgAppFlowPaused = true
  }

  // ---- applying committed entries -------------------------------------------

  /** Called as committed entries are handed out: conf changes take effect now. */
  applyCommitted (ents: readonly Entry[]): void {
    for (const e of ents) {
      if (e.type !== 'conf' || e.index <= this.confBase) continue
      let cc: AnyConfChange
      try {
        cc = decodeConfChange(e.data)
      } catch {
        continue
      }
      this.setConf(applyConfChange(this.conf, cc))
    }
    this.maybeAutoLeave()
  }

  /** A joint configuration entered with transition 'auto' is left by the leader itself, as soon
   * as no conf change is pending: it appends the empty conf change v2. A new leader does the same
   * once the entries of earlier terms are applied. */
  private maybeAutoLeave (): void {
    if (this.role !== 'leader' || !isJoint(this.conf) || this.conf.autoLeave !== true) return
    if (this.pendingConfIndex > this.log.applying) return
    if (!this.appendEntries([{ term: 0, index: 0, type: 'conf', data: encodeConfChange({ changes: [], transition: 'auto' }) }])) return
    this.pendingConfIndex = this.log.lastIndex()
    this.bcastSoon()
  }

  private setConf (conf: ConfState): void {
    this.conf = conf
    this.tracker.setConf(conf, this.log.lastIndex() + 1)
    for (const id of [...this.relayedBy.keys()]) if (this.tracker.progress.get(id)?.isLearner !== true) this.relayedBy.delete(id)
    if (this.role !== 'leader') return
    if (!this.tracker.isVoter(this.id)) {
      // A removed (or demoted) leader steps down; the others elect a new one.
      this.becomeFollower(this.term, null)
      return
    }
    if (this.leadTransferee !== null && !this.tracker.isVoter(this.leadTransferee)) this.leadTransferee = null
    // A smaller quorum may commit more; new members need their first append.
    this.maybeCommitAndBroadcast()
    this.bcastSoon()
  }

  /** A snapshot was installed: its configuration is the applied one now. */
  private restoreConf (conf: ConfState, index: number): void {
    this.conf = copyConf(conf)
    this.confBase = index
    this.tracker.setConf(this.conf, this.log.lastIndex() + 1)
  }

  // ---- step ------------------------------------------------------------------

  step (m: Message): void {
    const mterm = Number.isSafeInteger(m.term) && m.term >= 0 ? m.term : -1
    if (mterm < 0 || m.from === this.id) return
    switch (m.type) {
      // Local-only messages never come from the network.
      case 'MsgHup': case 'MsgBeat': case 'MsgProp': case 'MsgUnreachable': case 'MsgSnapStatus':
        return
      // Relayed learners: committed entries do not depend on terms (see stepRelay).
      case 'MsgRelayApp': case 'MsgRelaySnap': case 'MsgRelayAppResp': case 'MsgRelaySub':
        this.stepRelay(m, mterm)
        return
    }
    if (mterm > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const force = isTransferContext(m.context)
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTimeout
        // A follower that hears from a live leader ignores candidates: a rejoining node cannot depose it.
        if (!force && inLease) return
      }
      if (m.type === 'MsgPreVote') {
        // answering a pre-vote never changes our term
      } else if (m.type === 'MsgPreVoteResp' && m.reject !== true) {
        // a granted pre-vote carries the term we would campaign at; keep ours until we do
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(mterm, m.from)
      } else {
        this.becomeFollower(mterm, null)
      }
    } else if (mterm < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // Tell a stale leader about the newer term, so that it steps down (it will not hear a vote).
        this.send({ type: 'MsgAppResp', to: m.from, term: this.term })
      } else if (m.type === 'MsgPreVote') {
        this.send({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true })
      }
      return
    }

    if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
      this.handleVote(m, mterm)
      return
    }
    switch (this.role) {
      case 'leader': this.stepLeader(m); break
      case 'candidate': case 'pre-candidate': this.stepCandidate(m); break
      case 'follower': this.stepFollower(m); break
    }
  }

  private handleVote (m: Message, mterm: number): void {
    const broken = this.bugs.has('vote-ignores-term')
    const canVote = broken ||
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === 'MsgPreVote' && mterm > this.term)
    const upToDate = broken || this.log.isUpToDate(num(m.index), num(m.logTerm))
    if (canVote && upToDate) {
      this.send({ type: voteRespType(m.type), to: m.from, term: mterm })
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0
        this.vote = m.from
      }
    } else {
      this.send({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true })
    }
  }

  private stepLeader (m: Message): void {
    const pr = this.tracker.progress.get(m.from)
    switch (m.type) {
      case 'MsgReadIndex':
        this.leaderRead(m.from, m.context ?? EMPTY)
        return
      case 'MsgTransferLeader': {
        let to: NodeId
        try {
          to = new TextDecoder('utf-8', { fatal: true }).decode(m.context ?? EMPTY)
        } catch {
          return
        }
        this.startTransfer(to)
        return
      }
    }
    if (pr === undefined) return
    switch (m.type) {
      case 'MsgAppResp':
        pr.recentActive = true
        if (m.reject === true) this.handleAppReject(m, pr)
        else this.handleAppAccept(m, pr)
        return
      case 'MsgHeartbeatResp': {
        pr.recentActive = true
        pr.msgAppFlowPaused = false
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne()
        // A follower in probe gets an append even when caught up: its answer is what moves it back
        // to replicate, otherwise an idle leader would leave it probing forever.
        if (pr.match < this.log.lastIndex() || pr.state === 'probe') this.maybeSendAppend(m.from, true)
        const seq = decodeReadContext(m.context)
        if (seq === undefined) return
        const safe = this.readOnly.ack(seq, m.from, acks => {
          return this.tracker.hasQuorum(v => acks.has(v))
        })
        for (const r of safe) this.answerRead(r.from, r.index, r.context)
        return
      }
    }
  }

  private handleAppReject (m: Message, pr: Progress): void {
    const rejected = num(m.index)
    // Prev index 0 always matches; a rejection there means the follower knows no configuration
    // yet (a fresh joiner) and needs the snapshot that carries it.
    if (rejected === 0 && pr.next === 1 && pr.state === 'probe') {
      this.sendSnapshot(m.from, pr)
      return
    }
    let hint = num(m.rejectHint)
    if (num(m.logTerm) > 0) hint = this.log.findConflictByTerm(hint, num(m.logTerm))
    if (pr.maybeDecrTo(rejected, hint)) {
      if (pr.state === 'replicate') pr.becomeProbe()
      this.maybeSendAppend(m.from, true)
    }
  }

  private handleAppAccept (m: Message, pr: Progress): void {
    const index = num(m.index)
    if (index > this.log.lastIndex()) return
    const wasPaused = pr.isPaused()
    const updated = pr.maybeUpdate(index)
    // A snapshot answer may not move match (a joiner's snapshot at index 0) but still ends the wait.
    const snapshotDone = pr.state === 'snapshot' && index >= pr.pendingSnapshot && pr.match + 1 >= this.log.firstIndex()
    // A probing follower that accepts exactly its match (caught up, nothing new) has proven where
    // the logs agree: it goes back to replicate although match did not move.
    const probeConfirmed = pr.state === 'probe' && index === pr.match
    if (!updated && !snapshotDone && !probeConfirmed) return
    if (pr.state === 'probe') pr.becomeReplicate()
    else if (snapshotDone) {
      pr.becomeProbe()
      pr.becomeReplicate()
    } else if (pr.state === 'replicate') pr.inflights.freeLE(index)

    if (this.maybeCommit()) {
      this.bcastSoon()
      this.releasePendingReads()
    } else if (wasPaused && pr.sentCommit < this.log.committed) {
      // Nothing new to send, but the follower has not been told the latest commit index.
      this.maybeSendAppend(m.from, true)
    }
    // Keep the pipeline full.
    while (this.maybeSendAppend(m.from, false)) { /* send while the window allows */ }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from)
  }

  private stepCandidate (m: Message): void {
    const respType: MessageType = this.role === 'pre-candidate' ? 'MsgPreVoteResp' : 'MsgVoteResp'
    switch (m.type) {
      case 'MsgApp':
        this.becomeFollower(m.term, m.from)
        this.handleAppend(m)
        return
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from)
        this.handleHeartbeat(m)
        return
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from)
        this.handleSnapshot(m)
        return
      case 'MsgPreVoteResp': case 'MsgVoteResp':
        if (m.type === respType) this.poll(m.from, m.reject !== true)
    }
  }

  private stepFollower (m: Message): void {
    if (m.from === this.relayTarget && (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap')) this.relayElapsed = 0
    switch (m.type) {
      case 'MsgApp':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleAppend(m)
        return
      case 'MsgHeartbeat':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleHeartbeat(m)
        return
      case 'MsgSnap':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleSnapshot(m)
        return
      case 'MsgTimeoutNow':
        // Our leader asks us to take over now: skip pre-vote and the others' leases.
        if (m.from === this.lead) this.hup(true)
        return
      case 'MsgReadIndexResp':
        if (m.from === this.lead && m.context !== undefined) this.readStates.push({ index: num(m.index), context: m.context })
    }
  }

  private handleAppend (m: Message, resp: MessageType = 'MsgAppResp'): void {
    const prev = num(m.index)
    const ents = m.entries ?? []
    if (!wellFormedEntries(ents, prev, m.term)) return
    if (this.conf.voters.length === 0) {
      // A joiner that knows no configuration yet: ask for the snapshot carrying it.
      this.send({ type: resp, to: m.from, term: this.term, index: prev, reject: true, rejectHint: 0, logTerm: 0 })
      return
    }
    if (prev < this.log.committed) {
      this.send({ type: resp, to: m.from, term: this.term, index: this.log.committed })
      return
    }
    const lastNew = this.log.maybeAppend(prev, num(m.logTerm), num(m.commit), ents)
    if (lastNew !== undefined) {
      this.send({ type: resp, to: m.from, term: this.term, index: lastNew })
      return
    }
    // Fast backtracking: point the leader at the last index whose term is <= the term it probed.
    let hintIndex = Math.min(prev, this.log.lastIndex())
    hintIndex = this.log.findConflictByTerm(hintIndex, num(m.logTerm))
    const hintTerm = this.log.term(hintIndex) ?? 0
    this.send({ type: resp, to: m.from, term: this.term, index: prev, reject: true, rejectHint: hintIndex, logTerm: hintTerm })
  }

  private handleHeartbeat (m: Message): void {
    this.log.commitTo(Math.min(num(m.commit), this.log.lastIndex()))
    this.send({ type: 'MsgHeartbeatResp', to: m.from, term: this.term, ...(m.context !== undefined ? { context: m.context } : {}) })
  }

  private handleSnapshot (m: Message, resp: MessageType = 'MsgAppResp'): void {
    const s = m.snapshot
    if (s === undefined || !validSnapshot(s.meta)) return
    const idx = s.meta.index
    const joiner = this.conf.voters.length === 0 && s.meta.conf.voters.length > 0
    if (idx > this.log.committed || (joiner && idx >= this.log.committed)) {
      if (!joiner && this.log.matchTerm(idx, s.meta.term)) {
        // We already hold the entries: just learn that they are committed.
        this.log.commitTo(idx)
      } else {
        this.log.restore(s)
        this.restoreConf(s.meta.conf, idx)
      }
    }
    // Only the snapshot's prefix is known to match the leader's log.
    this.send({ type: resp, to: m.from, term: this.term, index: this.log.committed })
  }

  // ---- relayed learners (protocols/raft/relay.ts) ------------------------------

  /** Leader: a learner that a follower feeds gets nothing from us. */
  private isRelayed (id: NodeId, pr: Progress): boolean {
    return pr.isLearner && this.relayedBy.has(id)
  }

  /** Follower: may feed learners now (a voter that hears from its leader). */
  private relayLive (): boolean {
    return this.role === 'follower' && this.lead !== null && this.electionElapsed < this.electionTimeout && this.tracker.isVoter(this.id)
  }

  /** A relay's heartbeat period: three to an election timeout are enough for its learners to tell
   * a live relay from a dead one (a leader's every heartbeatTick also times elections and reads). */
  private relayBeatTicks (): number {
    return Math.max(this.heartbeatTimeout, Math.floor(this.electionTimeout / 3))
  }

  private isLearnerSelf (): boolean {
    return this.tracker.progress.get(this.id)?.isLearner === true
  }

  private stepRelay (m: Message, mterm: number): void {
    if (!this.relayLearners) return
    switch (m.type) {
      case 'MsgRelayApp': case 'MsgRelaySnap': this.takeRelayFeed(m, mterm); return
      case 'MsgRelayAppResp': this.relayAnswer(m); return
      case 'MsgRelaySub': this.relaySubscribe(m)
    }
  }

  /** Learner: committed entries (or a snapshot) from the voter we subscribed to. */
  private takeRelayFeed (m: Message, mterm: number): void {
    if (!this.isLearnerSelf() || m.from !== this.relayTarget || !this.tracker.isVoter(m.from)) return
    const lead = m.lead !== undefined && this.tracker.isVoter(m.lead) ? m.lead : null
    if (mterm > this.term) this.becomeFollower(mterm, lead)
    else if (mterm === this.term && lead !== null) this.lead = lead
    this.relayElapsed = 0
    this.electionElapsed = 0
    if (m.type === 'MsgRelayApp') this.handleAppend(m, 'MsgRelayAppResp')
    else this.handleSnapshot(m, 'MsgRelayAppResp')
  }

  /** Leader: a learner says who feeds it and how far it is. Follower: a learner subscribes. */
  private relaySubscribe (m: Message): void {
    const lpr = this.tracker.progress.get(m.from)
    if (lpr === undefined || !lpr.isLearner) return
    if (this.role === 'leader') {
      lpr.recentActive = true
      const c = num(m.commit)
      if (c <= this.log.lastIndex() && c > lpr.match) lpr.maybeUpdate(c)
      const via = m.lead
      if (via === undefined || via === this.id || !this.tracker.isVoter(via)) {
        if (this.relayedBy.delete(m.from)) {
          lpr.becomeProbe()
          this.maybeSendAppend(m.from, true)
        }
      } else if (this.relayedBy.get(m.from) !== via) {
        this.relayedBy.set(m.from, via)
        lpr.becomeProbe()
      }
      return
    }
    if (m.lead !== this.id || !this.relayLive()) return
    const known = this.relaySubs.get(m.from)
    if (known !== undefined) {
      known.recentActive = true
      return
    }
    // The learner's commit index is committed, so our logs agree up to it: start there.
    const from = Math.min(num(m.commit), this.log.committed)
    const pr = new Progress(from + 1, this.tracker.maxInflight, true)
    pr.match = from
    pr.recentActive = true
    this.relaySubs.set(m.from, pr)
    this.relaySend(m.from, pr, true)
  }

  /** Relay: a subscriber's answer, handled as a leader handles MsgAppResp. */
  private relayAnswer (m: Message): void {
    const pr = this.relaySubs.get(m.from)
    if (pr === undefined) return
    pr.recentActive = true
    if (m.reject === true) {
      let hint = num(m.rejectHint)
      if (num(m.logTerm) > 0) hint = this.log.findConflictByTerm(hint, num(m.logTerm))
      if (pr.maybeDecrTo(num(m.index), hint)) {
        if (pr.state === 'replicate') pr.becomeProbe()
        this.relaySend(m.from, pr, true)
      }
      return
    }
    const index = num(m.index)
    pr.maybeUpdate(index)
    if (pr.state === 'probe') pr.becomeReplicate()
    else if (pr.state === 'snapshot') {
      if (index < pr.pendingSnapshot) return
      pr.becomeProbe()
      pr.becomeReplicate()
    } else pr.inflights.freeLE(index)
    while (this.relaySend(m.from, pr, false)) { /* while the window allows */ }
  }

  /** Relay: committed entries after the subscriber's `next` (a snapshot when they are compacted). */
  private relaySend (to: NodeId, pr: Progress, sendIfEmpty: boolean): boolean {
    if (pr.isPaused()) return false
    const hi = this.log.committed
    const prevIndex = Math.min(pr.next - 1, hi)
    const prevTerm = this.log.term(prevIndex)
    let ents: Entry[] | undefined
    if (prevTerm !== undefined) {
      if (prevIndex >= hi) ents = []
      else {
        try {
          ents = this.log.entries(prevIndex + 1, hi + 1, this.maxSizePerMsg)
        } catch (e) {
          if (!(e instanceof RaftError)) throw e
        }
      }
    }
    const lead = this.lead !== null ? { lead: this.lead } : {}
    if (prevTerm === undefined || ents === undefined) {
      const snapshot = this.log.snapshot()
      if (snapshot.meta.index === 0) return false
      this.send({ type: 'MsgRelaySnap', to, term: this.term, snapshot, ...lead })
      pr.becomeSnapshot(snapshot.meta.index)
      return true
    }
    if (ents.length === 0 && !sendIfEmpty) return false
    this.send({ type: 'MsgRelayApp', to, term: this.term, index: prevIndex, logTerm: prevTerm, entries: ents, commit: hi, ...lead })
    pr.sentEntries(ents.length, ents.length > 0 ? ents[ents.length - 1].index : prevIndex, entryBytes(ents))
    return true
  }

  /** Relay: the commit index moved; pass the newly committed entries on. */
  private relayFlush (): void {
    this.relayFedCommit = this.log.committed
    if (!this.relayLive()) return
    for (const [id, pr] of this.relaySubs) {
      if (!this.relaySend(id, pr, false)) continue
      if (pr.state === 'replicate') while (this.relaySend(id, pr, false)) { /* pipelining */ }
    }
  }

  private tickRelay (): void {
    if (this.isLearnerSelf()) {
      this.tickLearnerFeed()
      return
    }
    if (this.relaySubs.size === 0) return
    if (!this.relayLive()) {
      // Cut off from our leader: our subscribers should find another relay.
      this.relaySubs.clear()
      return
    }
    if (++this.relaySweepElapsed >= this.electionTimeout) {
      this.relaySweepElapsed = 0
      for (const [id, pr] of this.relaySubs) {
        if (!pr.recentActive || this.tracker.progress.get(id)?.isLearner !== true) {
          this.relaySubs.delete(id)
          continue
        }
        pr.recentActive = false
        if (pr.state === 'snapshot') pr.becomeProbe()
      }
    }
    if (++this.relayHeartbeatElapsed < this.relayBeatTicks()) return
    this.relayHeartbeatElapsed = 0
    // Heartbeats: what tells a subscriber we are alive, and what unsticks lost messages.
    for (const [id, pr] of this.relaySubs) {
      if (pr.state === 'probe') pr.msgAppFlowPaused = false
      else if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne()
      this.relaySend(id, pr, true)
    }
  }

  /** Learner: pick the voter that feeds us, renew the subscription, tell the leader. */
  private tickLearnerFeed (): void {
    this.relayElapsed++
    if (++this.relayReportElapsed < this.heartbeatTimeout) return
    this.relayReportElapsed = 0
    this.relayPeriods++
    const lead = this.lead !== null && this.tracker.isVoter(this.lead) ? this.lead : null
    const followers = relayOrder(this.id, this.tracker.allVoters().filter((v) => v !== lead && v !== this.id))
    const cands = lead !== null ? [...followers, lead] : followers
    if (cands.length === 0) return
    const renewEvery = Math.max(1, Math.ceil(this.electionTimeout / this.heartbeatTimeout))
    let target = this.relayTarget
    if (target === null || !cands.includes(target)) target = cands[0]
    else if (this.relayElapsed >= this.electionTimeout && !this.bugs.has('relay-stuck')) target = cands[(cands.indexOf(target) + 1) % cands.length]
    else if (target === lead && followers.length > 0 && (!this.relayChoseLeader || this.relayPeriods - this.relayChosenAt >= RELAY_RETRY_PERIODS * renewEvery)) {
      // our relay became leader (it feeds us itself now), or the leader has fed us for a while
      target = followers[0]
    }
    const changed = target !== this.relayTarget
    if (changed) {
      this.relayTarget = target
      this.relayElapsed = 0
      this.relayChosenAt = this.relayPeriods
      this.relayChoseLeader = target === lead
    }
    const sub = { type: 'MsgRelaySub' as const, term: this.term, lead: target, index: this.log.lastIndex(), commit: this.log.committed }
    // renewed every election timeout, and every period while the relay is silent (it may have
    // dropped us while it had no leader, and take us back now)
    const silent = this.relayElapsed > this.relayBeatTicks()
    const renew = changed || ((silent || (this.relayPeriods - this.relayChosenAt) % renewEvery === 0) && !this.bugs.has('relay-stuck'))
    if (renew) this.send({ ...sub, to: target })
    // The leader hears who feeds us once an election timeout (what autopilot's health and lag
    // need), and at once when that changes or the leader does.
    const periodic = (this.relayPeriods - this.relayChosenAt) % renewEvery === 0
    if (lead !== null && lead !== target && (changed || periodic || lead !== this.relayToldLead)) {
      this.send({ ...sub, to: lead })
      this.relayToldLead = lead
    }
  }

  /** Advance applied through Ready: entries persisted up to (index, term); snapshot installed. */
  stableTo (index: number, term: number): void {
    this.log.stableTo(index, term)
    if (this.log.term(index) === term) this.onStable(index)
  }
}

function num (x: number | undefined): number {
  return x !== undefined && Number.isSafeInteger(x) && x >= 0 ? x : 0
}

/** Entries of a MsgApp must follow prev contiguously with terms that never go backwards or past
 * the message's term; anything else comes from a broken peer and is ignored. */
function wellFormedEntries (ents: readonly Entry[], prev: number, term: number): boolean {
  let t = 0
  for (let k = 0; k < ents.length; k++) {
    const e = ents[k]
    if (e.index !== prev + 1 + k || !Number.isSafeInteger(e.term) || e.term < t || e.term > term) return false
    if (e.type !== 'normal' && e.type !== 'conf') return false
    t = e.term
  }
  return true
}

function validSnapshot (meta: { index: number, term: number, conf: ConfState }): boolean {
  return Number.isSafeInteger(meta.index) && meta.index >= 0 && Number.isSafeInteger(meta.term) && meta.term >= 0 &&
    Array.isArray(meta.conf?.voters) && Array.isArray(meta.conf?.learners)
}
