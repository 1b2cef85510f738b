// Node liveness in the replicated state (the timing rules are node/core/lease-rules.ts):
// RenewLeases, the leader's batch of the renewals it received, and MarkNodeDown, the leader's
// judgement that a node's lease ran out. Both are leader-bound (protocols/auth.ts: signed by the
// leader, which proposes only the ones it signed itself). Deterministic: the only clock is
// envelope.at, used for display and for the reschedule history, never to judge a lease.
//
// Epoch and seq:
// - `leaseEpoch` is the node's incarnation: MarkNodeDown bumps it, and a renewal naming an older
//   epoch is refused ('stale'), so a host cut off while it was judged cannot renew its way back
//   with guests still running. It learns the new epoch from its replica, stops every guest, and
//   renews with the new epoch: that renewal brings it back `ready` ('rejoined').
// - `leaseSeq` counts renewals: a MarkNodeDown carries the seq the leader last saw, so one judged
//   before a renewal that committed in between is a no-op ('stale').
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { byNodeKey, vmIdsOn, vmIdsReleasing, withRelease } from './apply-vms.ts'
import { downReleases } from './release-rules.ts'
import { failMigrationsOf } from './apply-migration.ts'
import { FLAP_WINDOW_MS, flapBackoffMs, rescheduleOffDownNode } from './reschedule-rules.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

/** Reschedules kept per VM: enough to count a flapping host's recent ones (the backoff caps at 2^5). */
export const MAX_RESCHEDULE_HISTORY = 16

export type RenewOutcome = 'renewed' | 'rejoined' | 'stale' | 'notFound'

export interface RenewResult {
  node: string
  outcome: RenewOutcome
  /** the node's epoch after this entry (a stale renewer learns which one to use once it cleaned up) */
  epoch: number
  seq: number
}

export function leaseEpochOf (n: NodeRecord): number { return n.leaseEpoch ?? 0 }
export function leaseSeqOf (n: NodeRecord): number { return n.leaseSeq ?? 0 }
export function isDown (n: NodeRecord): boolean { return n.liveness === 'down' }

export function renewLeases (ctx: ApplyContext, c: Cmd<'RenewLeases'>): { results: RenewResult[] } {
  const results = c.leases.map(({ node, epoch }): RenewResult => {
    const rec = ctx.tx.get<NodeRecord>('nodes', node)
    if (rec === undefined) return { node, outcome: 'notFound', epoch: 0, seq: 0 }
    if (leaseEpochOf(rec) !== epoch) return { node, outcome: 'stale', epoch: leaseEpochOf(rec), seq: leaseSeqOf(rec) }
    const rejoined = isDown(rec)
    const next: NodeRecord = {
      ...rec,
      liveness: 'ready',
      downSince: null,
      downReason: null,
      leaseEpoch: epoch,
      leaseSeq: leaseSeqOf(rec) + 1,
      leaseRenewedAt: ctx.at,
      leaseExpiresAt: ctx.at + c.leaseMs
    }
    ctx.tx.put('nodes', node, next)
    return { node, outcome: rejoined ? 'rejoined' : 'renewed', epoch, seq: leaseSeqOf(next) }
  })
  return { results }
}

export interface MarkDownResult {
  outcome: 'down' | 'stale'
  /** VMs put back to pending for the scheduler, and VMs left on the node (restart policy never) */
  rescheduled: string[]
  stayed: string[]
}

export function markNodeDown (ctx: ApplyContext, c: Cmd<'MarkNodeDown'>): MarkDownResult {
  const rec = ctx.tx.get<NodeRecord>('nodes', c.node)
  if (rec === undefined) reject('NotFound', `node ${c.node} not found`)
  // judged on an older view: the node renewed (seq) or was already marked down (epoch) since
  if (isDown(rec) || leaseEpochOf(rec) !== c.epoch || leaseSeqOf(rec) !== c.seq) return { outcome: 'stale', rescheduled: [], stayed: [] }
  // its migrations end first, in this entry: the VMs it was moving stay with (or pass to) their owner
  failMigrationsOf(ctx, c.node, c.reason)
  ctx.tx.put('nodes', c.node, {
    ...rec,
    liveness: 'down',
    downSince: ctx.at,
    downReason: c.reason,
    leaseEpoch: c.epoch + 1
  } satisfies NodeRecord)
  // its guests are fenced dead: VMs taken off it earlier may run elsewhere now (release-rules.ts)
  for (const id of vmIdsReleasing(ctx.tx, c.node)) {
    const vm = ctx.tx.get<VmRecord>('vms', id)
    if (vm !== undefined && downReleases(vm, c.node)) ctx.tx.put('vms', vm.id, withRelease(ctx.tx, { ...vm, updatedAt: ctx.at }, undefined))
  }
  const vms = vmIdsOn(ctx.tx, c.node).map(id => ctx.tx.get<VmRecord>('vms', id)).filter((v): v is VmRecord => v !== undefined)
  const expiredAtText = new Date(c.expiredAt).toISOString()
  const decisions = rescheduleOffDownNode(
    { node: rec.name, expiredAtText },
    // a VM meant to be stopped leaves a dead host too, whatever its policy: nothing runs it there
    vms.map(v => ({ id: v.id, node: rec.name, restartPolicy: v.desired === 'running' ? v.spec.restartPolicy : 'always', rescheduledAt: (v.reschedules ?? []).map(r => r.at) })),
    ctx.at
  )
  const out: MarkDownResult = { outcome: 'down', rescheduled: [], stayed: [] }
  for (const d of decisions) {
    const vm = vms.find(v => v.id === d.vm)!
    if (d.kind === 'stay') {
      ctx.tx.put('vms', vm.id, { ...vm, status: { phase: 'failed', reason: d.reason, node: c.node, at: ctx.at }, updatedAt: ctx.at } satisfies VmRecord)
      out.stayed.push(vm.id)
      continue
    }
    const history = [...(vm.reschedules ?? []).filter(r => ctx.at - r.at < FLAP_WINDOW_MS), { from: c.node, at: ctx.at }].slice(-MAX_RESCHEDULE_HISTORY)
    ctx.tx.delete('vmsByNode', byNodeKey(c.node, vm.id))
    ctx.tx.put('vms', vm.id, {
      ...vm,
      assignedNode: null,
      status: { phase: 'pending', reason: d.reason, node: null, at: ctx.at },
      reschedules: history,
      updatedAt: ctx.at
    } satisfies VmRecord)
    out.rescheduled.push(vm.id)
  }
  return out
}

/** The host a VM keeps off (flap backoff, storage/reschedule-rules.ts) at time `now`, or null. */
export function avoidedNode (vm: VmRecord, now: number): string | null {
  const h = vm.reschedules ?? []
  const last = h[h.length - 1]
  if (last === undefined) return null
  // the backoff counts the reschedules before the last one, as rescheduleOffDownNode did then
  const until = last.at + flapBackoffMs(h.slice(0, -1).map(r => r.at), last.at)
  return now < until ? last.from : null
}
