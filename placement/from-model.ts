// Deriving placement input from the replicated model: committed capacities and reservations from Raft, load
// hints from gossip (soft state, may be missing or stale).
import type { NodeRecord, VmRecord, VmSpec } from '../protocols/model.ts'
import type { LoadHint, PlacedVm, PlacementCluster, PlacementNode, PlacementRequest } from './types.ts'

export function requestFromSpec (vmId: string, spec: VmSpec): PlacementRequest {
  return {
    vmId,
    resources: { cpu: spec.vcpus, memoryMiB: spec.memoryMiB, diskGiB: spec.diskGiB },
    constraints: spec.constraints,
    antiAffinityGroup: spec.antiAffinityGroup,
    affinity: spec.affinity,
    spreadLabel: spec.spreadLabel,
    priority: spec.priority,
    // a VM with volumes opens RBD images: only a host with a Ceph client can run it
    requires: spec.volumes.length > 0 && !spec.requires.includes('rbd') ? [...spec.requires, 'rbd'] : spec.requires,
    ...(spec.preemptible === false ? { preemptible: false } : {})
  }
}

export function requestFromVm (vm: VmRecord): PlacementRequest {
  const req = requestFromSpec(vm.id, vm.spec)
  // a clone not started yet resumes its snapshot's state: where that is on hand, or only there
  const c = vm.clonedFrom
  return c === undefined || c.resumedAt !== undefined ? req : { ...req, snapshot: { cachedOn: c.cachedOn, pinnedTo: c.pinnedTo } }
}

/**
 * Every VM with an assignedNode holds a reservation on that node, whatever its phase, until it is unassigned.
 * VMs assigned to nodes missing from `nodes` are left out (checkPlacementInvariants reports them).
 */
export function clusterFromModel (nodes: NodeRecord[], vms: VmRecord[], load: Map<string, LoadHint>): PlacementCluster {
  const out = new Map<string, PlacementNode>()
  for (const n of nodes) {
    out.set(n.id, {
      id: n.id,
      labels: n.labels,
      capacity: n.capacity,
      overcommit: n.overcommit,
      reserved: { cpu: 0, memoryMiB: 0, diskGiB: 0 },
      // a node whose lease expired takes nothing, whatever the operator's state says
      state: n.liveness === 'down' ? 'down' : n.state,
      capabilities: n.capabilities,
      maxVms: n.maxVms,
      vmCount: 0,
      groups: {},
      load: load.get(n.id) ?? null,
      ...warmOf(load.get(n.id))
    })
  }
  const placed: PlacedVm[] = []
  for (const vm of vms) {
    if (vm.assignedNode === null) continue
    const node = out.get(vm.assignedNode)
    if (node === undefined) continue
    const request = requestFromVm(vm)
    reserve(node, request, 1)
    placed.push({ request, nodeId: node.id })
    // a live migration's target holds the VM's resources from the start of the move (its QEMU
    // waits with the memory allocated), not only from the switchover; not `placed` there: the VM
    // is not on it yet, so nothing evacuates or moves it from there
    const m = vm.migration
    const target = m != null && (m.phase === 'preparing' || m.phase === 'transferring') ? out.get(m.target) : undefined
    if (target !== undefined) reserve(target, request, 1)
  }
  return { nodes: [...out.values()], placed }
}

/** The node's working count of paused warm guests, from its load hint (a copy: placements take from it). */
function warmOf (hint: LoadHint | undefined): { warm?: Record<string, number> } {
  return hint?.warm === undefined ? {} : { warm: { ...hint.warm } }
}

/** Add (sign 1) or remove (sign -1) a request's reservation on a node, in place. */
export function reserve (node: PlacementNode, req: PlacementRequest, sign: 1 | -1): void {
  node.reserved.cpu += sign * req.resources.cpu
  node.reserved.memoryMiB += sign * req.resources.memoryMiB
  node.reserved.diskGiB += sign * req.resources.diskGiB
  node.vmCount += sign
  const g = req.antiAffinityGroup
  if (g !== null) {
    const c = (node.groups[g] ?? 0) + sign
    if (c > 0) node.groups[g] = c
    else delete node.groups[g]
  }
}
