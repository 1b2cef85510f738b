// The persist-and-send step of the Raft Ready loop, with its environment (log store, transport
// send, snapshot install) as parameters: no LMDB, libp2p, timers or clock here, so the simulator
// and the benchmark can run the same step the daemon ships (issue 13, first item; today only
// node/raft-driver.ts uses it — sim/replica.ts and bench/raft-core.ts still have their own loops).
//
// Two things keep fsyncs off the write path, as etcd's shell does:
// - a leader sends its messages before writing its own entries (Raft thesis 10.2.1): the core
//   counts the leader's entries toward a quorum only after advance(), and nothing a leader sends
//   acknowledges its own disk. Not when term or vote changed: votes must be durable first;
// - a HardState whose only change is the commit index is not written at once (every LogStore
//   save is an fsync) but with the next save: Raft does not need commit to be durable, and after
//   a crash the core re-learns it from the leader and hands the entries out again.
import type { HardState, Message, NodeId, Ready, Snapshot } from '../../protocols/raft/types.ts'
import type { LogStore } from '../../protocols/raft/storage.ts'

export interface ReadyIo {
  store: LogStore
  /** hands messages to the transport; must not block */
  send: (msgs: Message[]) => void
  /** restores the state machine from a snapshot the store has just saved */
  installSnapshot: (snap: Snapshot) => void
}

/** What has reached disk, and the commit-only HardState still waiting for the next save. */
export class ReadyPersistence {
  private durable: { term: number, vote: NodeId | null }
  private deferredHard: HardState | null = null

  constructor (initial: HardState) {
    this.durable = { term: initial.term, vote: initial.vote }
  }

  /** Persists a Ready (entries, hard state, snapshot), syncs when it must, and sends its
   *  messages: before persisting when `leading` and nothing in it needs to be durable first. */
  persistAndSend (rd: Ready, leading: boolean, io: ReadyIo): void {
    const { store } = io
    const hs = rd.hardState
    const termOrVoteChanged = hs != null && (hs.term !== this.durable.term || hs.vote !== this.durable.vote)
    const sendFirst = leading && rd.snapshot == null && !termOrVoteChanged
    if (sendFirst) io.send(rd.messages)
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
    }
    if (rd.mustSync || rd.snapshot != null) store.sync()
    // Only now, with everything durable, may messages that acknowledge it leave.
    if (!sendFirst) io.send(rd.messages)
  }

  /** Writes a deferred commit-only HardState (before a compaction and at stop). */
  flushDeferred (store: LogStore): void {
    if (this.deferredHard == null) return
    store.save({ hardState: this.deferredHard })
    store.sync()
    this.deferredHard = null
  }
}
