// One simulated run from one seed: build the cluster, run the workload under
// the nemesis for `steps` ticks, heal everything, require progress (liveness),
// let the cluster settle, then ask every checker for its verdict.
import type { StateMachine } from '../storage/state-machine.ts'
import { Prng } from './prng.ts'
import { EventQueue } from './event-queue.ts'
import { Cluster } from './cluster.ts'
import { History } from './history.ts'
import { Workload, OP_DEADLINE_MS } from './workload.ts'
import { Nemesis } from './nemesis.ts'
import { TICK_MS } from './replica.ts'
import type { SimBug } from './replica.ts'
import type { Checker, Violation } from './checkers/checker.ts'
import { ElectionSafety } from './checkers/election-safety.ts'
import { ConfigSafety } from './checkers/config-safety.ts'
import { LogMatching } from './checkers/log-matching.ts'
import { LeaderCompleteness } from './checkers/leader-completeness.ts'
import { StateMachineSafety } from './checkers/state-machine-safety.ts'
import { Durability } from './checkers/durability.ts'
import { Linearizability } from './checkers/linearizability.ts'
import { StaleReads } from './checkers/stale-reads.ts'
import { ReplicasConverge } from './checkers/replicas-converge.ts'
import { Liveness, LIVENESS_BOUND_MS } from './checkers/liveness.ts'
import { PlacementInvariants } from './checkers/placement.ts'
import { VmScheduler, HOSTS } from './vm-scheduler.ts'
import { HaSim } from './ha.ts'
import { NeverTwice } from './checkers/never-twice.ts'
import { SchedulingInvariants } from './checkers/scheduling.ts'
import { SchedModel, SIM_REBALANCE_EVERY_MS } from './sched-model.ts'
import { MoveInvariants } from './checkers/moves.ts'
import { RebalanceConverges } from './checkers/rebalance-converges.ts'
import { PREEMPT_BUGS } from '../placement/plans/preempt.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'

export const BUGS: readonly SimBug[] = ['vote-ignores-term', 'commit-old-term', 'stale-read-index', 'ack-before-sync', 'vote-before-persist', 'conf-not-rolled-back', 'no-self-fence', 'retry-new-key', 'preempt-equal', 'relay-stuck']
export const DEFAULT_STEPS = 600
/** the admin an operator recovers in the runs that note a recovery (an Ed25519 peer id, as
 * RecoverAdmin requires) */
export const RECOVERED_ADMIN = '12D3KooWRawPbxPtP1eZaJpumGnyWX2DcUyd3RQnydr3eAto4Az7'
/** virtual ms between log-matching sweeps */
const CHECKPOINT_MS = 500
/** virtual ms, after the liveness phase, for the last operations to finish and replicas to catch up */
const SETTLE_MS = OP_DEADLINE_MS + 500
/** rebalancer passes after the heal before the scheduler's loops stop (rebalance-converges) */
export const CONVERGE_ROUNDS = 20

export interface RunOptions {
  seed: number
  nodes: 3 | 5
  steps: number
  bug: SimBug | null
  trace: boolean
  /** false: membership changes one voter at a time only (replays a seed's trajectory from before
   * joint changes existed, for the named regression seeds). Default true. */
  jointChanges?: boolean
  /** false: no node liveness leases, fencing or rescheduling (sim/ha.ts), for seeds whose trajectory
   * was found before HA was in the model. Default true. */
  ha?: boolean
  /** false: no shipped scheduler, preemption, rebalancing or tenant (sim/sched-model.ts), for seeds
   * whose trajectory was found before these were in the model. Default true. */
  sched?: boolean
}

export interface RunStats {
  events: number
  messages: number
  ops: number
  opsOk: number
  opsUnknown: number
  maxTerm: number
  commit: number
  crashes: number
  partitions: number
  membership: number
  /** membership steps that went through a joint configuration */
  joint: number
  replicas: number
  inconclusive: number
  schedulerProposals: number
  /** HA: guests stopped by a lost lease, nodes marked down, daemons paused, guests started */
  haFences: number
  haMarksDown: number
  haPauses: number
  haStarts: number
  /** preemptions and rebalancing moves applied, tenant operations proposed */
  preemptions: number
  rebalanceMoves: number
  tenantOps: number
  /** the rebalancer's mode in this run; drains and undrains by the admin; moved VMs judged at the end */
  rebalanceMode: string
  drains: number
  undrains: number
  movesJudged: number
}

export interface RunResult {
  seed: number
  nodes: number
  steps: number
  bug: SimBug | null
  violations: Violation[]
  trace: string[]
  stats: RunStats
}

export async function runSeed (o: RunOptions): Promise<RunResult> {
  const lines: string[] = []
  const sched = new EventQueue()
  const trace = o.trace ? (line: string) => { lines.push(`${String(sched.now()).padStart(7, ' ')} ${line}`) } : null
  const rng = new Prng(o.seed)
  const config = rng.fork('config')
  const preVote = config.chance(0.6)
  const checkQuorum = config.chance(0.6)
  // One entry per message in some runs: a new leader then re-replicates old-term entries in rounds
  // of their own, which is when counting replicas of an old-term entry would commit it (Figure 8).
  const maxSizePerMsg = config.pick([1, 1, 512, 64 * 1024])
  const maxInflightMsgs = config.pick([1, 4, 64])
  // drawn last, so the draws above stay what they were for every seed
  const relayLearners = config.chance(0.7)
  const bugs = new Set<SimBug>(o.bug === null ? [] : [o.bug])

  const linearizability = new Linearizability()
  const converge = new ReplicasConverge()
  let leaderAt: number | null = null
  // eslint-disable-next-line prefer-const
  let workload: Workload
  const checkers: Checker[] = [
    new ElectionSafety(), new ConfigSafety(), new LogMatching(), new LeaderCompleteness(), new StateMachineSafety(),
    new Durability(), linearizability, new StaleReads(),
    new Liveness(() => ({ leaderAt, writeAt: workload.completedAfter })),
    new PlacementInvariants(), converge
  ]
  const scheduling = new SchedulingInvariants()
  if (o.sched !== false) checkers.push(scheduling)
  const neverTwice = new NeverTwice()
  if (o.ha !== false) checkers.push(neverTwice)
  const cluster = new Cluster({ sched, rng, nodes: o.nodes, bugs, checkers, preVote, checkQuorum, maxSizePerMsg, maxInflightMsgs, relayLearners, trace })
  const history = new History()
  workload = new Workload({ sched, rng: rng.fork('workload'), cluster, history, clients: 4, vms: 4, trace })
  const vmScheduler = new VmScheduler(sched, cluster, trace, o.sched === false)
  // forked after everything else, so HA draws change no other stream
  // moves are judged against the hosts' guests (sim/ha.ts) when HA is in the run
  let moves: MoveInvariants | null = null
  const ha = o.ha === false ? null : new HaSim({ sched, rng: rng.fork('ha'), cluster, checker: neverTwice, noSelfFence: bugs.has('no-self-fence'), trace, onStart: (h, g, vm, now) => { moves?.started(h, g, vm, now) } })
  // the scheduler and rebalancer (shipped loops, a tenant, the hosts' agents); forked last, like HA
  // wired to the rebalance-converges checker once it exists
  let onRebalancePass: ((sm: StateMachine, now: number) => void) | undefined
  const schedModel = o.sched === false ? null : new SchedModel({ sched, rng: rng.fork('sched'), cluster, bugs: new Set([...bugs].filter((b): b is PreemptBug => (PREEMPT_BUGS as readonly string[]).includes(b))), ha, trace, onRebalancePass: (sm, now) => { onRebalancePass?.(sm, now) } })
  moves = new MoveInvariants(ha === null ? null : { hosts: Array.from({ length: HOSTS }, (_, i) => `host${i + 1}`), runs: (h, g) => ha.runs(h, g), handedOver: (h, g) => ha.handedOver.has(`${g}>${h}`) })
  if (schedModel !== null) {
    // the model's rebalancers hear of applied commands as the daemon's do (node/apply-effects.ts)
    checkers.push({ name: 'sched-effects', violations: [], onApply: (r, _e, _now, env, result) => { schedModel.applied(r, env, result) } })
    const converges = new RebalanceConverges(CONVERGE_ROUNDS, schedModel.mode === 'skew')
    onRebalancePass = converges.onRebalancePass
    checkers.push(moves, converges)
  }
  // some runs note an admin recovery on every member mid-faults (membership's voteRecovery round);
  // forked, so its draws change no other stream
  const recovery = rng.fork('recovery')
  const recoveryAt = recovery.chance(0.5) ? recovery.range(0, o.steps * TICK_MS) : null
  const nemesis = new Nemesis({ sched, rng: rng.fork('nemesis'), jointRng: rng.fork('nemesis-joint'), jointChanges: o.jointChanges !== false, cluster, voters: o.nodes, trace })

  const violations: Violation[] = []
  let healedAt = -1
  try {
  trace?.(`seed ${o.seed} nodes ${o.nodes} steps ${o.steps} bug ${o.bug ?? 'none'} preVote ${preVote} checkQuorum ${checkQuorum} maxSizePerMsg ${maxSizePerMsg} maxInflightMsgs ${maxInflightMsgs} relayLearners ${relayLearners}`)
  cluster.start()
  workload.start()
  vmScheduler.start()
  ha?.start()
  schedModel?.start()
  nemesis.start()
  if (recoveryAt !== null) sched.after(recoveryAt, () => { cluster.noteRecovery(RECOVERED_ADMIN) })
  const faultEnd = o.steps * TICK_MS
  for (let t = CHECKPOINT_MS; t <= faultEnd; t += CHECKPOINT_MS) {
    await sched.runUntilSettled(t)
    for (const c of checkers) c.onCheckpoint?.(cluster, t)
  }
  await sched.runUntilSettled(faultEnd)

  // Heal: every member up, every link open, no more faults.
  nemesis.stop()
  ha?.stopFaults()
  schedModel?.stopTenant()
  nemesis.retireRemoved()
  cluster.healAll()
  healedAt = sched.now()
  trace?.('heal all: faults end')
  workload.watchFrom(healedAt)
  const liveEnd = healedAt + LIVENESS_BOUND_MS
  while (sched.now() < liveEnd && (leaderAt === null || workload.completedAfter === null)) {
    await sched.runUntilSettled(sched.now() + 20)
    if (leaderAt === null && cluster.leader() !== null) leaderAt = sched.now()
  }
  workload.stop()
  vmScheduler.stop()
  // the rebalancer's rounds on a cluster nothing else changes (rebalance-converges)
  if (schedModel !== null) await sched.runUntilSettled(sched.now() + CONVERGE_ROUNDS * SIM_REBALANCE_EVERY_MS)
  schedModel?.stop()
  ha?.stop()
  converge.quiet(cluster, sched.now())
  await sched.runUntilSettled(sched.now() + SETTLE_MS)
  for (const c of checkers) c.finish?.({ cluster, history, now: sched.now(), healedAt })
  } catch (err) {
    // The code under test threw: that is a failure of this seed, replayable like any other.
    const e = err instanceof Error ? err : new Error(String(err))
    const where = (e.stack ?? '').split('\n').slice(1, 6).map(l => l.trim().replace(/\(?(file:\/\/)?\/[^ ()]*\/(sim|protocols|storage|placement|node_modules)\//, '$2/').replace(/\)$/, '')).join(' < ')
    violations.push({ checker: 'exception', at: sched.now(), message: `${e.name}: ${e.message} ${where}` })
  }
  for (const c of checkers) violations.push(...c.violations)
  let maxTerm = 0
  let commit = 0
  for (const r of cluster.replicas) {
    maxTerm = Math.max(maxTerm, r.term)
    commit = Math.max(commit, r.applied)
  }
  const stats: RunStats = {
    events: sched.executed,
    messages: cluster.net.stats.sent,
    ops: history.ops.length,
    opsOk: history.ops.filter(op => op.output !== null).length,
    opsUnknown: history.ops.filter(op => op.output === null).length,
    maxTerm,
    commit,
    crashes: nemesis.stats.crashes,
    partitions: nemesis.stats.partitions,
    membership: nemesis.stats.membership,
    joint: nemesis.stats.joint,
    replicas: cluster.replicas.length,
    inconclusive: linearizability.inconclusive,
    schedulerProposals: vmScheduler.proposals,
    haFences: ha?.stats.fences ?? 0,
    haMarksDown: ha?.stats.marksDown ?? 0,
    haPauses: ha?.stats.pauses ?? 0,
    haStarts: ha?.stats.starts ?? 0,
    preemptions: scheduling.stats.preemptions,
    rebalanceMoves: scheduling.stats.rebalanceMoves,
    tenantOps: schedModel?.stats.tenantOps ?? 0,
    rebalanceMode: schedModel?.mode ?? 'none',
    drains: schedModel?.stats.drains ?? 0,
    undrains: schedModel?.stats.undrains ?? 0,
    movesJudged: moves.judged
  }
  for (const v of violations) trace?.(`VIOLATION ${v.checker} at ${v.at}: ${v.message}`)
  trace?.(`stats ${JSON.stringify(stats)}`)
  return { seed: o.seed, nodes: o.nodes, steps: o.steps, bug: o.bug, violations, trace: lines, stats }
}

/** The command that replays one seed exactly. */
export function replayCommand (r: { seed: number, nodes: number, steps: number, bug: SimBug | null }): string {
  return `npm run sim -- --seed ${r.seed} --nodes ${r.nodes} --steps ${r.steps}${r.bug !== null ? ' --bug ' + r.bug : ''} --trace`
}
