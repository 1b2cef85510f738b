// The persist-and-send step of the Raft Ready loop, with its environment (log store, transport
// send, snapshot install) as parameters: no LMDB, libp2p, timers or clock here, so the simulator
// and the benchmark run the same step the daemon ships (node/core/raft-node.ts drives it for all three).
//
// Two things keep fsyncs off the write path, as etcd's shell does:
// - a leader sends its messages before writing its own entries (Raft thesis 10.2.1): the core
//   counts the leader's entries toward a quorum only after advance(), and nothing a leader sends
//   acknowledges its own disk. Not when term or vote changed: votes must be durable first;
// - a HardState whose only change is the commit index is not written at once (every LogStore
//   save is an fsync) but with the next save: Raft does not need commit to be durable, and after
//   a crash the core re-learns it from the leader and hands the entries out again.
import type { Entry, HardState, Message, NodeId, Ready, Snapshot } from '../../protocols/raft/types.ts'
import type { LogStore } from '../../protocols/raft/storage.ts'

/** Planted bugs of the loop itself, for the simulator to catch (never set outside sim/):
 * 'ack-before-sync' sends a follower's acknowledgements before the sync that makes them true;
 * 'vote-before-persist' sends first whenever a non-leader's Ready has no new entries, forgetting
 * that a vote (a HardState change) is an acknowledgement too. */
export type LoopBug = 'ack-before-sync' | 'vote-before-persist'
export const LOOP_BUGS: readonly LoopBug[] = ['ack-before-sync', 'vote-before-persist']

export interface ReadyIo {
  store: LogStore
  /** hands messages to the transport; must not block */
  send: (msgs: Message[]) => void
  /** restores the state machine from a snapshot the store has just saved */
  installSnapshot: (snap: Snapshot) => void
  /** told the entries just saved (not necessarily synced yet) */
  onSaved?: (entries: readonly Entry[]) => void
  /** asked right after the messages went out; true: the process died right there (the
   * simulator's power loss between a send and the next step), so nothing more may happen */
  afterSend?: () => boolean
}

/** What has reached disk, and the commit-only HardState still waiting for the next save. */
export class ReadyPersistence {
  private durable: { term: number, vote: NodeId | null }
  private deferredHard: HardState | null = null

  /** planted bugs, as plain flags (the model checker copies and fingerprints this object) */
  private readonly voteBeforePersist: boolean
  private readonly ackBeforeSync: boolean

  constructor (initial: HardState, bugs: ReadonlySet<LoopBug> = new Set()) {
    this.durable = { term: initial.term, vote: initial.vote }
    this.voteBeforePersist = bugs.has('vote-before-persist')
    this.ackBeforeSync = bugs.has('ack-before-sync')
  }

  /** May this Ready's messages leave before it is persisted? */
  private sendsFirst (rd: Ready, leading: boolean): boolean {
    if (rd.snapshot != null) return false
    const hs = rd.hardState
    const termOrVoteChanged = hs != null && (hs.term !== this.durable.term || hs.vote !== this.durable.vote)
    if (leading) return !termOrVoteChanged
    return this.voteBeforePersist && rd.entries.length === 0
  }

  /** Persists a Ready (entries, hard state, snapshot), syncs when it must, and sends its
   *  messages: before persisting when `leading` and nothing in it needs to be durable first.
   *  False when io.afterSend said the process died right after sending (stop handling it). */
  persistAndSend (rd: Ready, leading: boolean, io: ReadyIo): boolean {
    const { store } = io
    const hs = rd.hardState
    const sendFirst = this.sendsFirst(rd, leading)
    if (sendFirst) {
      io.send(rd.messages)
      if (io.afterSend?.() === true) return false
    }
    if (rd.snapshot != null) {
      store.save({ snapshot: rd.snapshot })
      io.installSnapshot(rd.snapshot)
    }
    if (hs != null && rd.entries.length === 0 && rd.snapshot == null && !rd.mustSync) {
      this.deferredHard = hs
    } else if (hs != null || rd.entries.length > 0) {
      const hardState = hs ?? this.deferredHard ?? undefined
      store.save({ hardState, entries: rd.entries })
      this.deferredHard = null
      if (hardState != null) this.durable = { term: hardState.term, vote: hardState.vote }
      if (rd.entries.length > 0) io.onSaved?.(rd.entries)
    }
    const mustSync = rd.mustSync || rd.snapshot != null
    const syncLate = this.ackBeforeSync
    if (mustSync && !syncLate) store.sync()
    // Only now, with everything durable, may messages that acknowledge it leave.
    if (!sendFirst) {
      io.send(rd.messages)
      if (io.afterSend?.() === true) return false
    }
    if (mustSync && syncLate) store.sync()
    return true
  }

  /** Writes a deferred commit-only HardState (before a compaction and at stop). */
  flushDeferred (store: LogStore): void {
    if (this.deferredHard == null) return
    store.save({ hardState: this.deferredHard })
    store.sync()
    this.deferredHard = null
  }
}
