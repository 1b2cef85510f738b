// Per-project quotas: an admin sets a project's limits (SetQuota); every VM counts against its
// project's (a VM created without one is in the project `default`: protocols/model.ts projectOf).
// The check runs on apply, inside the same entry that creates or changes the VM, so two creates
// racing through different nodes cannot both pass: the second one sees the first one's usage. Usage is kept as a row per project, changed by the three
// commands that change what a VM claims (CreateVm, UpdateVmSpec, DeleteVm), so a create reads two
// rows instead of scanning every VM.
import type { Command } from '../protocols/commands.ts'
import type { QuotaLimits, QuotaRecord, QuotaResource, QuotaUsage, VmSpec } from '../protocols/model.ts'
import { projectOf, QUOTA_RESOURCES } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import type { KvTx } from './kv.ts'
import { reject } from './apply-context.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

/** Keys in the `settings` table: one row of limits and one of usage per project. */
const QUOTA_PREFIX = 'quota/'
const USAGE_PREFIX = 'quotaUsage/'

export function emptyUsage (): QuotaUsage {
  return { vcpus: 0, memoryMiB: 0, diskGiB: 0, vms: 0, ips: 0 }
}

/** What one VM of this spec claims. */
export function claimOf (spec: VmSpec): QuotaUsage {
  return { vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, diskGiB: spec.diskGiB, vms: 1, ips: spec.networks.length }
}

export function quotaOf (tx: KvTx, project: string): QuotaRecord | undefined {
  return tx.get<QuotaRecord>('settings', QUOTA_PREFIX + project)
}

export function usageOf (tx: KvTx, project: string): QuotaUsage {
  return tx.get<QuotaUsage>('settings', USAGE_PREFIX + project) ?? emptyUsage()
}

/** Every project that has a quota or holds something, in name order. */
export function listQuotas (tx: KvTx): Array<{ project: string, limits: QuotaLimits | null, usage: QuotaUsage }> {
  const names = new Set<string>()
  for (const [k] of tx.range('settings', { start: QUOTA_PREFIX, end: 'quota0' })) names.add(k.slice(QUOTA_PREFIX.length))
  for (const [k] of tx.range('settings', { start: USAGE_PREFIX, end: 'quotaUsage0' })) names.add(k.slice(USAGE_PREFIX.length))
  return [...names].sort().map((project) => ({ project, limits: quotaOf(tx, project)?.limits ?? null, usage: usageOf(tx, project) }))
}

const UNIT: Record<QuotaResource, string> = { vcpus: ' vCPUs', memoryMiB: ' MiB', diskGiB: ' GiB of disk', vms: ' VMs', ips: ' addresses' }

/** Why `after` breaks the project's quota where it grew beyond `before` (the numbers), or null. A
 * resource that did not grow is never refused, so a project over a lowered quota can still shrink. */
export function quotaExcess (limits: QuotaLimits, before: QuotaUsage, after: QuotaUsage): string | null {
  const over: string[] = []
  for (const r of QUOTA_RESOURCES) {
    const lim = limits[r]
    if (lim === undefined || after[r] <= before[r] || after[r] <= lim) continue
    over.push(`${r}: ${before[r]} used + ${after[r] - before[r]} asked > ${lim}${UNIT[r]} allowed`)
  }
  return over.length === 0 ? null : over.join('; ')
}

function add (u: QuotaUsage, c: QuotaUsage, sign: 1 | -1): QuotaUsage {
  const out = emptyUsage()
  for (const r of QUOTA_RESOURCES) out[r] = u[r] + sign * c[r]
  return out
}

function putUsage (tx: KvTx, project: string, u: QuotaUsage): void {
  if (QUOTA_RESOURCES.every((r) => u[r] === 0)) tx.delete('settings', USAGE_PREFIX + project)
  else tx.put('settings', USAGE_PREFIX + project, u)
}

/** Move a VM's claim from its old spec (null: it is new) to its new one (null: it is deleted),
 * refusing (QuotaExceeded) when the project it lands in would go over a limit it grew against. */
export function chargeQuota (ctx: ApplyContext, vmName: string, from: VmSpec | null, to: VmSpec | null): void {
  // a record stored without a project (before they were filled in on apply) was charged to none:
  // nothing to release, so no usage row goes below what its VMs hold
  const was = from?.project
  const now = to === null ? undefined : projectOf(to)
  if (was !== undefined && from !== null) {
    // released first: a VM that stays in its project is judged against the usage without itself
    putUsage(ctx.tx, was, add(usageOf(ctx.tx, was), claimOf(from), -1))
  }
  if (now !== undefined && to !== null) {
    const before = usageOf(ctx.tx, now)
    const after = add(before, claimOf(to), 1)
    const q = quotaOf(ctx.tx, now)
    // the comparison is against what the project held with the old spec, so a resize is judged on its growth
    const base = was === now && from !== null ? add(before, claimOf(from), 1) : before
    const why = q === undefined ? null : quotaExcess(q.limits, base, after)
    if (why !== null) reject('QuotaExceeded', `project ${now} quota exceeded by VM ${vmName}: ${why}`)
    putUsage(ctx.tx, now, after)
  }
}

export function setQuota (ctx: ApplyContext, c: Cmd<'SetQuota'>): { project: string, limits: QuotaLimits | null, usage: QuotaUsage } {
  if (c.limits === null) {
    ctx.tx.delete('settings', QUOTA_PREFIX + c.project)
    return { project: c.project, limits: null, usage: usageOf(ctx.tx, c.project) }
  }
  const rec: QuotaRecord = { project: c.project, limits: c.limits, setAt: ctx.at }
  ctx.tx.put('settings', QUOTA_PREFIX + c.project, rec)
  return { project: c.project, limits: c.limits, usage: usageOf(ctx.tx, c.project) }
}
