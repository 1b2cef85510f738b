// Liveness: once the last fault has healed, a leader is elected and a client
// write called after the heal completes within a stated bound.
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

/** virtual ms after the heal within which a write must complete */
export const LIVENESS_BOUND_MS = 4000

export class Liveness extends BaseChecker {
  readonly name = 'liveness'

  constructor (private readonly progress: () => { leaderAt: number | null, writeAt: number | null }) {
    super()
  }

  finish = (v: FinalView): void => {
    const p = this.progress()
    const bound = v.healedAt + LIVENESS_BOUND_MS
    if (p.leaderAt === null || p.leaderAt > bound) {
      this.fail(v.now, `no leader within ${LIVENESS_BOUND_MS} ms after the faults healed at ${v.healedAt}`)
    } else if (p.writeAt === null || p.writeAt > bound) {
      this.fail(v.now, `leader elected at ${p.leaderAt} but no client write completed within ${LIVENESS_BOUND_MS} ms after the faults healed at ${v.healedAt}`)
    }
  }
}
