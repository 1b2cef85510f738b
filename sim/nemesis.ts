// The fault injector: during the fault phase it crashes and restarts replicas,
// partitions the network (both ways and one way), changes loss, duplication
// and delay, changes membership (one step at a time, or several at once through a joint
// configuration: replace a voter, swap a voter and a learner), transfers leadership,
// and stages "outages": the followers crash right after acknowledging new
// entries and then the leader is cut off, which is when an acknowledgement
// sent before its entries were synced would lose a committed write.
import type { Cluster } from './cluster.ts'
import type { Prng } from './prng.ts'
import type { EventQueue } from './event-queue.ts'
import { isJoint, isMember } from '../protocols/raft/confchange.ts'

export interface NemesisOptions {
  sched: EventQueue
  rng: Prng
  /** Joint-change choices draw from their own stream, so a run that picks the one-step path
   * replays exactly as before joint changes existed (the named regression seeds stay meaningful). */
  jointRng: Prng
  jointChanges: boolean
  cluster: Cluster
  /** voters the cluster should keep (3 or 5) */
  voters: number
  trace: ((line: string) => void) | null
}

type Action = 'crash' | 'outage' | 'churn' | 'partition' | 'isolate-leader' | 'one-way' | 'weather' | 'heal' | 'membership' | 'transfer'

const ACTIONS: Array<[Action, number]> = [
  ['crash', 4], ['outage', 3], ['churn', 6], ['partition', 3], ['isolate-leader', 3], ['one-way', 2],
  ['weather', 2], ['heal', 2], ['membership', 2], ['transfer', 1]
]

export class Nemesis {
  private active = false
  /** a spawned replica whose addLearner has not been seen applied yet */
  private joining: string | null = null
  private readonly leaving = new Set<string>()
  /** elections still to disturb in the current churn */
  private churnLeft = 0
  readonly stats = { actions: 0, crashes: 0, outages: 0, partitions: 0, membership: 0, joint: 0, transfers: 0 }

  constructor (private readonly o: NemesisOptions) {
    o.cluster.onLeaderElected = (r) => { if (this.active && this.churnLeft > 0) this.disturbNewLeader(r.id) }
    o.cluster.onArmedCrash = (r, vote) => {
      this.stats.crashes++
      // A voter that died right after granting comes back at once, while the election it voted
      // in is still going on: what it remembers of that vote is then what keeps the term to one leader.
      const [lo, hi] = vote ? [1, 4] : [10, 120]
      this.o.sched.after(this.o.rng.range(lo, hi), () => { if (this.active) this.o.cluster.restart(r.id) })
    }
  }

  private trace (line: string): void {
    this.o.trace?.(`nemesis ${line}`)
  }

  start (): void {
    this.active = true
    this.schedule()
  }

  stop (): void {
    this.active = false
  }

  private schedule (): void {
    this.o.sched.after(this.o.rng.range(30, 250), () => {
      if (!this.active) return
      this.act()
      this.schedule()
    })
  }

  private pick (): Action {
    let total = 0
    for (const [, w] of ACTIONS) total += w
    let x = this.o.rng.int(total)
    for (const [a, w] of ACTIONS) {
      if (x < w) return a
      x -= w
    }
    return 'heal'
  }

  private act (): void {
    const { cluster, rng, sched } = this.o
    this.stats.actions++
    this.retireRemoved()
    const members = cluster.members()
    const ids = members.map(r => r.id)
    const up = members.filter(r => r.up)
    const leader = cluster.leader()
    const action = this.pick()
    switch (action) {
      case 'crash': {
        // Keep at least a bare quorum of the members running most of the time.
        const down = members.length - up.length
        if (up.length === 0 || down >= Math.floor((members.length - 1) / 2) + (rng.chance(0.2) ? 1 : 0)) return
        const victim = leader !== null && rng.chance(0.4) ? leader : rng.pick(up)
        this.stats.crashes++
        cluster.crash(victim.id, 'nemesis')
        const id = victim.id
        sched.after(rng.range(30, 1200), () => { if (this.active) cluster.restart(id) })
        return
      }
      case 'outage': {
        if (leader === null) return
        this.stats.outages++
        const followers = up.filter(r => r !== leader).map(r => r.id)
        for (const f of followers) cluster.armed.add(f)
        this.trace(`outage: arm ${followers.join(',')}, then cut off ${leader.id}`)
        const lid = leader.id
        sched.after(rng.range(8, 40), () => {
          if (!this.active) return
          cluster.net.isolate(lid, cluster.memberIds())
          // The election that follows: each follower dies right after its first vote grant.
          for (const f of followers) { cluster.armed.delete(f); cluster.armedVote.add(f) }
          sched.after(rng.range(300, 1200), () => {
            for (const f of followers) cluster.armedVote.delete(f)
            if (this.active) { cluster.net.heal(); this.trace('heal') }
          })
        })
        return
      }
      case 'churn': {
        // Leader after leader is cut off soon after taking office, each having replicated its
        // latest entries to only some followers: the logs then disagree in the ways of the
        // paper's Figure 8, which only the current-term commit rule survives.
        this.stats.partitions++
        const rounds = rng.range(3, 7)
        this.churnLeft = rng.range(5, 15)
        let at = 0
        this.trace(`churn ${rounds} rounds`)
        for (let k = 0; k < rounds; k++) {
          at += rng.range(30, 160)
          const hold = rng.range(40, 400)
          const how = rng.pick(['crash', 'crash-after-send', 'cut', 'cut-after-commit', 'cut-after-commit'] as const)
          sched.after(at, () => {
            if (!this.active) return
            const l = cluster.leader()
            if (l === null) return
            const id = l.id
            if (how === 'cut-after-commit') {
              // Cut it off right after it next commits: its latest appends reach only some followers.
              cluster.cutAfterCommit.set(id, hold)
              this.trace(`churn: cut off leader ${id} after its next commit`)
            } else if (how === 'crash') {
              this.stats.crashes++
              cluster.crash(id, 'churn')
              sched.after(hold, () => { if (this.active) cluster.restart(id) })
            } else if (how === 'crash-after-send') {
              // Dies right after sending new entries it has not written yet (a leader sends
              // first): the followers may commit what its own disk never held.
              cluster.armed.add(id)
              this.trace(`churn: crash leader ${id} right after it next sends new entries`)
            } else {
              this.trace(`churn: cut off leader ${id} for ${hold} ms`)
              cluster.net.isolate(id, cluster.memberIds())
              sched.after(hold, () => { if (this.active) { cluster.net.rejoin(id); this.trace(`rejoin ${id}`) } })
            }
          })
        }
        return
      }
      case 'partition': {
        if (ids.length < 2) return
        const shuffled = rng.shuffle(ids)
        const cut = rng.range(1, shuffled.length - 1)
        const a = shuffled.slice(0, cut)
        const b = shuffled.slice(cut)
        this.stats.partitions++
        this.trace(`partition ${a.join(',')} | ${b.join(',')}`)
        cluster.net.partition(a, b)
        sched.after(rng.range(100, 1500), () => { if (this.active) { cluster.net.heal(); this.trace('heal') } })
        return
      }
      case 'isolate-leader': {
        if (leader === null) return
        this.stats.partitions++
        this.trace(`isolate leader ${leader.id}`)
        cluster.net.isolate(leader.id, ids)
        sched.after(rng.range(200, 1500), () => { if (this.active) { cluster.net.heal(); this.trace('heal') } })
        return
      }
      case 'one-way': {
        if (ids.length < 2) return
        this.stats.partitions++
        if (leader !== null && rng.chance(0.5)) {
          // The leader hears everyone but nobody hears it (or the reverse).
          const outbound = rng.chance(0.5)
          for (const id of ids) {
            if (id === leader.id) continue
            if (outbound) cluster.net.blockOneWay(leader.id, id)
            else cluster.net.blockOneWay(id, leader.id)
          }
          this.trace(`one-way ${outbound ? 'from' : 'to'} leader ${leader.id}`)
        } else {
          const [x, y] = rng.shuffle(ids)
          cluster.net.blockOneWay(x, y)
          this.trace(`one-way ${x}>${y}`)
        }
        sched.after(rng.range(100, 1500), () => { if (this.active) { cluster.net.heal(); this.trace('heal') } })
        return
      }
      case 'weather': {
        const f = cluster.net.faults
        f.loss = rng.pick([0, 0, 0.02, 0.05, 0.15])
        f.duplicate = rng.pick([0, 0.02, 0.1])
        f.minDelay = 1
        f.maxDelay = rng.pick([3, 6, 12])
        f.slow = rng.pick([0, 0.05, 0.2])
        f.slowDelay = rng.range(20, 200)
        this.trace(`weather loss=${f.loss} dup=${f.duplicate} delay<=${f.maxDelay} slow=${f.slow}/${f.slowDelay}`)
        return
      }
      case 'heal':
        cluster.net.heal()
        this.trace('heal')
        return
      case 'membership':
        this.membershipStep()
        return
      case 'transfer': {
        const conf = cluster.conf()
        if (leader === null || conf === null) return
        const others = conf.voters.filter(v => v !== leader.id)
        if (others.length === 0) return
        this.stats.transfers++
        cluster.transferLeadership(rng.pick(others))
      }
    }
  }

  /** During a churn: cut a new leader off at once (its no-op reaches nobody), or right after its
   * first commit (its later appends reach only some), or let it be. */
  private disturbNewLeader (id: string): void {
    const { cluster, rng, sched } = this.o
    this.churnLeft--
    const hold = rng.range(40, 400)
    const how = rng.pick(['now', 'now', 'after-commit', 'after-commit', 'none'] as const)
    if (how === 'none') return
    this.stats.partitions++
    if (how === 'after-commit') {
      this.trace(`churn: cut off new leader ${id} after its first commit`)
      cluster.cutAfterCommit.set(id, hold)
      return
    }
    this.trace(`churn: cut off new leader ${id} for ${hold} ms`)
    cluster.net.isolate(id, cluster.memberIds())
    sched.after(hold, () => { if (this.active) { cluster.net.rejoin(id); this.trace(`rejoin ${id}`) } })
  }

  /** add a learner, promote it, remove some other voter: one change at a time; or, with a
   * learner at hand, replace a voter by it (or swap their roles) in one joint change, left
   * automatically or by a later explicit leave. */
  private membershipStep (): void {
    const { cluster, rng } = this.o
    const conf = cluster.conf()
    const leader = cluster.leader()
    if (conf === null || leader === null) return
    if (this.joining !== null && isMember(conf, this.joining)) this.joining = null
    if (isJoint(conf)) {
      // An explicit joint config waits for the nemesis to leave it (an auto one for the leader).
      if (conf.autoLeave !== true && cluster.changeMembership({ changes: [], transition: 'explicit' })) this.stats.membership++
      return
    }
    if (conf.learners.length > 0) {
      const id = conf.learners[0]
      const jr = this.o.jointRng
      const transition = jr.pick(['auto', 'explicit'] as const)
      const how = jr.pick(['promote', 'replace', 'swap'] as const)
      if (this.o.jointChanges && how !== 'promote' && conf.voters.length >= this.o.voters) {
        // Any voter, the leader included: a leader removed while joint keeps leading until the leave.
        const victim = jr.pick(conf.voters)
        const cc = { changes: [{ type: 'add-voter' as const, node: id }, { type: how === 'replace' ? 'remove' as const : 'add-learner' as const, node: victim }], transition }
        if (cluster.changeMembership(cc)) {
          this.stats.membership++
          this.stats.joint++
          if (how === 'replace') this.leaving.add(victim)
        }
        return
      }
      if (cluster.changeMembership({ type: 'promote', node: id })) this.stats.membership++
      return
    }
    if (conf.voters.length > this.o.voters) {
      const candidates = conf.voters.filter(v => v !== leader.id)
      if (candidates.length === 0) return
      const id = rng.pick(candidates)
      if (cluster.changeMembership({ type: 'remove', node: id })) {
        this.stats.membership++
        this.leaving.add(id)
      }
      return
    }
    // a fresh replica joins by itself, through the shipped membership rounds (node/membership.ts:
    // hellos, cluster.join, the leader's admit); the nemesis waits until it is a member
    if (this.joining !== null) return
    this.joining = cluster.spawn().id
    this.stats.membership++
  }

  /** Stop replicas whose removal the leader has applied: they are gone for good. */
  retireRemoved (): void {
    if (this.leaving.size === 0) return
    const conf = this.o.cluster.conf()
    if (conf === null) return
    for (const id of [...this.leaving]) {
      if (isMember(conf, id)) continue
      this.leaving.delete(id)
      this.trace(`retire ${id}`)
      this.o.cluster.retire(id)
    }
  }
}
