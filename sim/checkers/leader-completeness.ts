// Leader completeness: an entry applied anywhere (hence committed) before a
// leader took office is in that leader's log.
import type { Entry } from '../../protocols/raft/types.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'

export class LeaderCompleteness extends BaseChecker {
  readonly name = 'leader-completeness'
  /** index -> term of the committed entry */
  private readonly committed: number[] = []

  onApply = (_r: Replica, e: Entry): void => {
    if (this.committed[e.index] === undefined) this.committed[e.index] = e.term
  }

  onLeader = (r: Replica, term: number, now: number): void => {
    const s = r.store
    const maxCommitted = this.committed.length - 1
    if (maxCommitted < 1) return
    if (s.lastIndex() < maxCommitted) {
      this.fail(now, `${r.id} leads term ${term} with last index ${s.lastIndex()} < committed index ${maxCommitted}`)
      return
    }
    const from = Math.max(1, s.firstIndex())
    for (let i = from; i <= maxCommitted; i++) {
      const want = this.committed[i]
      if (want === undefined) continue
      const got = s.term(i)
      if (got !== want) {
        this.fail(now, `${r.id} leads term ${term} but holds term ${got} at committed index ${i} (committed in term ${want})`)
        return
      }
    }
  }
}
