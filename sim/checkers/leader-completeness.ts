// Leader completeness: an entry committed in a term before a leader's term is in that leader's
// log. The term an entry was committed in is bounded from above by the term of the first
// replica seen applying it; only entries whose bound is below the leader's term are required.
// (An older term's candidate may still win with a vote granted before the voter moved on — a
// delayed MsgVoteResp, seed 25107 — and need not hold what a later term committed meanwhile.)
import type { Entry } from '../../protocols/raft/types.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'

export class LeaderCompleteness extends BaseChecker {
  readonly name = 'leader-completeness'
  /** index -> term of the committed entry */
  private readonly committed: number[] = []
  /** index -> an upper bound of the term it was committed in (the first applier's term) */
  private readonly committedBy: number[] = []

  onApply = (r: Replica, e: Entry): void => {
    if (this.committed[e.index] === undefined) {
      this.committed[e.index] = e.term
      this.committedBy[e.index] = r.term
    }
  }

  onLeader = (r: Replica, term: number, now: number): void => {
    const s = r.store
    let maxCommitted = this.committed.length - 1
    while (maxCommitted >= 1 && !(this.committedBy[maxCommitted] < term)) maxCommitted--
    if (maxCommitted < 1) return
    if (s.lastIndex() < maxCommitted) {
      this.fail(now, `${r.id} leads term ${term} with last index ${s.lastIndex()} < committed index ${maxCommitted}`)
      return
    }
    const from = Math.max(1, s.firstIndex())
    for (let i = from; i <= maxCommitted; i++) {
      const want = this.committed[i]
      if (want === undefined || !(this.committedBy[i] < term)) continue
      const got = s.term(i)
      if (got !== want) {
        this.fail(now, `${r.id} leads term ${term} but holds term ${got} at committed index ${i} (committed in term ${want})`)
        return
      }
    }
  }
}
