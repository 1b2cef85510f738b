// Relayed replicas hold the committed log: every entry a learner outside the Raft configuration
// appends (sim/scale/relay.ts) is the committed entry at that index and follows the one before it;
// every event a host without a replica receives is a committed entry that concerns that host, in
// log order; and once the run has settled, every learner holds the whole committed log and every
// host every committed entry that concerns it.
import type { Entry } from '../../protocols/raft/types.ts'
import { BaseChecker, sameBytes } from './checker.ts'

export interface RelayFinalView {
  now: number
  /** the voters' commit index at the end */
  commit: number
  learners: Array<{ id: string, log: readonly Entry[] }>
  watchers: Array<{ id: string, got: readonly Entry[] }>
  concerns: (e: Entry) => string | null
}

function same (a: Entry, b: Entry): boolean {
  return a === b || (a.index === b.index && a.term === b.term && a.type === b.type && sameBytes(a.data, b.data))
}

export class RelayLogs extends BaseChecker {
  readonly name = 'relay-logs'
  /** the committed log as the voters applied it */
  private readonly committed = new Map<number, Entry>()
  private readonly lastOf = new Map<string, number>()

  /** A voter applied `e` (committed). Voters must agree among themselves too. */
  onCommitted (who: string, e: Entry, now: number): void {
    const had = this.committed.get(e.index)
    if (had === undefined) this.committed.set(e.index, e)
    else if (!same(had, e)) this.fail(now, `${who} applied a different entry at ${e.index} than another voter`)
  }

  onLearnerAppend (who: string, e: Entry, now: number): void {
    const last = this.lastOf.get(who) ?? 0
    if (e.index !== last + 1) this.fail(now, `${who} appended index ${e.index} after ${last}: a hole in its log`)
    this.lastOf.set(who, e.index)
    const c = this.committed.get(e.index)
    if (c === undefined) this.fail(now, `${who} appended index ${e.index} before any voter applied it`)
    else if (!same(c, e)) this.fail(now, `${who} holds a different entry at ${e.index} than the voters committed`)
  }

  onEvent (who: string, e: Entry, now: number, concerns: (e: Entry) => string | null): void {
    const last = this.lastOf.get(who) ?? 0
    if (e.index <= last) this.fail(now, `${who} got index ${e.index} after ${last}: out of order or twice`)
    this.lastOf.set(who, e.index)
    const c = this.committed.get(e.index)
    if (c === undefined || !same(c, e)) this.fail(now, `${who} got an event at ${e.index} that is not the committed entry`)
    if (concerns(e) !== who) this.fail(now, `${who} got an event at ${e.index} that concerns ${concerns(e) ?? 'nobody'}`)
  }

  finish (v: RelayFinalView): void {
    for (const l of v.learners) {
      if (l.log.length !== v.commit) { this.fail(v.now, `${l.id} ended at ${l.log.length}, the voters at ${v.commit}: not converged`); continue }
      for (let i = 0; i < l.log.length; i++) {
        const c = this.committed.get(i + 1)
        if (c === undefined || !same(c, l.log[i])) { this.fail(v.now, `${l.id} differs from the committed log at ${i + 1}`); break }
      }
    }
    for (const w of v.watchers) {
      const want: Entry[] = []
      for (let i = 1; i <= v.commit; i++) {
        const c = this.committed.get(i)
        if (c !== undefined && v.concerns(c) === w.id) want.push(c)
      }
      if (want.length !== w.got.length || want.some((e, i) => !same(e, w.got[i]))) {
        this.fail(v.now, `${w.id} got ${w.got.length} of its records, the committed log holds ${want.length}: not converged`)
      }
    }
  }
}
