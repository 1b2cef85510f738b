// RPC methods for networks and volumes. Params are checked with the same schema as the
// Raft commands they become (validateCommand), so the RPC and the log accept the same values.
import type { Command } from './commands.ts'
import type { NetworkKind, NetworkRecord, VolumeRecord } from './model.ts'
import type { IdempotentParams, MethodSpec, ReadParams } from './rpc.ts'
import { validateCommand } from './command-schema.ts'
import { BlixardError } from './errors.ts'
import { bool, int, obj, opt, str } from './validate.ts'

export interface ResourceMethods {
  'network.create': { params: { name: string, kind: NetworkKind, subnet: string, gateway?: string | null } & IdempotentParams, result: NetworkRecord }
  'network.list': { params: ReadParams, result: NetworkRecord[] }
  'network.show': { params: ReadParams & { network: string }, result: NetworkRecord }
  'network.delete': { params: { network: string } & IdempotentParams, result: { name: string } }
  /** a volume recorded pending (pool: the answering node's ceph.pool, else rbd); the volume reconciler makes its RBD image (node/volumes/) */
  'volume.create': { params: { name: string, sizeGiB: number, pool?: string } & IdempotentParams, result: VolumeRecord }
  'volume.list': { params: ReadParams, result: VolumeRecord[] }
  'volume.show': { params: ReadParams & { volume: string }, result: VolumeRecord }
  'volume.resize': { params: { volume: string, sizeGiB: number } & IdempotentParams, result: VolumeRecord }
  'volume.snapshot': { params: { volume: string, snapshot: string } & IdempotentParams, result: VolumeRecord }
  /** a copy-on-write clone of a volume's snapshot (a golden image per VM) */
  'volume.clone': { params: { volume: string, snapshot: string, name: string, sizeGiB?: number } & IdempotentParams, result: VolumeRecord }
  'volume.delete': { params: { volume: string } & IdempotentParams, result: { name: string } }
}

type Table = { [M in keyof ResourceMethods]: MethodSpec<ResourceMethods[M]['params']> }

const NAME_MAX = 128

function checked<T extends Command['type']> (c: Extract<Command, { type: T }>): Extract<Command, { type: T }> {
  const v = validateCommand(c)
  if (!v.ok) throw new BlixardError(v.error.kind, v.error.message)
  return v.cmd as Extract<Command, { type: T }>
}

const p = (x: unknown, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> => obj(x ?? {}, 'params', allowed, required)
const stale = (o: Record<string, unknown>): ReadParams => {
  const s = opt(o, 'stale', bool, 'params')
  return s === undefined ? {} : { stale: s }
}
const nm = (x: unknown, path: string): string => str(x, path, NAME_MAX, 1)
const gib = (x: unknown, path: string): number => int(x, path, 1, 1 << 20)

export const RESOURCE_METHODS: Table = {
  'network.create': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = p(x, ['name', 'kind', 'subnet', 'gateway'], ['name', 'kind', 'subnet'])
      const c = checked<'CreateNetwork'>({ type: 'CreateNetwork', name: o.name as string, kind: o.kind as NetworkKind, subnet: o.subnet as string, ...(o.gateway !== undefined ? { gateway: o.gateway as string | null } : {}) })
      return { name: c.name, kind: c.kind, subnet: c.subnet, ...(c.gateway !== undefined ? { gateway: c.gateway } : {}) }
    }
  },
  'network.list': { mutating: false, streaming: false, params: (x) => stale(p(x, ['stale'])) },
  'network.show': { mutating: false, streaming: false, params: (x) => { const o = p(x, ['network', 'stale'], ['network']); return { ...stale(o), network: nm(o.network, 'params.network') } } },
  'network.delete': { mutating: true, streaming: false, params: (x) => ({ network: nm(p(x, ['network'], ['network']).network, 'params.network') }) },
  'volume.create': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = p(x, ['name', 'sizeGiB', 'pool'], ['name', 'sizeGiB'])
      const c = checked<'CreateVolume'>({ type: 'CreateVolume', name: o.name as string, pool: (o.pool ?? 'rbd') as string, sizeGiB: o.sizeGiB as number })
      return o.pool === undefined ? { name: c.name, sizeGiB: c.sizeGiB } : { name: c.name, sizeGiB: c.sizeGiB, pool: c.pool }
    }
  },
  'volume.list': { mutating: false, streaming: false, params: (x) => stale(p(x, ['stale'])) },
  'volume.show': { mutating: false, streaming: false, params: (x) => { const o = p(x, ['volume', 'stale'], ['volume']); return { ...stale(o), volume: nm(o.volume, 'params.volume') } } },
  'volume.resize': {
    mutating: true, streaming: false,
    params: (x) => { const o = p(x, ['volume', 'sizeGiB'], ['volume', 'sizeGiB']); const c = checked<'ResizeVolume'>({ type: 'ResizeVolume', name: o.volume as string, sizeGiB: o.sizeGiB as number }); return { volume: c.name, sizeGiB: c.sizeGiB } }
  },
  'volume.snapshot': {
    mutating: true, streaming: false,
    params: (x) => { const o = p(x, ['volume', 'snapshot'], ['volume', 'snapshot']); const c = checked<'SnapshotVolume'>({ type: 'SnapshotVolume', name: o.volume as string, snapshot: o.snapshot as string }); return { volume: c.name, snapshot: c.snapshot } }
  },
  'volume.clone': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = p(x, ['volume', 'snapshot', 'name', 'sizeGiB'], ['volume', 'snapshot', 'name'])
      const size = opt(o, 'sizeGiB', gib, 'params')
      const c = checked<'CreateVolume'>({ type: 'CreateVolume', name: o.name as string, pool: 'rbd', sizeGiB: size ?? 1, parent: { volume: o.volume as string, snapshot: o.snapshot as string } })
      return { volume: c.parent!.volume, snapshot: c.parent!.snapshot, name: c.name, ...(size !== undefined ? { sizeGiB: size } : {}) }
    }
  },
  'volume.delete': { mutating: true, streaming: false, params: (x) => ({ volume: nm(p(x, ['volume'], ['volume']).volume, 'params.volume') }) }
}
