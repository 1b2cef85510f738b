// Durability: no acknowledged write is lost. A write the client saw answered
// was applied at some index with some payload; no replica may ever apply
// anything else there, and at the end the leader's log and state must still
// hold it, through every crash, snapshot and leader change of the run.
import type { Entry } from '../../protocols/raft/types.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker, sameBytes } from './checker.ts'
import type { FinalView } from './checker.ts'

export class Durability extends BaseChecker {
  readonly name = 'durability'
  /** replica -> index -> the payload it last applied there */
  private readonly appliedBy = new Map<string, Uint8Array[]>()

  onApply = (r: Replica, e: Entry): void => {
    let a = this.appliedBy.get(r.id)
    if (a === undefined) { a = []; this.appliedBy.set(r.id, a) }
    a[e.index] = e.data
  }

  finish = (v: FinalView): void => {
    const leader = v.cluster.leader()
    for (const op of v.history.ops) {
      if (op.index === null || op.data === null || op.output === null) continue
      const i = op.index
      const what = `${op.client} #${op.id} ${op.kind} ${op.vm} (key ${op.key ?? '-'}) acknowledged at index ${i}`
      for (const [id, a] of this.appliedBy) {
        const d = a[i]
        if (d !== undefined && !sameBytes(d, op.data)) {
          this.fail(v.now, `${what} but ${id} applied another entry there`)
          break
        }
      }
      if (leader === null) continue
      const s = leader.store
      if (leader.applied < i) this.fail(v.now, `${what} but final leader ${leader.id} has applied only ${leader.applied}`)
      else if (i >= s.firstIndex() && i <= s.lastIndex()) {
        const e = s.entries(i, i + 1)[0]
        if (!sameBytes(e.data, op.data)) this.fail(v.now, `${what} but final leader ${leader.id} holds another entry there (term ${e.term})`)
      }
    }
  }
}
