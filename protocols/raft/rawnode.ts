// The seam between the pure core and its shell (node/core/raft-node.ts, which the daemon, sim/
// and bench/ all run): feed it ticks and messages, take a Ready, do what it says, then advance().
//
// Contract for shells, beyond the order documented on Ready:
// - call advance(rd) for every ready() before the next ready(); the leader counts its own
//   entries toward a quorum only once advance() says they are persisted;
// - a MsgSnap that could not be delivered must be reported: reportSnapshot(peer, false)
//   (or reportUnreachable), else that follower waits in the snapshot state;
// - conf changes take effect inside ready() as their entries are handed out: status().conf is
//   the applied configuration; there is no applyConfChange to call;
// - storage.initialState().conf must reflect the committed conf entries (snapshot conf plus the
//   log's conf entries up to hardState.commit) and no others; entries above that commit index
//   take effect when they are committed and handed out again;
// - a Ready that hands out a committed conf entry has mustSync set: the commit index that
//   covers it must be durable before the change is acted on, or a restart would read an older
//   configuration than the one this node already voted and counted quorums with;
// - transferLeadership() on a follower is forwarded to the leader as MsgTransferLeader whose
//   context is the target's id in UTF-8; it throws NotLeader when no leader is known.
import type { AnyConfChange, ConfState, HardState, Message, NodeId, Ready, Role, SoftState } from './types.ts'
import type { ProgressState } from './progress.ts'
import { RaftError } from './types.ts'
import { Raft } from './raft.ts'
import type { RaftConfig } from './raft.ts'
import { MAX_COMMITTED_BYTES_PER_READY } from './limits.ts'

export type { RaftBug, RaftConfig } from './raft.ts'
export { encodeConfChange, decodeConfChange, isConfChangeV2, isJoint, confChangeText } from './confchange.ts'
import { copyConf } from './confchange.ts'

export interface RaftStatus {
  id: NodeId
  term: number
  vote: NodeId | null
  commit: number
  applied: number
  lead: NodeId | null
  role: Role
  /** The applied configuration. */
  conf: ConfState
  pendingConfIndex: number
  /** Leader only. */
  progress?: Record<NodeId, { match: number, next: number, state: ProgressState }>
}

function sameHard (a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

export class RawNode {
  private readonly raft: Raft
  private confOf: ConfState | null = null
  private confCopy: ConfState = { voters: [], learners: [] }
  private prevSoft: SoftState
  private prevHard: HardState

  constructor (cfg: RaftConfig) {
    this.raft = new Raft(cfg)
    this.prevSoft = this.softState()
    this.prevHard = this.hardState()
  }

  tick (): void {
    this.raft.tick()
  }

  /** A message from the network. Messages from old terms, unknown peers or with out-of-range
   * indexes are ignored or answered with a rejection, never thrown. */
  step (m: Message): void {
    try {
      this.raft.step(m)
    } catch (e) {
      // A storage read refused (compacted/unavailable) for a peer's odd request: drop the message.
      if (!(e instanceof RaftError)) throw e
    }
  }

  campaign (): void {
    this.raft.hup(false)
  }

  /** Every connection to peer `id` closed: if it is our leader, campaign within a few ticks, the
   * remaining voters taking turns of `slotTicks` (see Raft.leaderLost). Safe for any peer at any time. */
  leaderLost (id: NodeId, slotTicks = 3): void {
    this.raft.leaderLost(id, slotTicks)
  }

  propose (data: Uint8Array): void {
    this.raft.propose(data)
  }

  /** A one-step ConfChange, or a ConfChangeV2 (joint consensus; an empty one leaves joint). */
  proposeConfChange (cc: AnyConfChange): void {
    this.raft.proposeConfChange(cc)
  }

  readIndex (context: Uint8Array): void {
    this.raft.readIndex(context)
  }

  transferLeadership (to: NodeId): void {
    this.raft.transferLeadership(to)
  }

  reportUnreachable (id: NodeId): void {
    this.raft.reportUnreachable(id)
  }

  reportSnapshot (id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok)
  }

  /** See RaftConfig.lazyCommitNotice. */
  commitNoticesDue (): boolean { return this.raft.commitNoticesDue() }
  flushCommitNotices (): void { this.raft.flushCommitNotices() }

  hasReady (): boolean {
    const r = this.raft
    r.flushBroadcast()
    const soft = this.softState()
    return soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role ||
      !sameHard(this.hardState(), this.prevHard) ||
      r.log.unstable.nextSnapshot() !== null ||
      r.log.unstable.hasNextEntries() ||
      r.msgs.length > 0 || r.readStates.length > 0 ||
      r.log.hasNextCommittedEntries()
  }

  ready (): Ready {
    const r = this.raft
    r.flushBroadcast()
    // Conf changes take effect as their entries are handed out; that may change role and messages.
    const committedEntries = r.log.nextCommittedEntries(MAX_COMMITTED_BYTES_PER_READY)
    r.applyCommitted(committedEntries)
    const soft = this.softState()
    const hard = this.hardState()
    const softChanged = soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role
    const hardChanged = !sameHard(hard, this.prevHard)
    const entries = r.log.unstable.nextEntries()
    const snapshot = r.log.unstable.nextSnapshot()
    r.log.unstable.acceptInProgress()
    const rd: Ready = {
      softState: softChanged ? soft : null,
      hardState: hardChanged ? hard : null,
      entries,
      snapshot,
      committedEntries,
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: entries.length > 0 || snapshot !== null || hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote ||
        committedEntries.some(e => e.type === 'conf')
    }
    r.msgs = []
    r.readStates = []
    this.prevSoft = soft
    this.prevHard = hard
    return rd
  }

  /** The shell has done everything `rd` asked. */
  advance (rd: Ready): void {
    const r = this.raft
    if (rd.snapshot !== null) {
      r.log.stableSnapTo(rd.snapshot.meta.index)
      r.log.appliedTo(rd.snapshot.meta.index)
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]
      r.stableTo(last.index, last.term)
    }
    if (rd.committedEntries.length > 0) {
      r.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index)
      r.reduceUncommitted(rd.committedEntries)
    }
  }

  /** Index of the last entry in the log, unstable entries included. */
  lastIndex (): number { return this.raft.log.lastIndex() }

  // What the shell asks on every RPC, proposal and received message, without status()'s copies
  // (a leader's status() builds its progress table: measurable garbage at thousands of writes/s).
  term (): number { return this.raft.term }
  lead (): NodeId | null { return this.raft.lead }
  role (): Role { return this.raft.role }
  /** The configuration: one copy per configuration (the core replaces its conf object on every
   * change and never edits one), shared by every caller until the next change; callers must not
   * modify it. */
  conf (): Readonly<ConfState> {
    if (this.confOf !== this.raft.conf) {
      this.confOf = this.raft.conf
      this.confCopy = copyConf(this.raft.conf)
    }
    return this.confCopy
  }

  status (): RaftStatus {
    const r = this.raft
    const s: RaftStatus = {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lead: r.lead,
      role: r.role,
      conf: copyConf(r.conf),
      pendingConfIndex: r.pendingConfIndex
    }
    if (r.role === 'leader') {
      s.progress = {}
      for (const [id, pr] of r.tracker.progress) s.progress[id] = { match: pr.match, next: pr.next, state: pr.state }
    }
    return s
  }

  private softState (): SoftState {
    return { leader: this.raft.lead, role: this.raft.role }
  }

  private hardState (): HardState {
    return { term: this.raft.term, vote: this.raft.vote, commit: this.raft.log.committed }
  }
}
