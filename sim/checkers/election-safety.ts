// Election safety: at most one leader per term.
import { BaseChecker } from './checker.ts'
import type { Replica } from '../replica.ts'

export class ElectionSafety extends BaseChecker {
  readonly name = 'election-safety'
  private readonly leaders = new Map<number, string>()

  onLeader = (r: Replica, term: number, now: number): void => {
    const prev = this.leaders.get(term)
    if (prev === undefined) this.leaders.set(term, r.id)
    else if (prev !== r.id) this.fail(now, `two leaders in term ${term}: ${prev} and ${r.id}`)
  }
}
