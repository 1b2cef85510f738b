// The leader's rebalancer (issue 19): every few seconds, from committed reservations plus the
// freshest gossiped load, the policy of placement/plans/rebalance-policy.ts (hysteresis, budget,
// cooldown, hot targets) picks live migrations that lower the imbalance, and the leader commits
// each as RebalanceVm (its own signed decision; apply re-checks the target's room and the VM's
// cooldown: storage/apply-sched.ts). The migration machinery (node/migration/) then moves the guest
// without a reboot. Off unless BLIXARD_REBALANCE=on: moving guests on its own is a choice the
// operator makes (`blixard rebalance --dry-run` shows what it would do).
import type { VmRecord } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { LoadHint } from '../placement/types.ts'
import type { PlacementConfigInput } from '../placement/config.ts'
import { clusterFromModel } from '../placement/from-model.ts'
import { DEFAULT_REBALANCE_POLICY, FRESH_MEMORY, planRebalanceStep } from '../placement/plans/rebalance-policy.ts'
import type { RebalanceMemory, RebalancePolicy, RebalanceStep } from '../placement/plans/rebalance-policy.ts'
import { cannotMigrateLive } from '../protocols/migration-phases.ts'
import { activeMigration } from '../storage/migration-guard.ts'
import { REBALANCE_COOLDOWN_MS } from '../storage/apply-sched.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { Logger } from './log.ts'
import { realEvery } from './scheduler.ts'
import type { Every, LoadBoard } from './scheduler.ts'

/** The leader's policy: the state machine's cooldown, so the plan never proposes what apply refuses. */
export const LEADER_REBALANCE_POLICY: RebalancePolicy = { ...DEFAULT_REBALANCE_POLICY, cooldownMs: REBALANCE_COOLDOWN_MS }
/** How often the leader looks: a plan is cheap, a move takes seconds to minutes. */
export const REBALANCE_EVERY_MS = 15_000

export interface RebalancerDeps {
  sm: StateMachine
  load: LoadBoard
  isLeader: () => boolean
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  now?: () => number
  policy?: RebalancePolicy
  /** placement settings of the plan (rebalanceConfigFromEnv) */
  config?: PlacementConfigInput
}

/** May this VM move live now? Running under QEMU on its node, not migrating. */
function movable (sm: StateMachine, vm: VmRecord): boolean {
  return vm.status.phase === 'running' && vm.status.node === vm.assignedNode && activeMigration(vm) == null && cannotMigrateLive(vm, (id) => sm.getNode(id)) == null
}

/** The plan on the replica now (what `rebalance --dry-run` shows, and what a pass proposes). */
export function rebalancePlan (sm: StateMachine, hints: Map<string, LoadHint>, now: number, memory: RebalanceMemory, policy: RebalancePolicy = LEADER_REBALANCE_POLICY, config: PlacementConfigInput = {}): RebalanceStep {
  const vms = sm.listVms()
  const cluster = clusterFromModel(sm.listNodes(), vms, hints)
  const lastMoved = new Map<string, number>()
  for (const v of vms) if (v.migration != null) lastMoved.set(v.id, v.migration.ended ?? v.migration.started)
  // every migration in flight counts against the budget: the rebalancer's and anyone else's
  const inFlight = vms.filter((v) => activeMigration(v) != null).length
  return planRebalanceStep({ cluster, movable: new Set(vms.filter((v) => movable(sm, v)).map((v) => v.id)), lastMoved, inFlight, now, memory }, policy, config)
}

/** One pass on the leader: plan, then propose each move; returns the step and how many were committed. */
export async function rebalancePass (d: RebalancerDeps, memory: RebalanceMemory): Promise<{ step: RebalanceStep, started: number }> {
  const now = (d.now ?? Date.now)()
  const step = rebalancePlan(d.sm, d.load.hints(), now, memory, d.policy, d.config)
  let started = 0
  for (const m of step.moves) {
    try {
      const reason = `imbalance ${step.before.toFixed(4)} → ${(step.before - m.gain).toFixed(4)}`
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
  /** soft state: a new leader starts inactive with an empty hour (apply's cooldown still holds) */
  private memory: RebalanceMemory = FRESH_MEMORY
  /** passes that planned at least one move, and moves committed (the simulator's stats) */
  readonly stats = { passesWithMoves: 0, started: 0 }
  constructor (private readonly d: RebalancerDeps, private readonly everyMs = REBALANCE_EVERY_MS, private readonly every: Every = realEvery) {}

  start (): void {
    this.timer = this.every(this.everyMs, () => { void this.tick() })
  }

  /** One round of the loop (what the timer runs). */
  async tick (): Promise<void> {
    if (!this.d.isLeader()) { this.memory = FRESH_MEMORY; return }
    if (this.running) return
    this.running = true
    try {
      const { step, started } = await rebalancePass(this.d, this.memory)
      this.memory = step.memory
      if (step.moves.length > 0) {
        this.stats.passesWithMoves++
        this.stats.started += started
        this.d.log.info('rebalancing', { why: step.why, started })
      }
    } catch (err) {
      this.d.log.warn('rebalancer pass failed', { err })
    } finally { this.running = false }
  }

  stop (): void { this.timer?.(); this.timer = null }
}

/** BLIXARD_REBALANCE=on starts the rebalancer on every node (it acts only while leading). */
export function rebalanceFromEnv (env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.BLIXARD_REBALANCE
  if (v == null || v === '' || v === 'off') return false
  if (v === 'on') return true
  throw new Error(`BLIXARD_REBALANCE must be on or off, got "${v}"`)
}

/** BLIXARD_REBALANCE_HOT_PCT=N: a node whose gossiped cpu or memory is above N % takes no VM from the
 * rebalancer (default: placement's hotPct, 80). The cpu figure is the host's load average over its
 * cores, so nodes that share one host (a local cluster, the tests) all read the same, often 100 %:
 * at the default every one of them is hot and nothing moves; 100 turns the check off. */
export function rebalanceConfigFromEnv (env: NodeJS.ProcessEnv = process.env): PlacementConfigInput {
  const v = env.BLIXARD_REBALANCE_HOT_PCT
  if (v == null || v === '') return {}
  if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 100) throw new Error(`BLIXARD_REBALANCE_HOT_PCT must be a whole percent from 1 to 100, got "${v}"`)
  return { hotPct: Number(v) }
}
