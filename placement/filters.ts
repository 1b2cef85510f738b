// Feasibility filters: can this node run this VM at all? Each filter has a cheap allocation-free `passes`
// (the fast path) and a `reason` naming the filter and the numbers (explanations). `FILTERS` is the pipeline
// order; the first filter that fails is the one reported.
import type { Constraint } from '../protocols/model.ts'
import type { FilterName, PlacementNode, PlacementRequest } from './types.ts'

export interface Filter {
  name: FilterName
  passes: (node: PlacementNode, req: PlacementRequest) => boolean
  reason: (node: PlacementNode, req: PlacementRequest) => string
}

/** Effective capacity of one dimension: capacity × overcommit ratio. */
export function effective (capacity: number, ratio: number): number {
  return capacity * ratio
}

export const stateFilter: Filter = {
  name: 'state',
  passes: (node) => node.state === 'ready',
  reason: (node) => `state: node is ${node.state}, only ready nodes take new VMs`
}

export const cpuFilter: Filter = {
  name: 'cpu',
  passes: (node, req) => node.reserved.cpu + req.resources.cpu <= effective(node.capacity.cpu, node.overcommit.cpu),
  reason: (node, req) => `cpu: ${node.reserved.cpu} reserved + ${req.resources.cpu} requested > ${node.capacity.cpu} × ${node.overcommit.cpu} overcommit`
}

export const memoryFilter: Filter = {
  name: 'memory',
  passes: (node, req) => node.reserved.memoryMiB + req.resources.memoryMiB <= effective(node.capacity.memoryMiB, node.overcommit.memory),
  reason: (node, req) => `memory: ${node.reserved.memoryMiB} MiB reserved + ${req.resources.memoryMiB} MiB requested > ${node.capacity.memoryMiB} MiB × ${node.overcommit.memory} overcommit`
}

export const diskFilter: Filter = {
  name: 'disk',
  passes: (node, req) => node.reserved.diskGiB + req.resources.diskGiB <= effective(node.capacity.diskGiB, node.overcommit.disk),
  reason: (node, req) => `disk: ${node.reserved.diskGiB} GiB reserved + ${req.resources.diskGiB} GiB requested > ${node.capacity.diskGiB} GiB × ${node.overcommit.disk} overcommit`
}

export const maxVmsFilter: Filter = {
  name: 'max-vms',
  passes: (node) => node.maxVms === null || node.vmCount < node.maxVms,
  reason: (node) => `max-vms: node runs ${node.vmCount} of at most ${String(node.maxVms)} VMs`
}

export function constraintHolds (labels: Record<string, string>, c: Constraint): boolean {
  const raw: unknown = labels[c.label]
  const v = typeof raw === 'string' && Object.hasOwn(labels, c.label) ? raw : undefined
  switch (c.op) {
    case '==': return v === c.value
    case '!=': return v !== c.value
    case 'in': return v !== undefined && c.values.includes(v)
    case 'not in': return v === undefined || !c.values.includes(v)
    case 'exists': return v !== undefined
    case 'not exists': return v === undefined
  }
}

export function formatConstraint (c: Constraint): string {
  switch (c.op) {
    case 'in': case 'not in': return `${c.label} ${c.op} [${c.values.join(', ')}]`
    case 'exists': case 'not exists': return `${c.label} ${c.op}`
    default: return `${c.label} ${c.op} ${c.value}`
  }
}

export const constraintFilter: Filter = {
  name: 'constraint',
  passes: (node, req) => {
    for (let i = 0; i < req.constraints.length; i++) if (!constraintHolds(node.labels, req.constraints[i])) return false
    return true
  },
  reason: (node, req) => {
    const c = req.constraints.find((c) => !constraintHolds(node.labels, c))
    const have = c === undefined ? '' : (Object.hasOwn(node.labels, c.label) ? `${c.label}=${node.labels[c.label]}` : `no label ${c.label}`)
    return c === undefined ? 'constraint: ok' : `constraint: ${formatConstraint(c)} fails (node has ${have})`
  }
}

export const capabilityFilter: Filter = {
  name: 'capability',
  passes: (node, req) => {
    for (let i = 0; i < req.requires.length; i++) if (!node.capabilities.includes(req.requires[i])) return false
    return true
  },
  reason: (node, req) => `capability: needs ${req.requires.filter((c) => !node.capabilities.includes(c)).join(', ')}; node has [${node.capabilities.join(', ')}]`
}

export const antiAffinityFilter: Filter = {
  name: 'anti-affinity',
  passes: (node, req) => req.antiAffinityGroup === null || !((node.groups[req.antiAffinityGroup] ?? 0) > 0),
  reason: (node, req) => `anti-affinity: group ${String(req.antiAffinityGroup)} already has ${node.groups[req.antiAffinityGroup ?? ''] ?? 0} VM(s) on this node`
}

/** A clone whose snapshot state is a local file starts only on the node holding it. */
export const snapshotFilter: Filter = {
  name: 'snapshot',
  passes: (node, req) => req.snapshot == null || req.snapshot.pinnedTo === null || req.snapshot.pinnedTo === node.id,
  reason: (_node, req) => `snapshot: the snapshot's state is a local file on node ${String(req.snapshot?.pinnedTo)}, the only host that can start this clone`
}

/** Pipeline order: static checks first, then capacity, then per-node counts. */
export const FILTERS: readonly Filter[] = [stateFilter, snapshotFilter, constraintFilter, capabilityFilter, cpuFilter, memoryFilter, diskFilter, maxVmsFilter, antiAffinityFilter]

/** Null when the node passes every filter, else the first failing filter and its reason. */
export function firstRejection (node: PlacementNode, req: PlacementRequest): { filter: FilterName, reason: string } | null {
  for (const f of FILTERS) if (!f.passes(node, req)) return { filter: f.name, reason: f.reason(node, req) }
  return null
}

export function feasible (node: PlacementNode, req: PlacementRequest): boolean {
  for (let i = 0; i < FILTERS.length; i++) if (!FILTERS[i].passes(node, req)) return false
  return true
}

// One function per filter returning null (pass) or the reason, as the CLI and tests read them.
function asCheck (f: Filter): (node: PlacementNode, req: PlacementRequest) => string | null {
  return (node, req) => f.passes(node, req) ? null : f.reason(node, req)
}
export const checkState = asCheck(stateFilter)
export const checkCpu = asCheck(cpuFilter)
export const checkMemory = asCheck(memoryFilter)
export const checkDisk = asCheck(diskFilter)
export const checkMaxVms = asCheck(maxVmsFilter)
export const checkConstraints = asCheck(constraintFilter)
export const checkCapability = asCheck(capabilityFilter)
export const checkAntiAffinity = asCheck(antiAffinityFilter)
