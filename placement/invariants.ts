// Checks of committed state that the simulator and the tests run: recomputed from the VMs themselves, not
// from any running totals, so a bookkeeping bug in placement cannot hide its own violation.
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import type { PlacementCluster, PlacementRequest } from './types.ts'
import { constraintHolds, formatConstraint } from './filters.ts'
import { requestFromVm } from './from-model.ts'

/** Tolerance for sums taken in another order than placement took them. */
const EPS = 1e-9

interface NodeShape {
  id: string
  labels: Record<string, string>
  capacity: { cpu: number, memoryMiB: number, diskGiB: number }
  overcommit: { cpu: number, memory: number, disk: number }
  capabilities: readonly string[]
  maxVms: number | null
}

export function checkAssignments (nodes: readonly NodeShape[], assigned: ReadonlyArray<{ request: PlacementRequest, nodeId: string }>): string[] {
  const out: string[] = []
  const byId = new Map(nodes.map((n) => [n.id, n]))
  const used = new Map<string, { cpu: number, mem: number, disk: number, count: number, groups: Map<string, string> }>()
  for (const { request: r, nodeId } of assigned) {
    const n = byId.get(nodeId)
    if (n === undefined) { out.push(`vm ${r.vmId}: assigned to missing node ${nodeId}`); continue }
    let u = used.get(nodeId)
    if (u === undefined) { u = { cpu: 0, mem: 0, disk: 0, count: 0, groups: new Map() }; used.set(nodeId, u) }
    u.cpu += r.resources.cpu; u.mem += r.resources.memoryMiB; u.disk += r.resources.diskGiB; u.count++
    for (const c of r.constraints) {
      if (!constraintHolds(n.labels, c)) out.push(`vm ${r.vmId}: constraint ${formatConstraint(c)} violated on node ${nodeId}`)
    }
    for (const cap of r.requires) {
      if (!n.capabilities.includes(cap)) out.push(`vm ${r.vmId}: requires ${cap}, node ${nodeId} lacks it`)
    }
    const g = r.antiAffinityGroup
    if (g !== null) {
      const other = u.groups.get(g)
      if (other !== undefined) out.push(`vm ${r.vmId}: anti-affinity group ${g} already on node ${nodeId} (vm ${other})`)
      else u.groups.set(g, r.vmId)
    }
  }
  for (const [id, u] of used) {
    const n = byId.get(id)
    if (n === undefined) continue
    const check = (dim: string, v: number, cap: number, ratio: number): void => {
      const limit = cap * ratio
      if (v > limit + EPS * Math.max(1, limit)) out.push(`node ${id}: ${dim} ${v} reserved > ${cap} × ${ratio} overcommit`)
    }
    check('cpu', u.cpu, n.capacity.cpu, n.overcommit.cpu)
    check('memoryMiB', u.mem, n.capacity.memoryMiB, n.overcommit.memory)
    check('diskGiB', u.disk, n.capacity.diskGiB, n.overcommit.disk)
    if (n.maxVms !== null && u.count > n.maxVms) out.push(`node ${id}: ${u.count} VMs > max ${n.maxVms}`)
  }
  return out
}

/** Violations in committed Raft state: over capacity × overcommit, constraints, anti-affinity, missing nodes. */
export function checkPlacementInvariants (nodes: NodeRecord[], vms: VmRecord[]): string[] {
  const assigned = vms.filter((v) => v.assignedNode !== null).map((v) => ({ request: requestFromVm(v), nodeId: v.assignedNode as string }))
  return checkAssignments(nodes, assigned)
}

/** The same checks over a placement cluster (its `placed` list against its nodes). */
export function checkClusterInvariants (cluster: PlacementCluster): string[] {
  return checkAssignments(cluster.nodes, cluster.placed)
}
