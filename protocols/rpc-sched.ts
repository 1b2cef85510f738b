// RPC methods of the rebalancer and project quotas. Params are checked with the same schema as the
// Raft commands they become (validateCommand), so the RPC and the log accept the same values.
import type { Command } from './commands.ts'
import type { QuotaLimits, QuotaUsage } from './model.ts'
import type { IdempotentParams, MethodSpec } from './rpc.ts'
import { validateCommand } from './command-schema.ts'
import { BlixardError } from './errors.ts'
import { compile, s, type Infer, type Schema } from './schema.ts'

/** One project's quota as `quota show` prints it. */
export interface QuotaView { project: string, limits: QuotaLimits | null, usage: QuotaUsage }

/** `blixard rebalance --dry-run`: the moves the leader's rebalancer would start now, and why. */
export interface RebalanceView {
  /** the objective: population variance of node fill over ready nodes (placement/plans/rebalance.ts) */
  before: number
  after: number
  moves: Array<{ vm: string, name: string, from: string, to: string, gain: number }>
  why: string
  /** what the answering node's rebalancer does while it leads (config rebalance.mode): join fills
   * nodes that join or become ready empty, skew evens out any imbalance, off moves nothing */
  mode: 'off' | 'join' | 'skew'
}

/** anything: checked by validateCommand as the SetQuota it becomes */
const asCommand = s.custom((x): unknown => x)

/** params, declared once (protocols/schema.ts, wire dialect): SchedMethods derives its params
 * types from these and each method's checker is compiled from the same declaration */
const SCHED_PARAMS = {
  'rebalance.plan': s.obj({}, { stale: s.bool() }),
  'quota.set': s.obj({ project: asCommand, limits: asCommand }),
  'quota.show': s.obj({}, { project: s.str(63, { min: 1 }), stale: s.bool() })
} as const

type P<M extends keyof typeof SCHED_PARAMS> = Infer<(typeof SCHED_PARAMS)[M]>

export interface SchedMethods {
  /** the rebalancer's plan on this node's replica and gossip, changing nothing */
  'rebalance.plan': { params: P<'rebalance.plan'>, result: RebalanceView }
  /** sets a project's quota (limits: null clears it); answers with its limits and usage */
  'quota.set': { params: { project: string, limits: QuotaLimits | null } & IdempotentParams, result: QuotaView }
  /** every project with a quota or VMs, or one */
  'quota.show': { params: P<'quota.show'>, result: QuotaView[] }
}

type Table = { [M in keyof SchedMethods]: MethodSpec<SchedMethods[M]['params']> }

const checker = <M extends keyof typeof SCHED_PARAMS>(m: M): (x: unknown) => P<M> => {
  const check = compile<P<M>>(SCHED_PARAMS[m] as Schema<P<M>>, 'params', 'params.', 'wire')
  return (x) => check(x ?? {})
}
const quotaSet = checker('quota.set')

export const SCHED_METHODS: Table = {
  'rebalance.plan': { mutating: false, streaming: false, params: checker('rebalance.plan') },
  'quota.set': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = quotaSet(x)
      const v = validateCommand({ type: 'SetQuota', project: o.project, limits: o.limits })
      if (!v.ok) throw new BlixardError('InvalidParams', `params.${v.error.message}`)
      const c = v.cmd as Extract<Command, { type: 'SetQuota' }>
      return { project: c.project, limits: c.limits }
    }
  },
  'quota.show': { mutating: false, streaming: false, params: checker('quota.show') }
}
