// The leader's view of the configuration: one Progress per member, and the
// quorum arithmetic (commit index, election tally, check-quorum) over VOTERS only.
import type { ConfState, NodeId } from './types.ts'
import { Progress } from './progress.ts'

export type VoteResult = 'won' | 'lost' | 'pending'

export class ProgressTracker {
  conf: ConfState = { voters: [], learners: [] }
  readonly progress = new Map<NodeId, Progress>()
  readonly votes = new Map<NodeId, boolean>()
  readonly maxInflight: number

  constructor (maxInflight: number) {
    this.maxInflight = maxInflight
  }

  quorum (): number {
    return Math.floor(this.conf.voters.length / 2) + 1
  }

  isVoter (id: NodeId): boolean {
    return this.conf.voters.includes(id)
  }

  /** Adopt a configuration: members keep their progress, new ones start probing at `next`. */
  setConf (conf: ConfState, next: number): void {
    this.conf = { voters: [...conf.voters], learners: [...conf.learners] }
    const members = new Set([...conf.voters, ...conf.learners])
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id)
    for (const id of members) {
      const learner = !conf.voters.includes(id)
      const pr = this.progress.get(id)
      if (pr === undefined) this.progress.set(id, new Progress(next, this.maxInflight, learner))
      else pr.isLearner = learner
    }
  }

  /** Fresh progress for every member (a new term). */
  resetProgress (next: number): void {
    this.progress.clear()
    this.setConf(this.conf, next)
  }

  /** The largest index a quorum of voters has matched (0 with no voters). */
  committed (): number {
    const matches = this.conf.voters.map(id => this.progress.get(id)?.match ?? 0).sort((a, b) => b - a)
    if (matches.length === 0) return 0
    return matches[this.quorum() - 1]
  }

  resetVotes (): void {
    this.votes.clear()
  }

  recordVote (id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted)
  }

  tally (): { granted: number, rejected: number, result: VoteResult } {
    let granted = 0
    let rejected = 0
    for (const id of this.conf.voters) {
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    const q = this.quorum()
    const result: VoteResult = granted >= q ? 'won' : this.conf.voters.length - rejected < q ? 'lost' : 'pending'
    return { granted, rejected, result }
  }

  /** Check-quorum: have a quorum of voters (self included by the caller) been heard from? */
  quorumActive (self: NodeId): boolean {
    let active = 0
    for (const id of this.conf.voters) {
      if (id === self || this.progress.get(id)?.recentActive === true) active++
    }
    return active >= this.quorum()
  }
}
