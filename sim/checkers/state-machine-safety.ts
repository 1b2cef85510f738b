// State machine safety: every replica applies the same entry at each index,
// and replicas at the same applied index have the same state (stateHash),
// both at snapshots during the run and at the end.
import type { Entry } from '../../protocols/raft/types.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker, sameBytes } from './checker.ts'
import type { FinalView } from './checker.ts'

export class StateMachineSafety extends BaseChecker {
  readonly name = 'state-machine-safety'
  private readonly applied: Array<{ entry: Entry, by: string } | undefined> = []
  private readonly hashes = new Map<number, { hash: string, by: string }>()

  onApply = (r: Replica, e: Entry, now: number): void => {
    const prev = this.applied[e.index]
    if (prev === undefined) {
      this.applied[e.index] = { entry: e, by: r.id }
      return
    }
    const p = prev.entry
    if (p !== e && (p.term !== e.term || p.type !== e.type || !sameBytes(p.data, e.data))) {
      this.fail(now, `${r.id} applied a different entry at index ${e.index} (term ${e.term}) than ${prev.by} did (term ${p.term})`)
    }
  }

  onSnapshot = (r: Replica, index: number, hash: string, now: number): void => {
    this.compareHash(r.id, index, hash, now)
  }

  finish = (v: FinalView): void => {
    for (const r of v.cluster.replicas) {
      if (!r.up || r.sm === null) continue
      this.compareHash(r.id, r.applied, r.sm.stateHash(), v.now)
    }
  }

  private compareHash (id: string, index: number, hash: string, now: number): void {
    const prev = this.hashes.get(index)
    if (prev === undefined) this.hashes.set(index, { hash, by: id })
    else if (prev.hash !== hash) this.fail(now, `${id} and ${prev.by} have different state at applied index ${index}`)
  }
}
