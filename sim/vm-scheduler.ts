// The hosts' registration, and (for runs without sim/sched-model.ts, whose shipped scheduler
// places VMs: the regression seeds found before it) the old control loop: register the hosts, then place
// every unassigned VM with the real placement/ code over the leader's
// committed state and propose AssignVm. Only the current leader acts, and
// only through Raft proposals, so faults can make it act on a stale view:
// the state machine's own capacity check and the placement checker judge that.
import type { NodeRecord } from '../protocols/model.ts'
import type { Command } from '../protocols/commands.ts'
import { clusterFromModel, placeOne, requestFromVm } from '../placement/index.ts'
import type { Cluster } from './cluster.ts'
import type { EventQueue } from './event-queue.ts'

/** virtual ms between scheduling rounds */
export const SCHEDULE_EVERY_MS = 100
export const HOSTS = 3

/** Hosts big enough that a spec update of an assigned VM never overfills one (the state machine does not
 * re-check capacity on UpdateVmSpec), small enough that placement has choices to make. */
export function hostRecord (i: number): Omit<NodeRecord, 'registeredAt' | 'updatedAt' | 'state'> {
  return {
    id: `host${i}`,
    name: `host${i}`,
    addrs: [],
    labels: { zone: `z${i % 2}` },
    capacity: { cpu: 40, memoryMiB: 16384, diskGiB: 8 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    capabilities: ['kvm', 'nix', 'qemu'],
    maxVms: 3
  }
}

export class VmScheduler {
  running = false
  proposals = 0

  constructor (private readonly sched: EventQueue, private readonly cluster: Cluster, private readonly trace: ((line: string) => void) | null, private readonly place = true) {}

  start (): void {
    this.running = true
    this.sched.after(SCHEDULE_EVERY_MS, () => this.round())
  }

  stop (): void {
    this.running = false
  }

  private round (): void {
    if (!this.running) return
    this.sched.after(SCHEDULE_EVERY_MS, () => this.round())
    const l = this.cluster.leader()
    if (l === null || l.core === null || l.sm === null) return
    const sm = l.sm
    const core = l.core
    const cmds: Command[] = []
    for (let i = 1; i <= HOSTS; i++) {
      if (sm.getNode(`host${i}`) === undefined) cmds.push({ type: 'RegisterNode', node: hostRecord(i) })
    }
    if (cmds.length === 0 && this.place) {
      const nodes = sm.listNodes()
      const vms = sm.listVms()
      let view = clusterFromModel(nodes, vms, new Map())
      for (const vm of vms) {
        // a VM still releasing the host it was taken off is placed nowhere else (apply refuses it)
        if (vm.assignedNode !== null || vm.releasing !== undefined) continue
        const d = placeOne(view, requestFromVm(vm))
        if (d.nodeId === null) continue
        cmds.push({ type: 'AssignVm', id: vm.id, node: d.nodeId, reason: 'sim scheduler' })
        // Count it before placing the next one in this round.
        view = clusterFromModel(nodes, vms.map(v => v.id === vm.id ? { ...v, assignedNode: d.nodeId } : v), new Map())
      }
    }
    for (const cmd of cmds) {
      try {
        core.proposeUnwatched({ cmd, at: this.sched.now() })
        this.proposals++
        this.trace?.(`${l.id} scheduler proposes ${cmd.type}${cmd.type === 'AssignVm' ? ` ${cmd.id} -> ${String(cmd.node)}` : ''}`)
      } catch {
        return // not leader any more, or dropping proposals: try next round
      }
    }
  }
}
