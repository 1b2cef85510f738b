// Moves of VMs (the rebalancer's, a drain's, a preemption's), judged against committed
// state and, when HA is in the run, against the hosts' ground truth:
// - capacity is never exceeded, counting what moves in: a live migration's target holds the VM's
//   reservation from the start of the move (placement/from-model.ts, storage's incomingTo), so a
//   node's placed VMs plus those moving in fit its capacity × overcommit, on every replica at every
//   checkpoint (PlacementInvariants counts placed VMs only);
// - no VM is lost or duplicated by a move: a host's agent never boots afresh a guest whose live
//   migration to that host ended done without the guest's state having been handed over to it
//   (the move lost the running guest: it would reboot); and once the run settled, every VM that
//   was moved and is meant to run, placed, not moving and reported running on its node, runs
//   there, and on no other host.
import type { Entry } from '../../protocols/raft/types.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { clusterFromModel } from '../../placement/from-model.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { activeMigration } from '../../storage/migration-guard.ts'
import type { Cluster } from '../cluster.ts'
import type { Replica } from '../replica.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

/** Which guests a host runs (sim/ha.ts); null when HA is not in the run. */
export interface GuestTruth {
  hosts: readonly string[]
  runs: (host: string, guest: string) => boolean
  /** did a live migration hand this guest over to this host? */
  handedOver: (host: string, guest: string) => boolean
}

const EPS = 1e-9

export class MoveInvariants extends BaseChecker {
  readonly name = 'moves'
  /** VMs some move took (by id: id@createdAt, a deleted and re-created VM is another guest) */
  private readonly moved = new Set<string>()
  /** VMs judged at the end, for the stats */
  judged = 0

  constructor (private readonly truth: GuestTruth | null) { super() }

  onApply = (r: Replica, _e: Entry, _now: number, env?: CommandEnvelope | null, result?: ApplyResult | null): void => {
    if (env == null || result == null || !result.ok || r.sm === null) return
    const cmd = env.cmd
    const ids = cmd.type === 'RebalanceVm' || cmd.type === 'EvacuateVm' || cmd.type === 'StartMigration' ? [cmd.vm]
      : cmd.type === 'PreemptVm' ? cmd.victims
        : []
    for (const id of ids) {
      const vm = r.sm.getVm(id)
      if (vm !== undefined) this.moved.add(`${vm.id}@${vm.createdAt}`)
    }
  }

  /** An agent booted `guest` on `host` (sim/ha.ts), its VM's record there being `vm`. */
  started (host: string, guest: string, vm: VmRecord | undefined, now: number): void {
    const m = vm?.migration
    if (this.truth === null || m === undefined || m.phase !== 'done' || m.target !== host || vm?.assignedNode !== host) return
    if (!this.truth.handedOver(host, guest)) this.fail(now, `${host} boots ${guest} afresh after its live migration there ended done (${m.source} → ${m.target}) without the guest being handed over: the move lost it`)
  }

  onCheckpoint = (c: Cluster, now: number): void => {
    for (const r of c.replicas) {
      if (!r.up || r.sm === null) continue
      for (const n of clusterFromModel(r.sm.listNodes(), r.sm.listVms(), new Map()).nodes) {
        const over: string[] = []
        if (n.reserved.cpu > n.capacity.cpu * n.overcommit.cpu + EPS) over.push(`cpu ${n.reserved.cpu} > ${n.capacity.cpu * n.overcommit.cpu}`)
        if (n.reserved.memoryMiB > n.capacity.memoryMiB * n.overcommit.memory + EPS) over.push(`memory ${n.reserved.memoryMiB} MiB > ${n.capacity.memoryMiB * n.overcommit.memory}`)
        if (n.reserved.diskGiB > n.capacity.diskGiB * n.overcommit.disk + EPS) over.push(`disk ${n.reserved.diskGiB} GiB > ${n.capacity.diskGiB * n.overcommit.disk}`)
        if (over.length > 0) this.fail(now, `${r.id} at applied ${r.applied}: node ${n.id} holds more than it has, counting VMs moving in: ${over.join(', ')}`)
      }
    }
  }

  finish = (v: FinalView): void => {
    this.onCheckpoint(v.cluster, v.now)
    const l = v.cluster.leader()
    if (this.truth === null || l?.sm == null) return
    for (const vm of l.sm.listVms()) {
      const key = `${vm.id}@${vm.createdAt}`
      if (!this.moved.has(key)) continue
      const h = vm.assignedNode
      if (vm.desired !== 'running' || h === null || activeMigration(vm) !== null || vm.releasing !== undefined) continue
      if (vm.status.phase !== 'running' || vm.status.node !== h) continue
      this.judged++
      if (!this.truth.runs(h, key)) this.fail(v.now, `VM ${vm.id} is recorded running on ${h} after its moves, but no guest of it runs there (lost)`)
      const elsewhere = this.truth.hosts.filter((x) => x !== h && this.truth!.runs(x, key))
      if (elsewhere.length > 0) this.fail(v.now, `VM ${vm.id} runs on ${h} and also on ${elsewhere.join(', ')} after its moves (duplicated)`)
    }
  }
}
