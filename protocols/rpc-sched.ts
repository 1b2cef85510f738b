// RPC methods of issue 19 (quotas). Params are checked with the same schema as the
// Raft commands they become (validateCommand), so the RPC and the log accept the same values.
import type { Command } from './commands.ts'
import type { QuotaLimits, QuotaUsage } from './model.ts'
import type { IdempotentParams, MethodSpec, ReadParams } from './rpc.ts'
import { validateCommand } from './command-schema.ts'
import { BlixardError } from './errors.ts'
import { bool, obj, opt, str } from './validate.ts'

/** One project's quota as `quota show` prints it. */
export interface QuotaView { project: string, limits: QuotaLimits | null, usage: QuotaUsage }

/** `blixard rebalance --dry-run`: the moves the leader's rebalancer would start now, and why. */
export interface RebalanceView {
  /** the objective: population variance of node fill over ready nodes (placement/plans/rebalance.ts) */
  before: number
  after: number
  moves: Array<{ vm: string, name: string, from: string, to: string, gain: number }>
  why: string
  /** is the leader's rebalancer running (BLIXARD_REBALANCE=on on the answering node)? */
  enabled: boolean
}

export interface SchedMethods {
  /** the rebalancer's plan on this node's replica and gossip, changing nothing */
  'rebalance.plan': { params: ReadParams, result: RebalanceView }
  /** sets a project's quota (limits: null clears it); answers with its limits and usage */
  'quota.set': { params: { project: string, limits: QuotaLimits | null } & IdempotentParams, result: QuotaView }
  /** every project with a quota or VMs, or one */
  'quota.show': { params: ReadParams & { project?: string }, result: QuotaView[] }
}

type Table = { [M in keyof SchedMethods]: MethodSpec<SchedMethods[M]['params']> }

const p = (x: unknown, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> => obj(x ?? {}, 'params', allowed, required)
const stale = (o: Record<string, unknown>): ReadParams => {
  const s = opt(o, 'stale', bool, 'params')
  return s === undefined ? {} : { stale: s }
}

export const SCHED_METHODS: Table = {
  'rebalance.plan': { mutating: false, streaming: false, params: (x) => stale(p(x, ['stale'])) },
  'quota.set': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = p(x, ['project', 'limits'], ['project', 'limits'])
      const v = validateCommand({ type: 'SetQuota', project: o.project, limits: o.limits })
      if (!v.ok) throw new BlixardError('InvalidParams', `params.${v.error.message}`)
      const c = v.cmd as Extract<Command, { type: 'SetQuota' }>
      return { project: c.project, limits: c.limits }
    }
  },
  'quota.show': {
    mutating: false, streaming: false,
    params: (x) => {
      const o = p(x, ['project', 'stale'])
      const project = opt(o, 'project', (v, path) => str(v, path, 63, 1), 'params')
      return { ...stale(o), ...(project !== undefined ? { project } : {}) }
    }
  }
}
