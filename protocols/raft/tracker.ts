// The leader's view of the configuration: one Progress per member, and the
// quorum arithmetic (commit index, election tally, check-quorum) over VOTERS only. While the
// configuration is joint every decision needs a majority of the incoming AND of the outgoing voters.
import type { ConfState, NodeId } from './types.ts'
import { Progress } from './progress.ts'
import { copyConf, isVoter, members } from './confchange.ts'

function majority (n: number): number {
  return Math.floor(n / 2) + 1
}

export type VoteResult = 'won' | 'lost' | 'pending'

export class ProgressTracker {
  conf: ConfState = { voters: [], learners: [] }
  readonly progress = new Map<NodeId, Progress>()
  readonly votes = new Map<NodeId, boolean>()
  readonly maxInflight: number

  constructor (maxInflight: number) {
    this.maxInflight = maxInflight
  }

  /** The voter sets whose majorities must all agree: one, or two while joint. */
  private halves (): NodeId[][] {
    const out = this.conf.votersOutgoing ?? []
    return out.length > 0 ? [this.conf.voters, out] : [this.conf.voters]
  }

  /** Does `yes` hold for a majority of every voter set? (false with no voters) */
  hasQuorum (yes: (id: NodeId) => boolean): boolean {
    if (this.conf.voters.length === 0) return false
    return this.halves().every(vs => vs.filter(yes).length >= majority(vs.length))
  }

  /** The one voter, alone deciding every quorum (not joint). */
  isSingleVoter (id: NodeId): boolean {
    return this.halves().length === 1 && this.conf.voters.length === 1 && this.conf.voters[0] === id
  }

  /** Every voter of either half. */
  allVoters (): NodeId[] {
    return [...new Set(this.halves().flat())]
  }

  isVoter (id: NodeId): boolean {
    return isVoter(this.conf, id)
  }

  /** Adopt a configuration: members keep their progress, new ones start probing at `next`. */
  setConf (conf: ConfState, next: number): void {
    this.conf = copyConf(conf)
    const all = new Set(members(conf))
    for (const id of [...this.progress.keys()]) if (!all.has(id)) this.progress.delete(id)
    for (const id of all) {
      const learner = !isVoter(conf, id)
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

  /** The largest index a quorum of voters has matched (0 with no voters); joint: the smaller of
   * the two halves' indexes. */
  committed (): number {
    if (this.conf.voters.length === 0) return 0
    return Math.min(...this.halves().map(vs => {
      const matches = vs.map(id => this.progress.get(id)?.match ?? 0).sort((a, b) => b - a)
      return matches[majority(vs.length) - 1]
    }))
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
    for (const id of this.allVoters()) {
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    // Joint: won when both halves are won, lost as soon as either half is lost.
    const results = this.halves().map((vs): VoteResult => {
      const q = majority(vs.length)
      const yes = vs.filter(id => this.votes.get(id) === true).length
      const no = vs.filter(id => this.votes.get(id) === false).length
      return yes >= q ? 'won' : vs.length - no < q ? 'lost' : 'pending'
    })
    const result: VoteResult = results.includes('lost') ? 'lost' : results.every(r => r === 'won') ? 'won' : 'pending'
    return { granted, rejected, result }
  }

  /** Check-quorum: have a quorum of voters (self included by the caller) been heard from? */
  quorumActive (self: NodeId): boolean {
    return this.hasQuorum(id => id === self || this.progress.get(id)?.recentActive === true)
  }
}
