// Builders and fast-check arbitraries for placement tests.
import fc from 'fast-check'
import type { Constraint, HypervisorCapability, NodeState } from '../../protocols/model.ts'
import type { PlacementCluster, PlacementNode, PlacementRequest } from '../../placement/types.ts'

export function node (id: string, over: Partial<PlacementNode> = {}): PlacementNode {
  return {
    id,
    labels: {},
    capacity: { cpu: 16, memoryMiB: 65536, diskGiB: 1000 },
    overcommit: { cpu: 1, memory: 1, disk: 1 },
    reserved: { cpu: 0, memoryMiB: 0, diskGiB: 0 },
    state: 'ready',
    capabilities: ['kvm', 'qemu', 'nix'],
    maxVms: null,
    vmCount: 0,
    groups: {},
    load: null,
    ...over
  }
}

export function vm (vmId: string, over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    vmId,
    resources: { cpu: 2, memoryMiB: 4096, diskGiB: 20 },
    constraints: [],
    antiAffinityGroup: null,
    affinity: [],
    spreadLabel: null,
    priority: 50,
    requires: [],
    ...over
  }
}

const zones = ['a', 'b', 'c']
const arches = ['x86_64', 'aarch64']
const caps: HypervisorCapability[] = ['kvm', 'nix', 'qemu']

export const arbNode = (i: number): fc.Arbitrary<PlacementNode> => fc.record({
  zone: fc.constantFrom(...zones),
  arch: fc.constantFrom(...arches),
  gpu: fc.boolean(),
  cpu: fc.integer({ min: 2, max: 32 }),
  memG: fc.integer({ min: 2, max: 64 }),
  disk: fc.integer({ min: 20, max: 400 }),
  ocpu: fc.constantFrom(1, 1.5, 2, 4),
  omem: fc.constantFrom(1, 1.25),
  state: fc.constantFrom<NodeState>('ready', 'ready', 'ready', 'ready', 'cordoned', 'draining', 'down'),
  caps: fc.subarray(caps, { minLength: 1 }),
  maxVms: fc.option(fc.integer({ min: 1, max: 12 }), { nil: null }),
  load: fc.option(fc.record({ cpuPct: fc.integer({ min: 0, max: 100 }), memPct: fc.integer({ min: 0, max: 100 }), ageMs: fc.integer({ min: 0, max: 30_000 }) }), { nil: null }),
  // paused warm guests per pool (as a fresh or stale load report told)
  warm: fc.option(fc.record({ fn: fc.integer({ min: 0, max: 2 }), big: fc.integer({ min: 0, max: 1 }) }), { nil: undefined })
}).map((r) => node(`n${String(i).padStart(3, '0')}`, {
  labels: r.gpu ? { zone: r.zone, arch: r.arch, gpu: 'yes' } : { zone: r.zone, arch: r.arch },
  capacity: { cpu: r.cpu, memoryMiB: r.memG * 1024, diskGiB: r.disk },
  overcommit: { cpu: r.ocpu, memory: r.omem, disk: 1 },
  state: r.state,
  capabilities: r.caps,
  maxVms: r.maxVms,
  load: r.load,
  ...(r.warm !== undefined ? { warm: r.warm } : {})
}))

export const arbConstraint: fc.Arbitrary<Constraint> = fc.oneof(
  fc.constantFrom(...arches).map((v): Constraint => ({ label: 'arch', op: '==', value: v })),
  fc.constantFrom(...zones).map((v): Constraint => ({ label: 'zone', op: '!=', value: v })),
  fc.subarray(zones, { minLength: 1 }).map((v): Constraint => ({ label: 'zone', op: 'in', values: v })),
  fc.subarray(zones, { minLength: 1, maxLength: 2 }).map((v): Constraint => ({ label: 'zone', op: 'not in', values: v })),
  fc.constant<Constraint>({ label: 'gpu', op: 'exists' }),
  fc.constant<Constraint>({ label: 'gpu', op: 'not exists' })
)

export const arbRequest = (i: number): fc.Arbitrary<PlacementRequest> => fc.record({
  cpu: fc.integer({ min: 1, max: 8 }),
  memG: fc.integer({ min: 1, max: 16 }),
  disk: fc.integer({ min: 1, max: 80 }),
  constraints: fc.array(arbConstraint, { maxLength: 2 }),
  group: fc.option(fc.constantFrom('g1', 'g2', 'g3'), { nil: null }),
  affinity: fc.array(fc.record({ label: fc.constant('zone'), value: fc.constantFrom(...zones), weight: fc.integer({ min: -3, max: 3 }) }), { maxLength: 2 }),
  spread: fc.option(fc.constantFrom('zone', 'arch'), { nil: null }),
  priority: fc.integer({ min: 0, max: 100 }),
  requires: fc.subarray(caps, { maxLength: 2 }),
  warmPool: fc.option(fc.constantFrom('fn', 'big'), { nil: undefined }),
  // a clone's first start: the nodes with its snapshot on hand (ids as arbNode names them, some
  // absent from the cluster), sometimes pinned to one
  snapshot: fc.option(fc.record({ cachedOn: fc.subarray(['n000', 'n001', 'n003', 'n007', 'n042']), pinnedTo: fc.option(fc.constantFrom('n001', 'n003'), { nil: null }) }), { nil: undefined })
}).map((r) => vm(`vm${String(i).padStart(4, '0')}`, {
  ...(r.warmPool !== undefined ? { warmPool: r.warmPool } : {}),
  ...(r.snapshot !== undefined ? { snapshot: r.snapshot } : {}),
  resources: { cpu: r.cpu, memoryMiB: r.memG * 1024, diskGiB: r.disk },
  constraints: r.constraints,
  antiAffinityGroup: r.group,
  affinity: r.affinity,
  spreadLabel: r.spread,
  priority: r.priority,
  requires: r.requires
}))

export const arbNodes = (min = 1, max = 12): fc.Arbitrary<PlacementNode[]> =>
  fc.integer({ min, max }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => arbNode(i))))

export const arbRequests = (min = 1, max = 40): fc.Arbitrary<PlacementRequest[]> =>
  fc.integer({ min, max }).chain((n) => n === 0 ? fc.constant([]) : fc.tuple(...Array.from({ length: n }, (_, i) => arbRequest(i))))

export const emptyCluster = (nodes: PlacementNode[]): PlacementCluster => ({ nodes, placed: [] })

/** A deterministic shuffle driven by fast-check's seed (no Math.random). */
export function permute<T> (xs: readonly T[], keys: readonly number[]): T[] {
  return xs.map((x, i) => ({ x, k: keys[i % Math.max(1, keys.length)] ?? 0, i })).sort((a, b) => a.k - b.k || a.i - b.i).map((e) => e.x)
}
