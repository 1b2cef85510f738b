// N replicas on one virtual clock and one simulated network, plus the
// operations the nemesis and the workload use: crash, restart, membership
// changes, leadership transfer, and client requests to a given replica.
import type { AnyConfChange, ConfState, Message, Ready } from '../protocols/raft/types.ts'
import { confChangeText } from '../protocols/raft/confchange.ts'
import { MemoryLogStore } from './memory-log-store.ts'
import { Network } from './network.ts'
import { Replica, isRpcFrame } from './replica.ts'
import type { ReplicaTuning, RpcReply, Wire } from './replica.ts'
import type { CommandEnvelope } from '../protocols/commands.ts'

export interface ClusterOptions extends ReplicaTuning {
  nodes: number
}

export type ClientRequest =
  | { kind: 'write', env: CommandEnvelope }
  | { kind: 'read', vm: string }
  | { kind: 'stale-read', vm: string }

/** One line per message for traces: only stable fields, no object identity. */
export function describeMessage (w: Wire): string {
  if (isRpcFrame(w)) {
    if (w.rpc === 'req') return `rpc propose${w.many ? 'Many' : ''} #${w.id} keys=${w.envs.map(e => e.key ?? '?').join(',')}`
    if (w.rpc === 'mreq') return `rpc ${w.method} #${w.id}`
    return `rpc answer #${w.id} ${w.ok ? 'ok' : w.error.kind}`
  }
  const m: Message = w
  let s = `${m.type} term=${m.term}`
  if (m.index !== undefined) s += ` index=${m.index}`
  if (m.logTerm !== undefined) s += ` logTerm=${m.logTerm}`
  if (m.commit !== undefined) s += ` commit=${m.commit}`
  if (m.entries !== undefined && m.entries.length > 0) s += ` entries=${m.entries[0].index}..${m.entries[m.entries.length - 1].index}`
  if (m.reject === true) s += ` reject hint=${m.rejectHint ?? -1}`
  if (m.snapshot !== undefined) s += ` snap=${m.snapshot.meta.index}`
  if (m.lead !== undefined) s += ` lead=${m.lead}`
  return s
}

export class Cluster {
  readonly net: Network<Wire>
  /** every replica ever created, in creation order (n1, n2, ...) */
  readonly replicas: Replica[] = []
  private readonly byId = new Map<string, Replica>()
  /** replicas that will crash right after their next Ready that acknowledges new entries (a
   * follower) or sends them (a leader, which sends before it writes them: node/core/raft-loop.ts) */
  readonly armed = new Set<string>()
  /** replicas that will crash right after their next Ready that grants a vote */
  readonly armedVote = new Set<string>()
  /** leaders to cut off from everyone right after they next commit, for how long (ms) */
  readonly cutAfterCommit = new Map<string, number>()
  /** called as a replica becomes leader, before its first messages go out */
  onLeaderElected: ((r: Replica) => void) | null = null
  /** called when a replica crashes through an armed hook (`vote`: armedVote) */
  onArmedCrash: ((r: Replica, vote: boolean) => void) | null = null
  private nextId: number

  constructor (private readonly o: ClusterOptions) {
    this.net = new Network<Wire>(o.sched, o.rng.fork('network'), (from, to, m) => {
      const r = this.byId.get(to)
      const there = r !== undefined && r.up
      o.trace?.(`${to} <- ${from} ${describeMessage(m)}${there ? '' : ' (nobody there)'}`)
      if (!there) return false
      return isRpcFrame(m) ? r.receiveRpc(from, m) : r.receive(m)
    })
    const voters: string[] = []
    for (let i = 1; i <= o.nodes; i++) voters.push(`n${i}`)
    for (const id of voters) this.add(id, new MemoryLogStore({ conf: { voters, learners: [] }, countUncommittedConf: o.bugs.has('conf-not-rolled-back') }))
    this.nextId = o.nodes + 1
  }

  private add (id: string, store: MemoryLogStore): Replica {
    const r = new Replica(id, store, {
      sched: this.o.sched,
      net: this.net,
      rng: this.o.rng.fork(`replica/${id}`),
      bugs: this.o.bugs,
      checkers: this.o.checkers,
      preVote: this.o.preVote,
      checkQuorum: this.o.checkQuorum,
      maxSizePerMsg: this.o.maxSizePerMsg,
      maxInflightMsgs: this.o.maxInflightMsgs,
      relayLearners: this.o.relayLearners,
      trace: this.o.trace,
      crashAfterSend: (rep, rd) => this.crashAfterSend(rep, rd),
      afterApply: (rep) => this.afterApply(rep),
      onRole: (rep) => { if (rep.role === 'leader') this.onLeaderElected?.(rep) },
      connected: (self) => this.replicas.filter(o => o.id !== self && o.up && !o.removed && this.net.open(self, o.id) && this.net.open(o.id, self)).map(o => o.id)
    })
    this.replicas.push(r)
    this.byId.set(id, r)
    return r
  }

  start (): void {
    for (const r of this.replicas) r.start()
  }

  get (id: string): Replica | undefined {
    return this.byId.get(id)
  }

  /** Replicas still part of the cluster (not removed), up or down. */
  members (): Replica[] {
    return this.replicas.filter(r => !r.removed)
  }

  memberIds (): string[] {
    return this.members().map(r => r.id)
  }

  /** The up replica that believes it leads the highest term, if any. */
  leader (): Replica | null {
    let best: Replica | null = null
    for (const r of this.replicas) {
      if (!r.up || r.role !== 'leader') continue
      if (best === null || r.term > best.term) best = r
    }
    return best
  }

  /** The latest applied configuration as the leader sees it. */
  conf (): ConfState | null {
    const l = this.leader()
    if (l === null || l.core === null) return null
    return l.core.status().conf
  }

  private crashAfterSend (r: Replica, rd: Ready): boolean {
    if (this.armedVote.has(r.id) && rd.messages.some(m => m.type === 'MsgVoteResp' && m.reject !== true)) {
      this.armedVote.delete(r.id)
      this.o.sched.after(0, () => this.onArmedCrash?.(r, true))
      return true
    }
    if (!this.armed.has(r.id) || rd.entries.length === 0) return false
    if (!rd.messages.some(m => (m.type === 'MsgAppResp' && m.reject !== true) || (m.type === 'MsgApp' && m.entries !== undefined && m.entries.length > 0))) return false
    this.armed.delete(r.id)
    this.o.sched.after(0, () => this.onArmedCrash?.(r, false))
    return true
  }

  private afterApply (r: Replica): void {
    const hold = this.cutAfterCommit.get(r.id)
    if (hold === undefined || r.role !== 'leader') return
    this.cutAfterCommit.delete(r.id)
    this.o.trace?.(`${r.id} cut off right after committing, for ${hold} ms`)
    this.net.isolate(r.id, this.memberIds())
    this.o.sched.after(hold, () => this.net.rejoin(r.id))
  }

  crash (id: string, why: string): void {
    const r = this.byId.get(id)
    if (r === undefined || !r.up) return
    r.crash(why)
    // A crashed process's kernel resets its connections: the others notice within a few ms (a
    // partition, by contrast, closes nothing and only the election timeout reveals it).
    for (const other of this.replicas) {
      if (other === r) continue
      this.o.sched.after(this.o.rng.range(1, 20), () => { other.peerLost(id) })
    }
  }

  restart (id: string): void {
    const r = this.byId.get(id)
    if (r === undefined || r.up || r.removed) return
    r.start()
  }

  /** Stop a replica for good (it was removed from the configuration). */
  retire (id: string): void {
    const r = this.byId.get(id)
    if (r === undefined) return
    r.crash('removed')
    r.removed = true
    this.armed.delete(id)
    this.armedVote.delete(id)
  }

  /** Propose one membership change through the leader; false if there is no leader or it refused. */
  changeMembership (cc: AnyConfChange): boolean {
    const l = this.leader()
    if (l === null || l.core === null) return false
    this.o.trace?.(`${l.id} propose conf ${confChangeText(cc)}`)
    try {
      l.core.proposeConfChange(cc)
    } catch {
      this.o.trace?.(`${l.id} refused conf ${confChangeText(cc)}`)
      return false
    }
    return true
  }

  /** A fresh replica with an empty store, to be added as a learner. */
  spawn (): Replica {
    const id = `n${this.nextId++}`
    const r = this.add(id, new MemoryLogStore({ countUncommittedConf: this.o.bugs.has('conf-not-rolled-back') }))
    r.start()
    return r
  }

  transferLeadership (to: string): void {
    const l = this.leader()
    if (l === null || l.core === null || l.id === to) return
    this.o.trace?.(`${l.id} transfer leadership to ${to}`)
    l.core.transferLeadership(to)
  }

  /** A client request arriving at replica `to`. `reply` is never called if the replica is down or
   * crashes first: the client times out. */
  request (to: string, req: ClientRequest, reply: (r: RpcReply) => void): void {
    const r = this.byId.get(to)
    if (r === undefined || !r.up) return
    if (req.kind === 'write') r.write(req.env, reply)
    else if (req.kind === 'read') r.read(req.vm, reply)
    else r.staleRead(req.vm, reply)
  }

  /** `blixard-node admin recover PEERID` run on every member: each votes once it is registered. */
  noteRecovery (peerId: string): void {
    this.o.trace?.(`admin recovery of ${peerId} noted on every member`)
    for (const r of this.members()) r.recoveryNote = peerId
  }

  /** End of the fault phase: every link open, calm network, every member up. */
  healAll (): void {
    this.net.heal()
    this.net.faults = { loss: 0, duplicate: 0, minDelay: 1, maxDelay: 4, slow: 0, slowDelay: 0 }
    this.armed.clear()
    this.armedVote.clear()
    this.cutAfterCommit.clear()
    for (const r of this.members()) if (!r.up) r.start()
  }
}
