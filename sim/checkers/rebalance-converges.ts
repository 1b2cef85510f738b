// Rebalancing converges: in a skew-mode run, once the faults healed and the tenant
// stopped, the shipped rebalancer gets CONVERGE_ROUNDS passes with nothing else changing the
// cluster but the moves it starts; at its last pass a plan made afresh, on the state and at the
// time that pass planned on (the leader's committed state with the state machine's cooldowns),
// has no move left (the imbalance is within the hysteresis band, or
// every move that could still help is one the cooldown or the budget forbids), and it started moves in at most that many distinct
// passes after the heal (no endless shuffling: the hysteresis and the cooldown stop it).
import type { Entry } from '../../protocols/raft/types.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { FRESH_MEMORY } from '../../placement/plans/rebalance-policy.ts'
import { LEADER_REBALANCE_POLICY, rebalancePlan } from '../../node/rebalancer.ts'
import type { RebalanceStep } from '../../placement/plans/rebalance-policy.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

export class RebalanceConverges extends BaseChecker {
  readonly name = 'rebalance-converges'
  /** the envelope times of applied rebalancing moves: one time per pass (a pass stamps its moves alike) */
  private readonly passes = new Set<number>()
  /** the fresh plan at the latest pass of a leader's rebalancer, and that pass's time */
  private lastPass: { at: number, step: RebalanceStep } | null = null

  /** `rounds`: passes the rebalancer gets after the heal; `skew`: whether this run's mode evens out */
  constructor (private readonly rounds: number, private readonly skew: boolean) { super() }

  onApply = (_r: Replica, _e: Entry, _now: number, env?: CommandEnvelope | null, result?: ApplyResult | null): void => {
    if (env?.cmd.type === 'RebalanceVm' && result?.ok === true) this.passes.add(env.at)
  }

  /** Wired to the simulator's rebalancer passes (sim/sched-model.ts onRebalancePass). Judged on
   * the state the last pass saw, not at the end of the run: HA, the agents and membership go on
   * after the passes stop (a VM reported running, a replica registering), which no pass could
   * have answered. */
  onRebalancePass = (sm: StateMachine, now: number): void => {
    if (!this.skew) return
    // a rebalancer looking afresh (inactive: it starts above the hysteresis band, as the live one does)
    this.lastPass = { at: now, step: rebalancePlan(sm, new Map(), now, FRESH_MEMORY, LEADER_REBALANCE_POLICY, {}, 'skew') }
  }

  finish = (v: FinalView): void => {
    if (!this.skew || v.healedAt < 0) return
    const after = [...this.passes].filter((t) => t >= v.healedAt).length
    if (after > this.rounds) this.fail(v.now, `the rebalancer started moves in ${after} passes after the heal, more than the ${this.rounds} it was given: it does not settle`)
    if (this.lastPass === null || this.lastPass.at < v.healedAt) return // no pass after the heal (no leader)
    const { step, at } = this.lastPass
    if (step.moves.length > 0) this.fail(at, `${this.rounds} rebalancer passes after the heal, its plan still moves ${step.moves.map((m) => `${m.vmId} ${m.from}→${m.to}`).join(', ')} (${step.why}): not converged`)
  }
}
