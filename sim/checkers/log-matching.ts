// Log matching: two logs with an entry of the same index and term hold the
// same entry there and agree on every entry before it. Checked twice: every
// (index, term) ever persisted must carry one payload only, and at each
// checkpoint every pair of live logs must agree below their last common term.
import type { Entry } from '../../protocols/raft/types.ts'
import type { Cluster } from '../cluster.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker, sameBytes } from './checker.ts'
import type { FinalView } from './checker.ts'

export class LogMatching extends BaseChecker {
  readonly name = 'log-matching'
  /** "index/term" -> payload first persisted with it */
  private readonly seen = new Map<string, Entry>()

  onPersist = (r: Replica, entries: readonly Entry[], now: number): void => {
    for (const e of entries) {
      const k = `${e.index}/${e.term}`
      const prev = this.seen.get(k)
      if (prev === undefined) this.seen.set(k, e)
      else if (prev !== e && (prev.type !== e.type || !sameBytes(prev.data, e.data))) {
        this.fail(now, `${r.id} persisted a different entry at index ${e.index} term ${e.term}`)
      }
    }
  }

  onCheckpoint = (c: Cluster, now: number): void => {
    const live = c.replicas.filter(r => r.up)
    for (let i = 0; i < live.length; i++) {
      for (let j = i + 1; j < live.length; j++) this.comparePair(live[i], live[j], now)
    }
  }

  finish = (v: FinalView): void => {
    this.onCheckpoint(v.cluster, v.now)
  }

  private comparePair (a: Replica, b: Replica, now: number): void {
    const lo = Math.max(a.store.firstIndex(), b.store.firstIndex())
    const hi = Math.min(a.store.lastIndex(), b.store.lastIndex())
    if (hi < lo) return
    const ea = a.store.entries(lo, hi + 1)
    const eb = b.store.entries(lo, hi + 1)
    // The highest index where the terms agree: everything up to it must be identical.
    let top = -1
    for (let k = ea.length - 1; k >= 0; k--) {
      if (ea[k].term === eb[k].term) { top = k; break }
    }
    for (let k = 0; k <= top; k++) {
      const x = ea[k]
      const y = eb[k]
      if (x.term !== y.term || x.type !== y.type || !sameBytes(x.data, y.data)) {
        this.fail(now, `${a.id} and ${b.id} agree on index ${ea[top].index} term ${ea[top].term} but differ at index ${x.index} (terms ${x.term}/${y.term})`)
        return
      }
    }
  }
}
