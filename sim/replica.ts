// One simulated server: the node core that ships (node/core/raft-node.ts, the same Ready loop
// as node/raft-service.ts: send-first when leading, deferred commit-only HardState) wired to a
// MemoryLogStore, a StateMachine over a MemoryKv, the simulated network and the virtual clock.
// A crash drops the core and the state machine and reverts the store to its last sync; a
// restart rebuilds the state machine from the store's snapshot and lets the core replay the
// committed log after it.
import type { RaftBug, RaftStatus } from '../protocols/raft/index.ts'
import type { Message, Ready } from '../protocols/raft/types.ts'
import type { ApplyResult, BlixError, CommandEnvelope } from '../protocols/commands.ts'
import { BlixardError, toBlixError } from '../protocols/errors.ts'
import type { ForwardedResult } from '../protocols/rpc.ts'
import { FORWARDER_BUGS, Forwarder } from '../node/core/forwarder.ts'
import type { ForwarderBug } from '../node/core/forwarder.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../storage/state-machine.ts'
import { MemoryKv } from '../storage/memory-kv.ts'
import { RaftNode } from '../node/core/raft-node.ts'
import { admitRaftMessage } from '../node/core/raft-ingress.ts'
import { raftIngressContext } from '../node/core/raft-ingress-context.ts'
import { LOOP_BUGS } from '../node/core/raft-loop.ts'
import type { LoopBug } from '../node/core/raft-loop.ts'
import { MemoryLogStore } from './memory-log-store.ts'
import type { Prng } from './prng.ts'
import type { EventQueue } from './event-queue.ts'
import type { Network } from './network.ts'
import type { Checker } from './checkers/checker.ts'
import type { VmView } from './history.ts'
import { Membership } from '../node/membership.ts'
import type { MembershipClient, MembershipRaft, MembershipMethod } from '../node/membership.ts'
import type { ParamsOf, ResultOf } from '../protocols/rpc.ts'
import { createLogger } from '../node/log.ts'
import { AUTH_LIMITS } from '../protocols/auth.ts'
import type { CommandAuth } from '../protocols/auth.ts'
import { PREEMPT_BUGS } from '../placement/plans/preempt.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'

/** Raft timing, in ticks of TICK_MS virtual ms. */
export const TICK_MS = 10
export const ELECTION_TICK = 10
export const HEARTBEAT_TICK = 2

/** Ready rounds one drive() may take before the run is declared stuck. */
const MAX_READY_ROUNDS = 10_000

/** Planted bugs: the Raft core's (protocols/raft), the shipped loop's (node/core/raft-loop.ts:
 * 'ack-before-sync', 'vote-before-persist'), and the log store's 'conf-not-rolled-back', which
 * reads an uncommitted (later truncated) conf entry into the configuration after a restart. */
/** no-self-fence: sim/ha.ts's hosts never stop their guests when their lease runs out;
 * 'retry-new-key' is the shipped forwarder's (node/core/forwarder.ts) */
/** 'preempt-equal' is the scheduler's (placement/plans/preempt.ts and its apply re-check): a
 * preemption may evict a VM of equal priority. */
export type SimBug = RaftBug | LoopBug | ForwarderBug | PreemptBug | 'conf-not-rolled-back' | 'no-self-fence'

/** The RPCs the shipped forwarder makes to a leader (internal.propose and internal.proposeMany in
 * node/api.ts), as frames on the same simulated network as Raft: partitions, loss, delay and
 * duplication strike them alike. */
export type RpcFrame =
  | { rpc: 'req', id: number, many: boolean, envs: CommandEnvelope[] }
  | { rpc: 'mreq', id: number, method: MembershipMethod, params: unknown }
  | { rpc: 'res', id: number, ok: true, value: unknown }
  | { rpc: 'res', id: number, ok: false, error: BlixError }
export type Wire = Message | RpcFrame

export function isRpcFrame (w: Wire): w is RpcFrame {
  return 'rpc' in w
}

/** Where and at which index each applied result was committed (by object identity: results are
 * handed over the simulated network unserialized), so a client's answer names its entry for the
 * durability checker, whichever replica forwarded it. */
const committedAt = new WeakMap<ApplyResult, { index: number, data: Uint8Array, node: string }>()

interface PendingCall {
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
}

/** Membership in the simulator: every round the daemon runs (node/membership.ts rounds()) — a
 * fresh replica joins by asking its peers for hellos and one of them to admit it; the leader runs
 * autopilot; every member registers itself, casts a pending admin-recovery vote and looks for the
 * members it is not connected to. Autopilot's cadence and dead timeout are scaled to the
 * simulator's 100 ms election timeout (the daemon's is 1 s). */
export const SIM_AUTOPILOT = { intervalMs: 250, deadAfterMs: 1_500 }
/** A replica registers itself with no capacity: the guests of a run live on sim/ha.ts's hosts,
 * so placement never picks a replica's record. */
const REPLICA_CAPACITY = { cpu: 0, memoryMiB: 0, diskGiB: 0 }
/** The simulator's state machine checks no signatures (UNCHECKED_AUTHORITY) but reads who signed
 * a node's own command (a RecoverAdmin vote counts for its signer): a replica's own writes carry
 * its id as signer, with a placeholder signature of the right size. */
const UNVERIFIED_SIG = new Uint8Array(AUTH_LIMITS.signatureBytes)
/** how long a replica's dial of a member it is not connected to takes (membership's reach round) */
const DIAL_MS = 20
/** how long a membership RPC waits for its answer, and a conf change for its apply */
const MEMBERSHIP_RPC_TIMEOUT_MS = 1_000
const CONF_CHANGE_TIMEOUT_MS = 3_000
const CONF_CHANGE_POLL_MS = 20
/** fresh clusters wait for this many nodes before bootstrapping (the daemon's default) */
const SIM_BOOTSTRAP_EXPECT = 3

/** How many ticks a replica waits, after its leader's connections all closed, before it campaigns. */
const LEADER_LOST_SLOT_TICKS = 3

export type RpcReply =
  | { ok: true, view: VmView | null, index: number, data: Uint8Array | null, node: string, incarnation: number, applied: number, definite?: boolean }
  | { ok: false, error: BlixError, index: number, data: Uint8Array | null, node: string, definite?: boolean }

/** What a seed sets for every replica alike (the cluster passes it through unchanged). */
export interface ReplicaTuning {
  sched: EventQueue
  rng: Prng
  bugs: ReadonlySet<SimBug>
  checkers: readonly Checker[]
  preVote: boolean
  checkQuorum: boolean
  /** per-seed replication tuning: small messages and windows stretch replication over many rounds */
  maxSizePerMsg: number
  maxInflightMsgs: number
  /** learners fed by a follower (protocols/raft/relay.ts), as the daemon does by default */
  relayLearners?: boolean
  trace: ((line: string) => void) | null
}

export interface ReplicaEnv extends ReplicaTuning {
  net: Network<Wire>
  /** Asked right after a Ready's messages went out: crash now? (power loss between send and the next step) */
  crashAfterSend: (r: Replica, rd: Ready) => boolean
  /** Told after a Ready's committed entries were applied (a fault may strike right then). */
  afterApply: (r: Replica, rd: Ready) => void
  /** Role changes, for the cluster's bookkeeping. */
  onRole: (r: Replica) => void
  /** the replicas `self` can reach now (up, not retired, link open): what libp2p calls connected */
  connected: (self: string) => string[]
}

export function viewOf (sm: StateMachine, vm: string): VmView | null {
  const rec = sm.getVm(vm)
  if (rec == null) return null
  return { vcpus: rec.spec.vcpus, memoryMiB: rec.spec.memoryMiB, desired: rec.desired }
}

export class Replica {
  readonly id: string
  readonly store: MemoryLogStore
  /** the node core of the current life (null while down) */
  core: RaftNode | null = null
  sm: StateMachine | null = null
  /** bumped on every crash, so timers and replies of an earlier life are ignored */
  incarnation = 0
  /** highest committed index handed to the shell (conf entries included) */
  applied = 0
  up = false
  /** removed from the configuration and stopped for good */
  removed = false
  role = 'follower'
  term = 0
  /** applied entries until the next compaction (drawn anew after each) */
  private compactEvery: number
  private readonly raftBugs: ReadonlySet<RaftBug>
  private readonly loopBugs: ReadonlySet<LoopBug>
  private readonly forwarderBugs: ReadonlySet<ForwarderBug>
  private readonly preemptBugs: ReadonlySet<PreemptBug>
  /** the shipped write path of the current life: proposes here when leading, else forwards */
  private forwarder: Forwarder<string> | null = null
  /** forwarded calls of the current life waiting for the leader's answer, by frame id */
  private readonly calls = new Map<number, PendingCall>()
  private nextCall = 1
  /** the shipped membership rounds of the current life (node/membership.ts) */
  membership: Membership | null = null
  private nextMembershipKey = 1
  /** `blixard-node admin recover`'s note: on this replica's disk, so it outlives a crash, until
   * the vote for it applied (node/recover.ts in the daemon) */
  recoveryNote: string | null = null

  constructor (id: string, store: MemoryLogStore, private readonly env: ReplicaEnv) {
    this.id = id
    this.store = store
    this.compactEvery = env.rng.range(8, 60)
    const raftBugs = new Set<RaftBug>()
    const loopBugs = new Set<LoopBug>()
    const forwarderBugs = new Set<ForwarderBug>()
    const preemptBugs = new Set<PreemptBug>()
    for (const b of env.bugs) {
      if ((LOOP_BUGS as readonly string[]).includes(b)) loopBugs.add(b as LoopBug)
      else if ((PREEMPT_BUGS as readonly string[]).includes(b)) preemptBugs.add(b as PreemptBug)
      else if ((FORWARDER_BUGS as readonly string[]).includes(b)) forwarderBugs.add(b as ForwarderBug)
      else if (b !== 'conf-not-rolled-back' && b !== 'no-self-fence') raftBugs.add(b as RaftBug)
    }
    this.raftBugs = raftBugs
    this.loopBugs = loopBugs
    this.forwarderBugs = forwarderBugs
    this.preemptBugs = preemptBugs
  }

  /** The core's status while up (what the checkers look at). */
  raftStatus (): RaftStatus | null {
    return this.core?.status() ?? null
  }

  private trace (line: string): void {
    if (this.env.trace !== null) this.env.trace(`${this.id} ${line}`)
  }

  start (): void {
    this.up = true
    const sm = new StateMachine(new MemoryKv(), { ...UNCHECKED_AUTHORITY, bugs: this.preemptBugs })
    this.sm = sm
    this.role = 'follower'
    this.startCore(sm)
    this.membership = this.buildMembership(this.incarnation)
    this.membership.bindIfFresh()
    for (const [ms, round] of this.membership.rounds()) this.runRound(ms, this.incarnation, round)
  }

  /** The node core over the store as it is now: at start, and again after membership bootstrapped
   * a new cluster in this store (node/membership.ts startRaft). */
  private startCore (sm: StateMachine): void {
    const rng = this.env.rng.fork(`election/${this.incarnation}`)
    const inc = this.incarnation
    const { sched, checkers } = this.env
    const core = new RaftNode({
      id: this.id,
      store: this.store,
      sm,
      send: (msgs) => { this.send(msgs, inc) },
      timers: {
        after: (ms, run) => {
          let live = true
          sched.after(ms, () => { if (live) run() })
          return () => { live = false }
        }
      },
      // Drained at once, inside the event that made the work: no extra events, same order every run.
      defer: null,
      random: () => rng.float(),
      readContextPrefix: `${this.id}/${inc}`,
      tickMs: TICK_MS,
      firstTickMs: this.env.rng.range(1, TICK_MS),
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      preVote: this.env.preVote,
      checkQuorum: this.env.checkQuorum,
      maxSizePerMsg: this.env.maxSizePerMsg,
      maxInflightMsgs: this.env.maxInflightMsgs,
      relayLearners: this.env.relayLearners ?? false,
      // The simulated clients keep their own deadlines and retry with the same key.
      proposalTimeoutMs: null,
      compaction: {
        due: (since) => since >= this.compactEvery,
        keep: () => this.env.rng.int(4)
      },
      applyEachEntryAlone: true,
      // the daemon's admission filter (who may speak Raft, bounds, payload checks), so the seeds
      // say whether it ever drops a message an honest member needs
      admit: (m) => { const v = admitRaftMessage(m.from, m, { ...raftIngressContext(this.id, core), admitters: this.membership?.admitters() }); return v.ok ? null : v.reason },
      readiesPerDrain: MAX_READY_ROUNDS,
      raftBugs: this.raftBugs,
      loopBugs: this.loopBugs,
      hooks: {
        onRole: (role, leader, term) => {
          this.term = term
          // as node/daemon.ts does: forwarded writes stop waiting on a deposed leader
          this.forwarder?.leaderChanged(leader)
          sched.promiseWork = true
          if (this.role === role) return
          this.role = role
          this.trace(`role ${role} term=${term}`)
          if (role === 'leader') for (const c of checkers) c.onLeader?.(this, term, sched.now())
          this.env.onRole(this)
        },
        onPersisted: (entries) => { for (const c of checkers) c.onPersist?.(this, entries, sched.now()) },
        onApplied: (e, env, result) => {
          this.applied = e.index
          for (const c of checkers) c.onApply?.(this, e, sched.now(), env, result)
        },
        onSnapshotInstalled: (snap) => {
          this.applied = Math.max(this.applied, snap.meta.index)
          this.trace(`install snapshot index=${snap.meta.index} term=${snap.meta.term}`)
        },
        onCompacted: (index, keep) => {
          this.compactEvery = this.env.rng.range(8, 60)
          this.trace(`compact index=${index} keep=${keep}`)
          for (const c of checkers) c.onSnapshot?.(this, index, sm.stateHash(), sched.now())
        },
        onReadyDone: (rd) => {
          this.term = core.status().term
          if (rd.committedEntries.length > 0) this.env.afterApply(this, rd)
        },
        afterSend: (rd) => {
          if (!this.env.crashAfterSend(this, rd)) return false
          this.crash('right after sending')
          return true
        }
      }
    })
    this.core = core
    this.forwarder = this.buildForwarder(core, inc)
    this.applied = core.applied()
    this.term = core.status().term
    this.trace(`start inc=${inc} snap=${this.store.snapshot().meta.index} last=${this.store.lastIndex()} term=${this.term}`)
    core.start()
  }

  /** A membership round every `ms` for as long as this life lasts (node/loops.ts in the daemon:
   * one round at a time, the next `ms` after the last one ended). */
  private runRound (ms: number, inc: number, round: () => Promise<void>): void {
    const sched = this.env.sched
    sched.after(ms, () => {
      if (!this.up || this.incarnation !== inc || this.membership === null) return
      sched.promiseWork = true
      round().catch((err: unknown) => { this.trace(`membership round failed: ${String(err)}`) }).finally(() => {
        if (this.up && this.incarnation === inc) this.runRound(ms, inc, round)
      })
    })
  }

  private buildMembership (inc: number): Membership {
    const sched = this.env.sched
    const live = (): boolean => this.up && this.incarnation === inc
    const raft = (): MembershipRaft | null => {
      const core = this.core
      if (core === null || !live()) return null
      return {
        status: () => core.status(),
        leaderId: () => core.leaderId(),
        isLeader: () => core.status().role === 'leader',
        stop: async () => { core.stop(true) },
        campaign: () => { core.campaign() },
        proposeConfChange: async (cc) => await new Promise<void>((resolve, reject) => {
          core.proposeConfChangeWatched(cc, CONF_CHANGE_TIMEOUT_MS, CONF_CHANGE_POLL_MS, (err) => {
            sched.promiseWork = true
            if (err !== null) reject(err); else resolve()
          })
        })
      }
    }
    const traceLine = (line: string): void => { this.env.trace?.(`${this.id} log ${line}`) }
    return new Membership({
      self: () => this.id,
      cfg: { name: this.id, labels: {}, capacity: REPLICA_CAPACITY, autopilot: SIM_AUTOPILOT, ceph: { conf: null } },
      expect: SIM_BOOTSTRAP_EXPECT,
      admins: [],
      sm: this.sm as StateMachine,
      store: this.store,
      raft,
      startRaft: () => { if (live() && this.sm !== null) { this.startCore(this.sm); this.trace('bootstrapped a new cluster') } },
      connectedPeers: () => live() ? this.env.connected(this.id) : [],
      ownAddrs: () => [`/sim/${this.id}`],
      addPeerAddrs: async () => {},
      // Addresses never change here, so a dial at the recorded address is all there is: it takes
      // DIAL_MS, and reaches the member if the link to it is open by then, else it is looked for later.
      reach: async (peer) => {
        await new Promise<void>((resolve) => { sched.after(DIAL_MS, () => { sched.promiseWork = true; resolve() }) })
        const how = live() && this.env.connected(this.id).includes(peer) ? 'connected' : 'unreachable'
        this.trace(`reach ${peer} ${how}`)
        return how
      },
      client: async (peer) => this.membershipClient(peer),
      propose: async (env) => {
        if (!live() || this.forwarder === null) throw new BlixardError('Unavailable', 'the node is shutting down')
        const key = env.key ?? `${this.id}/${inc}/m${this.nextMembershipKey++}`
        const auth: CommandAuth = { signer: this.id, nonce: key, until: Number.MAX_SAFE_INTEGER, sig: UNVERIFIED_SIG }
        return await this.forwarder.propose({ ...env, key, auth: env.auth ?? auth })
      },
      recovery: {
        pending: async () => live() ? this.recoveryNote : null,
        done: async () => { if (live()) this.recoveryNote = null }
      },
      note: (text) => { this.trace(`event ${text}`) },
      log: createLogger({ node: this.id }, { level: 'info', write: traceLine, now: () => new Date(sched.now()) }),
      now: () => sched.now(),
      sleep: async (ms) => await new Promise<void>((resolve) => { sched.after(ms, () => { sched.promiseWork = true; resolve() }) })
    })
  }

  private membershipClient (peer: string): MembershipClient {
    return {
      call: async <M extends MembershipMethod>(method: M, params: ParamsOf<M>, opts?: { timeoutMs?: number }): Promise<ResultOf<M>> => {
        const id = this.nextCall++
        return await this.awaitAnswer(id, peer, { rpc: 'mreq', id, method, params }, opts?.timeoutMs ?? MEMBERSHIP_RPC_TIMEOUT_MS) as ResultOf<M>
      }
    }
  }

  /** Power loss: unsynced writes are gone, in-flight client requests die with the process. */
  crash (why: string): void {
    if (!this.up) return
    this.core?.crash()
    this.store.crash()
    this.core = null
    this.forwarder = null
    this.membership = null
    this.calls.clear() // their answers would reach a process that no longer exists
    this.sm = null
    this.up = false
    this.incarnation++
    this.role = 'down'
    this.trace(`crash (${why})`)
    this.env.onRole(this)
  }

  /** The shell saw every connection to `peer` close (node/ gets libp2p's peer:disconnect). */
  peerLost (peer: string): void {
    if (!this.up || this.core === null) return
    this.core.leaderLost(peer, LEADER_LOST_SLOT_TICKS)
  }

  /** A Raft message arrived from the network: the core's receive hook. False when there was nobody to take it. */
  receive (m: Message): boolean {
    if (!this.up || this.core === null) return false
    this.membership?.heard(m.from)
    return this.core.receive(m, m.from)
  }

  // --- client requests -------------------------------------------------------

  /** A client's write, submitted here and carried by the shipped forwarder: proposed here when
   * leading, else forwarded (batched with the other writes of the same turn) to the leader this
   * replica knows, retried under the same key. A client whose replica crashes hears nothing. */
  write (env: CommandEnvelope, reply: (r: RpcReply) => void): void {
    if (!this.up || this.forwarder === null) return
    const inc = this.incarnation
    const live = (): boolean => this.up && this.incarnation === inc
    this.forwarder.propose({ ...env, key: env.key as string }).then((r) => {
      if (!live()) return
      const at = committedAt.get(r)
      const index = at?.index ?? -1
      const data = at?.data ?? null
      const node = at?.node ?? this.id
      reply(r.ok
        ? { ok: true, view: null, index, data, node, incarnation: inc, applied: index, definite: true }
        : { ok: false, error: r.error, index, data, node, definite: true })
    }, (err: unknown) => {
      if (!live()) return
      const body = toBlixError(err)
      const error: BlixError = { kind: body.kind === 'NotLeader' ? 'NotLeader' : 'Unavailable', message: `${body.kind}: ${body.message}` }
      if (body.leader !== undefined) error.leader = body.leader
      reply({ ok: false, error, index: -1, data: null, node: this.id, definite: false })
    })
    this.env.sched.promiseWork = true
  }

  /** core.propose, recording where the result committed (see committedAt). */
  private proposeHere (core: RaftNode, env: CommandEnvelope & { key: string }, done: (r: ApplyResult | null, err: BlixardError | null) => void): void {
    core.propose(env, (o) => {
      this.env.sched.promiseWork = true
      if (!o.ok) { done(null, o.error); return }
      committedAt.set(o.result, { index: o.index, data: o.data, node: this.id })
      done(o.result, null)
    })
  }

  private buildForwarder (core: RaftNode, inc: number): Forwarder<string> {
    const sched = this.env.sched
    const live = (): boolean => this.up && this.incarnation === inc
    return new Forwarder<string>({
      isLeader: () => live() && this.role === 'leader',
      leaderId: () => live() ? core.status().lead : null,
      // the simulated clients are all authorised; authority is tested in test/node/
      refusal: () => null,
      proposeLocal: async (env) => await new Promise<ApplyResult>((resolve, reject) => {
        this.proposeHere(core, { ...env, key: env.key as string }, (r, err) => { if (r !== null) resolve(r); else reject(err) })
      }),
      connect: async (leader) => leader,
      callOne: async (leader, env, timeoutMs) => await this.call(leader, [env], false, timeoutMs) as ApplyResult,
      callMany: async (leader, envs, timeoutMs) => await this.call(leader, envs, true, timeoutMs),
      dropConnection: () => {},
      defer: (run) => { sched.after(0, run) },
      sleep: async (ms) => await new Promise<void>((resolve) => { sched.after(ms, () => { sched.promiseWork = true; resolve() }) }),
      stopping: () => !live()
    }, this.forwarderBugs)
  }

  /** One forwarded call to `leader`: a request frame out, its answer (or the timeout) back. */
  private async call (leader: string, envs: CommandEnvelope[], many: boolean, timeoutMs: number): Promise<unknown> {
    const id = this.nextCall++
    return await this.awaitAnswer(id, leader, { rpc: 'req', id, many, envs }, timeoutMs)
  }

  private async awaitAnswer (id: number, to: string, frame: RpcFrame, timeoutMs: number): Promise<unknown> {
    const sched = this.env.sched
    return await new Promise<unknown>((resolve, reject) => {
      this.calls.set(id, { resolve, reject })
      this.env.net.send(this.id, to, frame)
      sched.after(timeoutMs, () => {
        if (!this.calls.delete(id)) return
        sched.promiseWork = true
        reject(new BlixardError('Timeout', `no answer from ${to} within ${timeoutMs} ms`))
      })
    })
  }

  /** An RPC frame arrived: a forwarded write to serve (as node/api.ts's internal.propose and
   * internal.proposeMany do) or the answer to one of ours. */
  receiveRpc (from: string, f: RpcFrame): boolean {
    if (!this.up || this.core === null) return false
    if (f.rpc === 'res') {
      const c = this.calls.get(f.id)
      if (c === undefined) return true // late, duplicated, or timed out already
      this.calls.delete(f.id)
      this.env.sched.promiseWork = true
      if (f.ok) c.resolve(f.value)
      else c.reject(BlixardError.from(f.error))
      return true
    }
    const core = this.core
    const inc = this.incarnation
    const answer = (res: RpcFrame): void => { if (this.up && this.incarnation === inc) this.env.net.send(this.id, from, res) }
    if (f.rpc === 'mreq') {
      this.serveMembership(from, f, answer)
      return true
    }
    if (this.role !== 'leader') {
      const leader = core.status().lead
      answer({ rpc: 'res', id: f.id, ok: false, error: new BlixardError('NotLeader', 'this node is not the leader', leader ?? undefined).toJSON() })
      return true
    }
    if (!f.many) {
      this.proposeHere(core, { ...f.envs[0], key: f.envs[0].key as string }, (r, err) => {
        answer(r !== null ? { rpc: 'res', id: f.id, ok: true, value: r } : { rpc: 'res', id: f.id, ok: false, error: toBlixError(err) })
      })
      return true
    }
    // all of them into the same Raft round; the answer goes once every one has its own
    const results: ForwardedResult[] = new Array(f.envs.length)
    let left = f.envs.length
    for (const [i, env] of f.envs.entries()) {
      this.proposeHere(core, { ...env, key: env.key as string }, (r, err) => {
        results[i] = r !== null ? { ok: true, result: r } : { ok: false, error: toBlixError(err) }
        if (--left === 0) answer({ rpc: 'res', id: f.id, ok: true, value: results })
      })
    }
    return true
  }

  /** cluster.hello, cluster.join and internal.admit, as node/api.ts hands them to membership. */
  private serveMembership (from: string, f: Extract<RpcFrame, { rpc: 'mreq' }>, answer: (res: RpcFrame) => void): void {
    const m = this.membership
    if (m === null) return
    const params = f.params as { addrs?: string[], peer?: string }
    const work: Promise<unknown> = f.method === 'cluster.hello'
      ? Promise.resolve(m.hello())
      : f.method === 'cluster.join'
        ? m.admit(from, params.addrs ?? [])
        : m.admit(params.peer ?? '', params.addrs ?? [])
    this.env.sched.promiseWork = true
    work.then((value) => { answer({ rpc: 'res', id: f.id, ok: true, value }) }, (err: unknown) => { answer({ rpc: 'res', id: f.id, ok: false, error: toBlixError(err) }) })
      .finally(() => { this.env.sched.promiseWork = true })
  }

  read (vm: string, reply: (r: RpcReply) => void): void {
    if (!this.up || this.core === null) return
    const inc = this.incarnation
    this.core.readIndex(null, (err, index) => {
      if (err !== null) { reply(this.refusal(err)); return }
      const sm = this.sm as StateMachine
      reply({ ok: true, view: viewOf(sm, vm), index, data: null, node: this.id, incarnation: inc, applied: this.applied })
    })
  }

  /** A local read, possibly stale: whatever this replica has applied. */
  staleRead (vm: string, reply: (r: RpcReply) => void): void {
    if (!this.up || this.sm === null) return
    reply({ ok: true, view: viewOf(this.sm, vm), index: -1, data: null, node: this.id, incarnation: this.incarnation, applied: this.applied })
  }

  private refusal (err: BlixardError): RpcReply {
    const kind = err.kind === 'NotLeader' ? 'NotLeader' : 'Unavailable'
    const error: BlixError = { kind, message: err.message }
    if (err.leader !== undefined) error.leader = err.leader
    return { ok: false, error, index: -1, data: null, node: this.id }
  }

  /** The transport: every message onto the simulated network; a snapshot's sender hears whether it arrived. */
  private send (messages: readonly Message[], inc: number): void {
    for (const m of messages) {
      if (m.type === 'MsgSnap') {
        this.trace(`send MsgSnap to ${m.to} index=${m.snapshot?.meta.index ?? -1}`)
        this.env.net.send(m.from, m.to, m, (delivered) => {
          if (!this.up || this.incarnation !== inc || this.core === null) return
          this.core.reportSnapshot(m.to, delivered)
        })
      } else {
        this.env.net.send(m.from, m.to, m)
      }
    }
  }
}
