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

export interface SchedMethods {
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
