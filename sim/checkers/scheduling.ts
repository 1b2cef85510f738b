// The scheduler's decisions and quotas, judged on every replica's committed state:
// - a preemption (PreemptVm, applied) evicted only preemptible VMs of strictly lower priority than
//   the VM it placed, and each victim is left unassigned with a reason naming who displaced it;
// - no VM is moved by the rebalancer (RebalanceVm, applied) twice within the cooldown (no
//   shuttling to and fro: the oscillation the hysteresis and cooldown are there to prevent);
// - a VM is on one host only: the by-node index holds each placed VM under its node and nowhere
//   else (a move that left it indexed under its source would have it run twice);
// - quota usage equals a recount of the VMs of each project, and no project holds more than its
//   limits (the model sets them before the first VM of the project).
// Guests running on two hosts at once (the ground truth) are NeverTwice's (sim/ha.ts).
import type { Entry } from '../../protocols/raft/types.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { projectOf, QUOTA_RESOURCES } from '../../protocols/model.ts'
import type { QuotaUsage } from '../../protocols/model.ts'
import { REBALANCE_COOLDOWN_MS } from '../../storage/apply-sched.ts'
import { claimOf, emptyUsage } from '../../storage/apply-quotas.ts'
import type { Cluster } from '../cluster.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

export class SchedulingInvariants extends BaseChecker {
  readonly name = 'scheduling'
  /** applied preemptions and rebalancing moves, by entry index (each counted once, whichever replica) */
  private readonly preemptions = new Set<number>()
  private readonly moves = new Map<number, { vm: string, at: number }>()
  /** the last rebalancing move of each VM (id@createdAt): entry index and envelope time */
  private readonly lastMove = new Map<string, { index: number, at: number }>()

  get stats (): { preemptions: number, rebalanceMoves: number } {
    return { preemptions: this.preemptions.size, rebalanceMoves: this.moves.size }
  }

  onApply = (r: Replica, e: Entry, now: number, env?: CommandEnvelope | null, result?: ApplyResult | null): void => {
    if (env == null || result == null || !result.ok || r.sm === null) return
    const cmd = env.cmd
    if (cmd.type === 'PreemptVm') {
      this.preemptions.add(e.index)
      const vm = r.sm.getVm(cmd.vm)
      if (vm === undefined) { this.fail(now, `${r.id} index ${e.index}: PreemptVm applied but VM ${cmd.vm} is gone`); return }
      if (vm.assignedNode !== cmd.node) this.fail(now, `${r.id} index ${e.index}: PreemptVm applied but ${cmd.vm} is on ${String(vm.assignedNode)}, not ${cmd.node}`)
      for (const id of cmd.victims) {
        const v = r.sm.getVm(id)
        if (v === undefined) { this.fail(now, `${r.id} index ${e.index}: victim ${id} of ${cmd.vm} is gone`); continue }
        if (!(v.spec.priority < vm.spec.priority)) this.fail(now, `${r.id} index ${e.index}: ${cmd.vm} (priority ${vm.spec.priority}) evicted ${id} of priority ${v.spec.priority}: only strictly lower priorities may be preempted`)
        if (v.spec.preemptible === false) this.fail(now, `${r.id} index ${e.index}: ${cmd.vm} evicted ${id}, which is not preemptible`)
        if (v.assignedNode !== null) this.fail(now, `${r.id} index ${e.index}: victim ${id} of ${cmd.vm} is still on ${v.assignedNode}`)
        if (!v.status.reason.includes(`preempted by VM ${vm.spec.name}`)) this.fail(now, `${r.id} index ${e.index}: victim ${id}'s status does not name ${vm.spec.name}: "${v.status.reason}"`)
      }
    }
    if (cmd.type === 'RebalanceVm') {
      const vm = r.sm.getVm(cmd.vm)
      if (vm === undefined) return
      this.moves.set(e.index, { vm: cmd.vm, at: env.at })
      const key = `${vm.id}@${vm.createdAt}`
      const last = this.lastMove.get(key)
      if (last !== undefined && last.index !== e.index && e.index > last.index && env.at - last.at < REBALANCE_COOLDOWN_MS) {
        this.fail(now, `${r.id} index ${e.index}: the rebalancer moved ${cmd.vm} again ${env.at - last.at} ms after its move at index ${last.index} (cooldown ${REBALANCE_COOLDOWN_MS} ms)`)
      }
      if (last === undefined || e.index > last.index) this.lastMove.set(key, { index: e.index, at: env.at })
    }
  }

  onCheckpoint = (c: Cluster, now: number): void => {
    for (const r of c.replicas) {
      if (!r.up || r.sm === null) continue
      const sm = r.sm
      const vms = sm.listVms()
      // one host per VM: the by-node index and the records agree
      for (const n of sm.listNodes()) {
        const indexed = new Set(sm.listVms({ node: n.id }).map((v) => v.id))
        const placed = new Set(vms.filter((v) => v.assignedNode === n.id).map((v) => v.id))
        for (const id of indexed) if (!placed.has(id)) this.fail(now, `${r.id} at applied ${r.applied}: VM ${id} is indexed under ${n.id} but assigned to ${String(sm.getVm(id)?.assignedNode)}`)
        for (const id of placed) if (!indexed.has(id)) this.fail(now, `${r.id} at applied ${r.applied}: VM ${id} is assigned to ${n.id} but not indexed there`)
        // and the releases: the vmsReleasing index and the records' releasing.node agree
        const releasingIndexed = new Set(sm.listVmsReleasing(n.id).map((v) => v.id))
        const releasing = new Set(vms.filter((v) => v.releasing?.node === n.id).map((v) => v.id))
        for (const id of releasingIndexed) if (!releasing.has(id)) this.fail(now, `${r.id} at applied ${r.applied}: VM ${id} is indexed as releasing ${n.id} but its record says ${String(sm.getVm(id)?.releasing?.node)}`)
        for (const id of releasing) if (!releasingIndexed.has(id)) this.fail(now, `${r.id} at applied ${r.applied}: VM ${id} is releasing ${n.id} but not indexed there`)
      }
      // quota usage: the kept rows against a recount
      const recount = new Map<string, QuotaUsage>()
      for (const v of vms) {
        const p = projectOf(v.spec)
        const u = recount.get(p) ?? emptyUsage()
        const c2 = claimOf(v.spec)
        for (const k of QUOTA_RESOURCES) u[k] += c2[k]
        recount.set(p, u)
      }
      for (const q of sm.listQuotas()) {
        const want = recount.get(q.project) ?? emptyUsage()
        for (const k of QUOTA_RESOURCES) {
          if (q.usage[k] !== want[k]) this.fail(now, `${r.id} at applied ${r.applied}: project ${q.project} ${k} usage ${q.usage[k]}, a recount says ${want[k]}`)
          const lim = q.limits?.[k]
          if (lim !== undefined && q.usage[k] > lim) this.fail(now, `${r.id} at applied ${r.applied}: project ${q.project} holds ${q.usage[k]} ${k}, over its limit ${lim}`)
        }
        recount.delete(q.project)
      }
      for (const [p] of recount) this.fail(now, `${r.id} at applied ${r.applied}: project ${p} has VMs but no usage row`)
    }
  }

  finish = (v: FinalView): void => { this.onCheckpoint(v.cluster, v.now) }
}
