// RPC handlers of project quotas. The limits live in Raft (SetQuota, signed by an
// admin) and are enforced on apply (storage/apply-quotas.ts); `quota show` reads them with the
// usage the state machine keeps.
import { BlixardError } from '../protocols/errors.ts'
import type { Command } from '../protocols/commands.ts'
import type { ReadParams } from '../protocols/rpc.ts'
import type { QuotaView } from '../protocols/rpc-sched.ts'
import type { VmSpec } from '../protocols/model.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { claimOf, quotaExcess } from '../storage/apply-quotas.ts'
import { projectOf, QUOTA_RESOURCES } from '../protocols/model.ts'
import type { RpcCallContext, RpcHandlers } from './net/rpc.ts'
import type { LoadBoard } from './scheduler.ts'
import { LEADER_REBALANCE_POLICY, rebalancePlacementConfig, rebalancePlan } from './rebalancer.ts'
import type { NodeConfig } from './config.ts'
import { FRESH_MEMORY } from '../placement/plans/rebalance-policy.ts'

export interface SchedApiDeps {
  sm: StateMachine
  load: LoadBoard
  now: () => number
  read: (p: ReadParams) => Promise<void>
  /** proposes under the client's idempotency key (or a fresh one); answers with the command's own result */
  /** `ctx`: the call's context (an admin write that cluster.submit runs proposes its signed command) */
  write: (cmd: Command, key: string | undefined, ctx: RpcCallContext) => Promise<unknown>
  /** this node's rebalancer settings (config rebalance.*) */
  rebalance: NodeConfig['rebalance']
}

type SchedHandlers = Pick<RpcHandlers, 'quota.set' | 'quota.show' | 'rebalance.plan'>

/** Why a new VM of `spec` would go over its project's quota now (the words apply would use), or
 * null: the create is refused before placement is asked, so the first reason given is the quota's
 * and not "no node fits". Apply checks again on the state at its index. */
export function quotaRefusal (sm: StateMachine, spec: VmSpec): string | null {
  const project = projectOf(spec)
  const q = sm.listQuotas().find((x) => x.project === project)
  if (q?.limits == null) return null
  const after = { ...q.usage }
  const claim = claimOf(spec)
  for (const r of QUOTA_RESOURCES) after[r] += claim[r]
  const why = quotaExcess(q.limits, q.usage, after)
  return why === null ? null : `project ${project} quota exceeded by VM ${spec.name}: ${why}`
}

export function createSchedApi (d: SchedApiDeps): SchedHandlers {
  return {
    'rebalance.plan': async (p) => {
      await d.read(p)
      // what `rebalance --apply` would start now: the skew plan of an active rebalancer (the
      // hysteresis start threshold aside: the operator asked to see the moves), whatever the mode
      // the leader's own rebalancer runs in (shown beside it)
      const step = rebalancePlan(d.sm, d.load.hints(), d.now(), { ...FRESH_MEMORY, active: true }, LEADER_REBALANCE_POLICY, rebalancePlacementConfig(d.rebalance), 'skew')
      const name = (id: string): string => d.sm.getVm(id)?.spec.name ?? id
      return { before: step.before, after: step.after, why: step.why, mode: d.rebalance.mode, moves: step.moves.map((m) => ({ vm: m.vmId, name: name(m.vmId), from: m.from, to: m.to, gain: m.gain })) }
    },
    'quota.set': async (p, ctx) => await d.write({ type: 'SetQuota', project: p.project, limits: p.limits }, p.idempotencyKey, ctx) as QuotaView,
    'quota.show': async (p) => {
      await d.read(p)
      const all = d.sm.listQuotas()
      if (p.project === undefined) return all
      const one = all.filter((q) => q.project === p.project)
      if (one.length === 0) throw new BlixardError('NotFound', `project ${p.project} has no quota and no VMs`)
      return one
    }
  }
}
