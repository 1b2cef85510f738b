// fast-check generators of command envelopes over small name pools, so that random sequences
// collide often (duplicates, references to missing or busy objects, exhausted subnets).
import fc from 'fast-check'
import type { Command, CommandEnvelope } from '../../protocols/commands.ts'
import type { VmSpec } from '../../protocols/model.ts'

const nodeIds = ['n1', 'n2', 'n3']
const vmIds = ['v1', 'v2', 'v3', 'v4']
const vmNames = ['web', 'db', 'cache']
const volumes = ['vol-a', 'vol-b', 'vol-c']
const snaps = ['s1', 's2']
const networks = ['net-a', 'net-b']
const peers = ['p1', 'p2', 'p3']

const pick = <T>(xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs)

export function specArb (): fc.Arbitrary<VmSpec> {
  return fc.record({
    name: pick(vmNames),
    vcpus: fc.constantFrom(1, 2, 4, 0, 300),
    memoryMiB: fc.constantFrom(64, 512, 1024, 32),
    diskGiB: fc.constantFrom(1, 10),
    volumes: fc.subarray(volumes, { maxLength: 2 }),
    networks: fc.subarray(networks, { maxLength: 2 })
  }).map(r => ({
    name: r.name,
    vcpus: r.vcpus,
    memoryMiB: r.memoryMiB,
    diskGiB: r.diskGiB,
    hypervisor: 'qemu' as const,
    image: { kind: 'tiny' as const },
    volumes: r.volumes,
    networks: r.networks,
    kernelParams: [],
    constraints: [],
    antiAffinityGroup: null,
    affinity: [],
    spreadLabel: null,
    priority: 0,
    restartPolicy: 'always' as const,
    requires: []
  }))
}

export function commandArb (): fc.Arbitrary<Command> {
  return fc.oneof(
    fc.record({ id: pick(nodeIds), cpu: fc.constantFrom(2, 8), addr: fc.constantFrom('a', 'b') }).map(({ id, cpu, addr }): Command => ({
      type: 'RegisterNode',
      node: { id, name: `node-${id}`, addrs: [`/ip4/127.0.0.1/tcp/${addr === 'a' ? 1 : 2}`], labels: {}, capacity: { cpu, memoryMiB: 2048, diskGiB: 100 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, capabilities: ['qemu'], maxVms: 3 }
    })),
    fc.record({ id: pick(nodeIds), state: fc.constantFrom('ready' as const, 'cordoned' as const, 'down' as const) }).map(({ id, state }): Command => ({ type: 'UpdateNode', id, state })),
    fc.record({ id: pick(nodeIds) }).map(({ id }): Command => ({ type: 'RemoveNode', id })),
    fc.record({ id: pick(vmIds), spec: specArb() }).map(({ id, spec }): Command => ({ type: 'CreateVm', id, spec })),
    fc.record({ id: pick(vmIds), spec: specArb(), g: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }) }).map(({ id, spec, g }): Command => g === undefined ? { type: 'UpdateVmSpec', id, spec } : { type: 'UpdateVmSpec', id, spec, ifGeneration: g }),
    fc.record({ id: pick(vmIds), d: fc.constantFrom('running' as const, 'stopped' as const) }).map(({ id, d }): Command => ({ type: 'SetVmDesiredState', id, desired: d })),
    fc.record({ id: pick(vmIds), node: fc.option(pick(nodeIds), { nil: null }) }).map(({ id, node }): Command => ({ type: 'AssignVm', id, node })),
    fc.array(fc.record({ id: pick(vmIds), node: pick(nodeIds), generation: fc.constantFrom(1, 2), phase: fc.constantFrom('running' as const, 'failed' as const) }), { minLength: 1, maxLength: 3 })
      .map((rs): Command => ({ type: 'ReportVmStatus', reports: rs.map(r => ({ id: r.id, node: r.node, generation: r.generation, status: { phase: r.phase, reason: 'r', at: 7 } })) })),
    fc.record({ id: pick(vmIds) }).map(({ id }): Command => ({ type: 'DeleteVm', id })),
    fc.record({ name: pick(volumes), size: fc.constantFrom(5, 10), parent: fc.option(fc.record({ volume: pick(volumes), snapshot: pick(snaps) }), { nil: null }) })
      .map(({ name, size, parent }): Command => ({ type: 'CreateVolume', name, pool: 'rbd', sizeGiB: size, parent })),
    fc.record({ name: pick(volumes), size: fc.constantFrom(4, 10, 20) }).map(({ name, size }): Command => ({ type: 'ResizeVolume', name, sizeGiB: size })),
    fc.record({ name: pick(volumes), snapshot: pick(snaps) }).map(({ name, snapshot }): Command => ({ type: 'SnapshotVolume', name, snapshot })),
    fc.record({ name: pick(volumes) }).map(({ name }): Command => ({ type: 'DeleteVolume', name })),
    fc.record({ name: pick(networks), sub: fc.constantFrom('10.0.0.0/29', '10.1.0.0/30', '10.2.0.1/24') }).map(({ name, sub }): Command => ({
      type: 'CreateNetwork', name, kind: { type: 'vxlan', vni: 100 }, subnet: sub, gateway: sub === '10.1.0.0/30' ? null : sub.replace(/\.0\/\d+$/, '.1').replace(/\/\d+$/, '')
    })),
    fc.record({ name: pick(networks) }).map(({ name }): Command => ({ type: 'DeleteNetwork', name })),
    fc.record({ network: pick(networks), vm: pick(vmIds) }).map(({ network, vm }): Command => ({ type: 'AllocateIp', network, vm })),
    fc.record({ network: pick(networks), vm: pick(vmIds) }).map(({ network, vm }): Command => ({ type: 'ReleaseIp', network, vm })),
    fc.record({ p: pick(peers) }).map(({ p }): Command => ({ type: 'AddAdmin', peerId: p, name: `admin ${p}` })),
    fc.record({ p: pick(peers) }).map(({ p }): Command => ({ type: 'RemoveAdmin', peerId: p }))
  )
}

export function envelopeArb (): fc.Arbitrary<CommandEnvelope> {
  return fc.record({ cmd: commandArb(), at: fc.integer({ min: 1, max: 1e9 }), key: fc.option(fc.constantFrom('k1', 'k2', 'k3', 'k4'), { nil: undefined }) })
    .map(({ cmd, at, key }) => key === undefined ? { cmd, at } : { cmd, at, key })
}
