// Configuration safety: a replica only ever acts on a configuration that its committed log
// prefix produced (the snapshot's, changed by conf entries up to its commit index). A conf
// entry above the commit index may still be truncated by a later leader; a replica counting it
// would elect and commit with a voter set the cluster never agreed on, and two such sets can
// hold disjoint majorities (two leaders in one term). Checked at every checkpoint.
import type { ConfState } from '../../protocols/raft/types.ts'
import { applyConfChange, decodeConfChange } from '../../protocols/raft/confchange.ts'
import type { Cluster } from '../cluster.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

function key (c: ConfState): string {
  const s = (xs: string[] | undefined): string => [...(xs ?? [])].sort().join(' ')
  return `voters=(${s(c.voters)}) learners=(${s(c.learners)}) outgoing=(${s(c.votersOutgoing)}) learnersNext=(${s(c.learnersNext)}) auto=${c.autoLeave === true}`
}

export class ConfigSafety extends BaseChecker {
  readonly name = 'config-safety'

  onCheckpoint = (c: Cluster, now: number): void => {
    for (const r of c.replicas) if (r.up) this.check(r, now)
  }

  finish = (v: FinalView): void => {
    this.onCheckpoint(v.cluster, v.now)
  }

  private check (r: Replica, now: number): void {
    const st = r.raftStatus()
    if (st === null) return
    const snap = r.store.snapshot().meta
    let conf = snap.conf
    const allowed = new Set([key(conf)])
    const lo = Math.max(snap.index + 1, r.store.firstIndex())
    if (st.commit >= lo) {
      for (const e of r.store.entries(lo, Math.min(st.commit, r.store.lastIndex()) + 1)) {
        if (e.type !== 'conf') continue
        try {
          conf = applyConfChange(conf, decodeConfChange(e.data))
        } catch {
          continue
        }
        allowed.add(key(conf))
      }
    }
    const mine = key(st.conf)
    if (!allowed.has(mine)) {
      this.fail(now, `${r.id} uses ${mine}, which no committed prefix of its log (commit ${st.commit}) produces`)
    }
  }
}
