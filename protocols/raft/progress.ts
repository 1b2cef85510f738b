// What a leader knows about one follower's log, and the flow-control state
// that decides whether to probe, stream (pipelined), or wait for a snapshot.
import { Inflights } from './inflights.ts'

export type ProgressState = 'probe' | 'replicate' | 'snapshot'

export class Progress {
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** In snapshot state: the index of the snapshot sent. */
  pendingSnapshot = 0
  /** Heard from since the last check-quorum round. */
  recentActive = false
  /** In probe state: one MsgApp is out; wait for its answer (or a heartbeat answer). */
  msgAppFlowPaused = false
  /** Highest commit index sent to this follower in a MsgApp (whether it needs an update). */
  sentCommit = 0
  isLearner: boolean
  readonly inflights: Inflights

  constructor (next: number, maxInflight: number, isLearner: boolean) {
    this.next = next
    this.isLearner = isLearner
    this.inflights = new Inflights(maxInflight)
  }

  private resetState (state: ProgressState): void {
    this.msgAppFlowPaused = false
    this.pendingSnapshot = 0
    this.state = state
    this.inflights.reset()
  }

  becomeProbe (): void {
    const pending = this.pendingSnapshot
    const fromSnapshot = this.state === 'snapshot'
    this.resetState('probe')
    this.next = fromSnapshot ? Math.max(this.match + 1, pending + 1) : this.match + 1
  }

  becomeReplicate (): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  becomeSnapshot (snapIndex: number): void {
    this.resetState('snapshot')
    this.pendingSnapshot = snapIndex
  }

  /** An accepting MsgAppResp for index n. Returns whether match moved. */
  maybeUpdate (n: number): boolean {
    let updated = false
    if (this.match < n) {
      this.match = n
      updated = true
      this.msgAppFlowPaused = false
    }
    this.next = Math.max(this.next, n + 1)
    return updated
  }

  /** A MsgApp with `count` entries ending at lastIndex went out. */
  sentEntries (count: number, lastIndex: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1
        this.inflights.add(lastIndex, bytes)
      }
    } else if (this.state === 'probe') {
      this.msgAppFlowPaused = true
    }
  }

  /** A rejection of the MsgApp whose previous index was `rejected`; matchHint is the follower's
   * (or the leader's refined) guess of where the logs agree. Returns false for a stale rejection. */
  maybeDecrTo (rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.msgAppFlowPaused = false
    return true
  }

  isPaused (): boolean {
    switch (this.state) {
      case 'probe': return this.msgAppFlowPaused
      case 'replicate': return this.inflights.full()
      case 'snapshot': return true
    }
  }
}
