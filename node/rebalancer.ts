// The leader's rebalancer: from committed reservations plus the freshest gossiped load,
// the policy of placement/plans/rebalance-policy.ts (modes, hysteresis, budget, cooldown, hot
// targets) picks live migrations that lower the imbalance, and the leader commits each as
// RebalanceVm (its own signed decision; apply re-checks the target's room and the VM's cooldown:
// storage/apply-sched.ts). The migration machinery (node/migration/) then moves the guest without
// a reboot. By default (mode join) it only fills a node that joins or becomes ready empty while
// the others are loaded, woken by that command's apply as well as by its timer; skew (evening out
// any imbalance) is the operator's choice, and off stops it (config rebalance.mode).
import type { VmRecord } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { LoadHint } from '../placement/types.ts'
import type { PlacementConfigInput } from '../placement/config.ts'
import { clusterFromModel } from '../placement/from-model.ts'
import { DEFAULT_REBALANCE_POLICY, FRESH_MEMORY, planRebalanceStep } from '../placement/plans/rebalance-policy.ts'
import type { RebalanceMemory, RebalanceMode, RebalancePolicy, RebalanceStep } from '../placement/plans/rebalance-policy.ts'
import { cannotMigrateLive } from '../protocols/migration-phases.ts'
import { activeMigration } from '../storage/migration-guard.ts'
import { REBALANCE_COOLDOWN_MS, lastMovedAt } from '../storage/apply-sched.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { Logger } from './log.ts'
import { realEvery } from './scheduler.ts'
import type { Every, LoadBoard } from './scheduler.ts'

/** The leader's policy: the state machine's cooldown, so the plan never proposes what apply refuses. */
export const LEADER_REBALANCE_POLICY: RebalancePolicy = { ...DEFAULT_REBALANCE_POLICY, cooldownMs: REBALANCE_COOLDOWN_MS }
/** How often the leader looks: a plan is cheap, a move takes seconds to minutes. */
export const REBALANCE_EVERY_MS = 15_000
/** A node that joined or became ready is a candidate for filling this long (a follower keeps the
 * news, so a leader elected soon after the join still fills it). */
export const NOTED_KEEP_MS = 10 * 60_000

/** A rebalancer that moves: join or skew (mode off builds none). */
export type ActiveRebalanceMode = Exclude<RebalanceMode, 'off'>

export interface RebalancerDeps {
  sm: StateMachine
  load: LoadBoard
  isLeader: () => boolean
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  now?: () => number
  policy?: RebalancePolicy
  /** placement settings of the plan (rebalancePlacementConfig) */
  config?: PlacementConfigInput
  /** default join */
  mode?: ActiveRebalanceMode
}

/** May this VM move live now? Running under QEMU on its node, not migrating. */
function movable (sm: StateMachine, vm: VmRecord): boolean {
  return vm.status.phase === 'running' && vm.status.node === vm.assignedNode && activeMigration(vm) == null && cannotMigrateLive(vm, (id) => sm.getNode(id)) == null
}

/** The plan on the replica now (what `rebalance --dry-run` shows, and what a pass proposes).
 * `noted`: nodes that joined or became ready since the last pass (join mode). */
export function rebalancePlan (sm: StateMachine, hints: Map<string, LoadHint>, now: number, memory: RebalanceMemory, policy: RebalancePolicy = LEADER_REBALANCE_POLICY, config: PlacementConfigInput = {}, mode: ActiveRebalanceMode = 'skew', noted: readonly string[] = []): RebalanceStep {
  const vms = sm.listVms()
  const cluster = clusterFromModel(sm.listNodes(), vms, hints)
  const lastMoved = new Map<string, number>()
  for (const v of vms) {
    const t = lastMovedAt(v) // live or cold
    if (t !== null) lastMoved.set(v.id, t)
  }
  // every migration in flight counts against the budget: the rebalancer's and anyone else's
  const inFlight = vms.filter((v) => activeMigration(v) != null).length
  return planRebalanceStep({ cluster, movable: new Set(vms.filter((v) => movable(sm, v)).map((v) => v.id)), lastMoved, inFlight, now, memory, mode, noted }, policy, config)
}

/** One pass on the leader: plan, then propose each move; returns the step and how many were committed. */
export async function rebalancePass (d: RebalancerDeps, memory: RebalanceMemory, noted: readonly string[] = []): Promise<{ step: RebalanceStep, started: number }> {
  const now = (d.now ?? Date.now)()
  const step = rebalancePlan(d.sm, d.load.hints(), now, memory, d.policy, d.config, d.mode ?? 'join', noted)
  let started = 0
  for (const m of step.moves) {
    try {
      const reason = `imbalance ${step.before.toFixed(4)} → ${(step.before - m.gain).toFixed(4)}${step.memory.filling.includes(m.to) ? ', filling a new node' : ''}`
      const r = await d.propose({ cmd: { type: 'RebalanceVm', vm: m.vmId, target: m.to, reason }, at: now })
      if (r.ok) started++
      else d.log.warn('rebalancing move refused', { vm: m.vmId, node: m.to, error: r.error })
    } catch (err) {
      d.log.debug('rebalancing move not committed', { vm: m.vmId, err })
    }
  }
  return { step, started }
}

export class Rebalancer {
  private timer: (() => void) | null = null
  private running = false
  private again = false
  /** soft state: a new leader starts inactive with an empty hour (apply's cooldown still holds) */
  private memory: RebalanceMemory = FRESH_MEMORY
  /** nodes that joined or became ready, and when this replica applied that (every replica keeps them) */
  private readonly noted = new Map<string, number>()
  /** passes that planned at least one move, and moves committed (the simulator's stats) */
  readonly stats = { passesWithMoves: 0, started: 0 }
  constructor (private readonly d: RebalancerDeps, private readonly everyMs = REBALANCE_EVERY_MS, private readonly every: Every = realEvery) {}

  start (): void {
    this.timer = this.every(this.everyMs, () => { void this.tick() })
  }

  /** A node joined or became ready (its command applied here): a candidate to fill, at once. */
  nodeReady (nodeId: string): void {
    this.noted.set(nodeId, (this.d.now ?? Date.now)())
    void this.tick()
  }

  /** One round of the loop (what the timer runs); a call during a round runs another after it. */
  async tick (): Promise<void> {
    if (!this.d.isLeader()) {
      this.memory = FRESH_MEMORY
      const now = (this.d.now ?? Date.now)()
      for (const [id, at] of this.noted) if (now - at > NOTED_KEEP_MS) this.noted.delete(id)
      return
    }
    if (this.running) { this.again = true; return }
    this.running = true
    try {
      do {
        this.again = false
        const noted = [...this.noted.keys()]
        const { step, started } = await rebalancePass(this.d, this.memory, noted)
        // heard of: filling now, or not to be filled (not empty, the others not loaded)
        for (const id of noted) this.noted.delete(id)
        this.memory = step.memory
        if (step.moves.length > 0) {
          this.stats.passesWithMoves++
          this.stats.started += started
          this.d.log.info('rebalancing', { why: step.why, started })
        }
      } while (this.again && this.d.isLeader())
    } catch (err) {
      this.d.log.warn('rebalancer pass failed', { err })
    } finally { this.running = false }
  }

  stop (): void { this.timer?.(); this.timer = null }
}

/** The placement settings of the rebalancer's plans, from the node's config (rebalance.hotPct). */
export function rebalancePlacementConfig (cfg: { hotPct: number }): PlacementConfigInput {
  return { hotPct: cfg.hotPct }
}
