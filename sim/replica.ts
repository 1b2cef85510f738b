// One simulated server: the node core that ships (node/core/raft-node.ts, the same Ready loop
// as node/raft-driver.ts: send-first when leading, deferred commit-only HardState) wired to a
// MemoryLogStore, a StateMachine over a MemoryKv, the simulated network and the virtual clock.
// A crash drops the core and the state machine and reverts the store to its last sync; a
// restart rebuilds the state machine from the store's snapshot and lets the core replay the
// committed log after it.
import type { RaftBug, RaftStatus } from '../protocols/raft/index.ts'
import type { Message, Ready } from '../protocols/raft/types.ts'
import type { BlixError, CommandEnvelope } from '../protocols/commands.ts'
import type { BlixardError } from '../protocols/errors.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../storage/state-machine.ts'
import { MemoryKv } from '../storage/memory-kv.ts'
import { RaftNode } from '../node/core/raft-node.ts'
import { admitRaftMessage } from '../node/core/raft-ingress.ts'
import { raftIngressContext } from '../node/core/raft-ingress-context.ts'
import { LOOP_BUGS } from '../node/core/raft-loop.ts'
import type { LoopBug } from '../node/core/raft-loop.ts'
import { MemoryLogStore } from './memory-log-store.ts'
import type { Prng } from './prng.ts'
import type { Scheduler } from './scheduler.ts'
import type { Network } from './network.ts'
import type { Checker } from './checkers/checker.ts'
import type { VmView } from './history.ts'

/** Raft timing, in ticks of TICK_MS virtual ms. */
export const TICK_MS = 10
export const ELECTION_TICK = 10
export const HEARTBEAT_TICK = 2

/** Ready rounds one drive() may take before the run is declared stuck. */
const MAX_READY_ROUNDS = 10_000

/** Planted bugs: the Raft core's (protocols/raft), the shipped loop's (node/core/raft-loop.ts:
 * 'ack-before-sync', 'vote-before-persist'), and the log store's 'conf-not-rolled-back', which
 * reads an uncommitted (later truncated) conf entry into the configuration after a restart. */
/** no-self-fence: sim/ha.ts's hosts never stop their guests when their lease runs out */
export type SimBug = RaftBug | LoopBug | 'conf-not-rolled-back' | 'no-self-fence'

/** How many ticks a replica waits, after its leader's connections all closed, before it campaigns. */
const LEADER_LOST_SLOT_TICKS = 3

export type RpcReply =
  | { ok: true, view: VmView | null, index: number, data: Uint8Array | null, node: string, incarnation: number, applied: number }
  | { ok: false, error: BlixError, index: number, data: Uint8Array | null, node: string }

/** What a seed sets for every replica alike (the cluster passes it through unchanged). */
export interface ReplicaTuning {
  sched: Scheduler
  rng: Prng
  bugs: ReadonlySet<SimBug>
  checkers: readonly Checker[]
  preVote: boolean
  checkQuorum: boolean
  /** per-seed replication tuning: small messages and windows stretch replication over many rounds */
  maxSizePerMsg: number
  maxInflightMsgs: number
  trace: ((line: string) => void) | null
}

export interface ReplicaEnv extends ReplicaTuning {
  net: Network<Message>
  /** Asked right after a Ready's messages went out: crash now? (power loss between send and the next step) */
  crashAfterSend: (r: Replica, rd: Ready) => boolean
  /** Told after a Ready's committed entries were applied (a fault may strike right then). */
  afterApply: (r: Replica, rd: Ready) => void
  /** Role changes, for the cluster's bookkeeping. */
  onRole: (r: Replica) => void
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

  constructor (id: string, store: MemoryLogStore, private readonly env: ReplicaEnv) {
    this.id = id
    this.store = store
    this.compactEvery = env.rng.range(8, 60)
    const raftBugs = new Set<RaftBug>()
    const loopBugs = new Set<LoopBug>()
    for (const b of env.bugs) {
      if ((LOOP_BUGS as readonly string[]).includes(b)) loopBugs.add(b as LoopBug)
      else if (b !== 'conf-not-rolled-back' && b !== 'no-self-fence') raftBugs.add(b as RaftBug)
    }
    this.raftBugs = raftBugs
    this.loopBugs = loopBugs
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
    const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
    this.sm = sm
    this.role = 'follower'
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
      // The simulated clients keep their own deadlines and retry with the same key.
      proposalTimeoutMs: null,
      compaction: {
        due: (since) => since >= this.compactEvery,
        keep: () => this.env.rng.int(4)
      },
      applyEachEntryAlone: true,
      // the daemon's admission filter (who may speak Raft, bounds, payload checks), so the seeds
      // say whether it ever drops a message an honest member needs
      admit: (m) => { const v = admitRaftMessage(m.from, m, raftIngressContext(this.id, core)); return v.ok ? null : v.reason },
      readiesPerDrain: MAX_READY_ROUNDS,
      raftBugs: this.raftBugs,
      loopBugs: this.loopBugs,
      hooks: {
        onRole: (role, _leader, term) => {
          this.term = term
          if (this.role === role) return
          this.role = role
          this.trace(`role ${role} term=${term}`)
          if (role === 'leader') for (const c of checkers) c.onLeader?.(this, term, sched.now())
          this.env.onRole(this)
        },
        onPersisted: (entries) => { for (const c of checkers) c.onPersist?.(this, entries, sched.now()) },
        onApplied: (e) => {
          this.applied = e.index
          for (const c of checkers) c.onApply?.(this, e, sched.now())
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
    this.applied = core.applied()
    this.term = core.status().term
    this.trace(`start inc=${inc} snap=${this.store.snapshot().meta.index} last=${this.store.lastIndex()} term=${this.term}`)
    core.start()
  }

  /** Power loss: unsynced writes are gone, in-flight client requests die with the process. */
  crash (why: string): void {
    if (!this.up) return
    this.core?.crash()
    this.store.crash()
    this.core = null
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
    return this.core.receive(m, m.from)
  }

  // --- client requests -------------------------------------------------------

  write (env: CommandEnvelope, reply: (r: RpcReply) => void): void {
    if (!this.up || this.core === null) return
    const inc = this.incarnation
    this.core.propose({ ...env, key: env.key as string }, (o) => {
      if (!o.ok) { reply(this.refusal(o.error)); return }
      const r = o.result
      reply(r.ok
        ? { ok: true, view: null, index: o.index, data: o.data, node: this.id, incarnation: inc, applied: o.index }
        : { ok: false, error: r.error, index: o.index, data: o.data, node: this.id })
    })
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
