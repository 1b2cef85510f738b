// The scheduler and rebalancer in the simulator, with the code the daemon runs: on every replica, the
// shipped Scheduler loop (node/scheduler.ts: placement and priority preemption) and the shipped
// Rebalancer loop (node/rebalancer.ts: hysteresis, budget, cooldown), each acting only while its
// replica leads, driven by the virtual clock and proposing through its replica's core. What is
// simulated is around them, as sim/ha.ts does for HA:
// - an admin who sets project quotas, and now and then drains a host (its VMs leave it, running
//   ones live) and sets it ready again (an empty node: the join mode's event), and a tenant who
//   creates, stops and deletes VMs of several priorities (some not preemptible) in those
//   projects, big enough that the hosts run full;
// - the rebalancer's mode, drawn per seed: join (the default: fill a node set ready empty, woken by
//   the apply of that command on each replica, through node/apply-effects.ts as in the daemon) or
//   skew (even out any imbalance);
// - each host's agent, which reports its VMs running (so they may move live) and reports its part
//   of each live migration (target-ready, source-completed, target-running), over the simulated
//   network to the leader.
// Only this model's VMs (p1..) are reported running: the workload's VMs (vm1..) never migrate, so
// a live move never refuses a client's write (refuseWhileMigrating), which the linearizability
// model does not know about. They are still placed by the shipped scheduler and may be preempted.
import type { Command, CommandEnvelope, ApplyResult } from '../protocols/commands.ts'
import type { VmRecord } from '../protocols/model.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { BlixardError } from '../protocols/errors.ts'
import { Scheduler } from '../node/scheduler.ts'
import type { Every, SchedulerDeps } from '../node/scheduler.ts'
import { LEADER_REBALANCE_POLICY, Rebalancer } from '../node/rebalancer.ts'
import type { ActiveRebalanceMode, RebalancerDeps } from '../node/rebalancer.ts'
import { effectsOf } from '../node/apply-effects.ts'
import { activeMigration } from '../storage/migration-guard.ts'
import { createLogger } from '../node/log.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'
import type { Cluster } from './cluster.ts'
import type { EventQueue } from './event-queue.ts'
import type { Prng } from './prng.ts'
import type { Replica } from './replica.ts'
import type { HaSim } from './ha.ts'
import { HOSTS } from './vm-scheduler.ts'
import { vmSpec } from './workload.ts'

/** virtual ms between the shipped scheduler's passes (the daemon's 500 ms, at the simulator's scale) */
export const SIM_SCHEDULE_EVERY_MS = 100
/** virtual ms between rebalancer passes (the daemon's 15 s, scaled) */
export const SIM_REBALANCE_EVERY_MS = 200
/** a proposal of the loops that has no outcome by then is given up (the daemon's proposal timeout) */
const PROPOSE_TIMEOUT_MS = 400
/** virtual ms between rounds of the hosts' agents, and of the tenant */
const AGENT_EVERY_MS = 50
const TENANT_MIN_MS = 60
const TENANT_MAX_MS = 300
/** the tenant's VM ids are p1..pN; projects and their quotas */
export const MODEL_VMS = 8
export const PROJECTS = ['alpha', 'beta'] as const
/** quotas the tenant runs into now and then (a VM is 4–16 vCPUs, 2–12 GiB) */
export const PROJECT_LIMITS = { vcpus: 40, memoryMiB: 24_576, vms: 4 }
/** one way, an agent's report to the leader */
const LINK_MS = 3
/** per tenant round: the admin drains a host (when none drains), or sets the draining one ready */
const DRAIN_CHANCE = 0.06
const UNDRAIN_CHANCE = 0.25

interface Loops { inc: number, scheduler: Scheduler, rebalancer: Rebalancer }

export interface SchedModelOptions {
  sched: EventQueue
  rng: Prng
  cluster: Cluster
  bugs: ReadonlySet<PreemptBug>
  /** the hosts' ground truth (which guests run where), when HA is in the run */
  ha: HaSim | null
  trace: ((line: string) => void) | null
  /** told at the start of every pass of a leader's rebalancer, with the state and time it plans on */
  onRebalancePass?: (sm: StateMachine, now: number) => void
}

export class SchedModel {
  private readonly loops = new Map<string, Loops>()
  private running = false
  private tenantOn = false
  private seq = 0
  readonly stats = { rebalancePasses: 0, rebalanceStarted: 0, tenantOps: 0, drains: 0, undrains: 0 }
  /** the rebalancer's mode in this run (drawn once per seed) */
  readonly mode: ActiveRebalanceMode

  constructor (private readonly o: SchedModelOptions) {
    this.mode = o.rng.chance(0.5) ? 'join' : 'skew'
  }

  /** A command applied on replica `r`: what the daemon's apply effects would tell its rebalancer
   * (a node that joined or was set ready), told to that replica's loop, after the apply returns. */
  applied (r: Replica, env: CommandEnvelope | null | undefined, result: ApplyResult | null | undefined): void {
    if (env == null || result == null) return
    const node = effectsOf(r.id, env, result).nodeReady
    const l = this.loops.get(r.id)
    if (node == null || l === undefined) return
    const inc = l.inc
    this.o.sched.after(0, () => { if (this.loops.get(r.id)?.inc === inc && r.up) l.rebalancer.nodeReady(node) })
  }

  start (): void {
    this.running = true
    this.tenantOn = true
    this.o.sched.after(AGENT_EVERY_MS, () => { this.round() })
    this.o.sched.after(this.o.rng.range(TENANT_MIN_MS, TENANT_MAX_MS), () => { this.tenant() })
  }

  /** No more tenant operations (the heal phase): the loops and agents go on, so moves finish. */
  stopTenant (): void { this.tenantOn = false }

  stop (): void {
    this.running = false
    this.tenantOn = false
    for (const l of this.loops.values()) { l.scheduler.stop(); l.rebalancer.stop() }
    this.loops.clear()
  }

  private trace (line: string): void { this.o.trace?.(`sched ${line}`) }

  /** The virtual clock's periodic loop, as setInterval is in a daemon (stops with the life). */
  private every (live: () => boolean): Every {
    const sched = this.o.sched
    return (ms, run) => {
      let on = true
      const loop = (): void => {
        if (!on || !live() || !this.running) return
        sched.promiseWork = true
        run()
        sched.after(ms, loop)
      }
      sched.after(ms, loop)
      return () => { on = false }
    }
  }

  /** The shipped loops of one replica life: started with the life, dropped with it. */
  private ensureLoops (r: Replica): void {
    const have = this.loops.get(r.id)
    if (have !== undefined && (have.inc !== r.incarnation || !r.up)) {
      have.scheduler.stop(); have.rebalancer.stop()
      this.loops.delete(r.id)
    }
    if (!r.up || r.sm === null || this.loops.has(r.id)) return
    const inc = r.incarnation
    const sm = r.sm
    const live = (): boolean => r.up && r.incarnation === inc
    const sched = this.o.sched
    const propose = async (env: CommandEnvelope): Promise<ApplyResult> => await new Promise<ApplyResult>((resolve, reject) => {
      const core = r.core
      if (!live() || core === null) { reject(new BlixardError('Unavailable', 'replica down')); return }
      let done = false
      sched.after(PROPOSE_TIMEOUT_MS, () => {
        if (done) return
        done = true
        sched.promiseWork = true
        reject(new BlixardError('Unavailable', 'proposal timed out'))
      })
      try {
        core.propose({ ...env, key: `sched/${r.id}/${inc}/${++this.seq}` }, (o) => {
          if (done) return
          done = true
          sched.promiseWork = true
          if (o.ok) resolve(o.result); else reject(o.error)
        })
      } catch (err) { done = true; reject(err) }
    })
    const log = createLogger({ node: r.id }, { level: 'info', write: (line) => { this.o.trace?.(`${r.id} log ${line}`) }, now: () => new Date(sched.now()) })
    const isLeader = (): boolean => live() && r.role === 'leader'
    const now = (): number => sched.now()
    const noLoad = { hints: () => new Map() }
    const sdeps: SchedulerDeps = { sm, load: noLoad, isLeader, propose, log: log.child({ part: 'scheduler' }), now, bugs: this.o.bugs }
    // the rebalancer asks for load hints once a pass, right before it plans on `sm` at `now`
    const passLoad = { hints: () => { this.o.onRebalancePass?.(sm, sched.now()); return new Map() } }
    const rdeps: RebalancerDeps = { sm, load: passLoad, isLeader, propose, log: log.child({ part: 'rebalancer' }), now, policy: LEADER_REBALANCE_POLICY, mode: this.mode }
    const scheduler = new Scheduler(sdeps, SIM_SCHEDULE_EVERY_MS, this.every(live))
    const rebalancer = new Rebalancer(rdeps, SIM_REBALANCE_EVERY_MS, this.every(live))
    scheduler.start()
    rebalancer.start()
    this.loops.set(r.id, { inc, scheduler, rebalancer })
  }

  private round (): void {
    if (!this.running) return
    this.o.sched.after(AGENT_EVERY_MS, () => { this.round() })
    for (const r of this.o.cluster.replicas) this.ensureLoops(r)
    let passes = 0; let started = 0
    for (const l of this.loops.values()) { passes += l.rebalancer.stats.passesWithMoves; started += l.rebalancer.stats.started }
    this.stats.rebalancePasses = Math.max(this.stats.rebalancePasses, passes)
    this.stats.rebalanceStarted = Math.max(this.stats.rebalanceStarted, started)
    const l = this.o.cluster.leader()
    if (l === null || l.sm === null) return
    for (let i = 1; i <= HOSTS; i++) this.agent(`host${i}`, `n${i}`, l)
  }

  /** Host `host`'s agent (its daemon is replica `replica`'s): what it would report to the leader. */
  private agent (host: string, replica: string, l: Replica): void {
    const r = this.o.cluster.replicas.find((x) => x.id === replica)
    if (r === undefined || !r.up || r.sm === null) return
    if (this.o.ha !== null && !this.o.ha.daemonUp(host)) return
    const net = this.o.cluster.net
    if (r.id !== l.id && !net.open(r.id, l.id)) return
    const cmds: Command[] = []
    const at = this.o.sched.now()
    for (const vm of r.sm.listVms()) {
      // any VM taken off this host (the workload's too: they are preempted): released once the
      // host's daemon stopped its guest (node/agent-decide.ts 'release'; storage/release-rules.ts)
      const rel = vm.releasing
      if (rel?.node === host) {
        if (this.o.ha === null || !this.o.ha.runs(host, `${vm.id}@${vm.createdAt}`)) {
          cmds.push({ type: 'ReportVmStatus', reports: [{ id: vm.id, node: host, generation: vm.generation, status: { phase: 'stopped', reason: 'sim agent: guest gone', at }, released: rel.since }] })
        }
        continue
      }
      if (!vm.id.startsWith('p')) continue
      const m = activeMigration(vm)
      if (m !== null) {
        if (m.phase === 'preparing' && m.target === host) cmds.push({ type: 'ReportMigration', vm: vm.id, node: host, started: m.started, event: 'target-ready' })
        if (m.phase === 'transferring' && m.source === host) {
          // the transfer ends here: the guest runs on the target from now on, whatever the report's
          // fate (or it fails, the target holding no lease: nothing is reported, the move stalls)
          if (this.o.ha !== null && !this.o.ha.handOver(`${vm.id}@${vm.createdAt}`, host, m.target)) continue
          cmds.push({ type: 'ReportMigration', vm: vm.id, node: host, started: m.started, event: 'source-completed' })
        }
        if (m.phase === 'switched' && m.target === host) cmds.push({ type: 'ReportMigration', vm: vm.id, node: host, started: m.started, event: 'target-running' })
        continue
      }
      if (vm.assignedNode !== host || vm.desired !== 'running') continue
      if (vm.status.phase === 'running' && vm.status.node === host) continue
      cmds.push({ type: 'ReportVmStatus', reports: [{ id: vm.id, node: host, generation: vm.generation, status: { phase: 'running', reason: 'sim agent: guest up', at } }] })
    }
    if (cmds.length === 0) return
    const inc = l.incarnation
    this.o.sched.after(r.id === l.id ? 0 : LINK_MS, () => {
      if (!l.up || l.incarnation !== inc || l.core === null || l.role !== 'leader') return
      for (const cmd of cmds) {
        try { l.core.proposeUnwatched({ cmd, at }) } catch { return }
      }
    })
  }

  /** The admin and the tenant: quotas first, then creates, stops, starts and deletes of p1..pN. */
  private tenant (): void {
    if (!this.tenantOn) return
    const rng = this.o.rng
    this.o.sched.after(rng.range(TENANT_MIN_MS, TENANT_MAX_MS), () => { this.tenant() })
    const l = this.o.cluster.leader()
    if (l === null || l.sm === null || l.core === null) return
    const sm = l.sm
    const cmds: Command[] = []
    const quotas = sm.listQuotas()
    for (const p of PROJECTS) {
      if (quotas.find((q) => q.project === p)?.limits == null) cmds.push({ type: 'SetQuota', project: p, limits: PROJECT_LIMITS })
    }
    const draining = sm.listNodes().filter((n) => n.state === 'draining')
    if (cmds.length === 0 && draining.length > 0 && rng.chance(UNDRAIN_CHANCE)) {
      cmds.push({ type: 'UpdateNode', id: draining[0].id, state: 'ready' })
      this.stats.undrains++
    } else if (cmds.length === 0 && draining.length === 0 && rng.chance(DRAIN_CHANCE)) {
      // forced: VMs that fit nowhere else stop and wait (the admin's --force)
      cmds.push({ type: 'UpdateNode', id: `host${rng.range(1, HOSTS)}`, state: 'draining', force: true })
      this.stats.drains++
    } else if (cmds.length === 0) {
      const id = `p${rng.range(1, MODEL_VMS)}`
      const vm: VmRecord | undefined = sm.getVm(id)
      if (vm === undefined) {
        const spec = {
          ...vmSpec(id, rng.range(4, 16), 1024 * rng.range(2, 12)),
          priority: rng.range(0, 3),
          project: rng.pick([...PROJECTS]),
          ...(rng.chance(0.2) ? { preemptible: false } : {})
        }
        cmds.push({ type: 'CreateVm', id, spec, desired: 'running' } as Command)
      } else {
        const x = rng.float()
        if (x < 0.3) cmds.push({ type: 'DeleteVm', id })
        else if (x < 0.6) cmds.push({ type: 'SetVmDesiredState', id, desired: vm.desired === 'running' ? 'stopped' : 'running' })
      }
    }
    for (const cmd of cmds) {
      try {
        l.core.proposeUnwatched({ cmd, at: this.o.sched.now() })
        this.stats.tenantOps++
        this.trace(`${l.id} tenant proposes ${cmd.type}${'id' in cmd ? ` ${String(cmd.id)}` : ''}`)
      } catch { return }
    }
  }
}
