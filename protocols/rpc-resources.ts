// RPC methods for networks and volumes. Params are declared with the same pieces as the Raft
// commands they become (protocols/command-schema.ts) and checked in those commands' words, so
// the RPC and the log accept the same values.
import type { NetworkRecord, VolumeRecord } from './model.ts'
import type { IdempotentParams, MethodSpec } from './rpc.ts'
import { ADDRESS_TEXT, NAME, NETWORK_KIND, VOLUME_GIB, networkProblem } from './command-schema.ts'
import type { Infer, Schema } from './schema.ts'
import { compile, s } from './schema.ts'

export interface ResourceMethods {
  'network.create': { params: P<'network.create'> & IdempotentParams, result: NetworkRecord }
  'network.list': { params: P<'network.list'>, result: NetworkRecord[] }
  'network.show': { params: P<'network.show'>, result: NetworkRecord }
  'network.delete': { params: P<'network.delete'> & IdempotentParams, result: { name: string } }
  /** a volume recorded pending (pool: the answering node's ceph.pool, else rbd); the volume reconciler makes its RBD image (node/volumes/) */
  'volume.create': { params: P<'volume.create'> & IdempotentParams, result: VolumeRecord }
  'volume.list': { params: P<'volume.list'>, result: VolumeRecord[] }
  'volume.show': { params: P<'volume.show'>, result: VolumeRecord }
  'volume.resize': { params: P<'volume.resize'> & IdempotentParams, result: VolumeRecord }
  'volume.snapshot': { params: P<'volume.snapshot'> & IdempotentParams, result: VolumeRecord }
  /** a copy-on-write clone of a volume's snapshot (a golden image per VM) */
  'volume.clone': { params: P<'volume.clone'> & IdempotentParams, result: VolumeRecord }
  'volume.delete': { params: P<'volume.delete'> & IdempotentParams, result: { name: string } }
}

type Table = { [M in keyof ResourceMethods]: MethodSpec<ResourceMethods[M]['params']> }

/** A param checked as the command it becomes checks it, in that command's words and kinds
 * (InvalidSpec for a bad name or size), named as the param is. */
const asCommand = <T>(node: Schema<T>, param: string): Schema<T> => s.custom(compile(node, param))

const ref = s.str(128, { min: 1 })
const stale = { stale: s.bool() }

export const RESOURCE_PARAMS = {
  'network.create': s.refine(s.obj({ name: asCommand(NAME, 'name'), kind: asCommand(NETWORK_KIND, 'kind'), subnet: asCommand(ADDRESS_TEXT, 'subnet') }, { gateway: asCommand(s.nullable(ADDRESS_TEXT), 'gateway') }),
    (v) => { const p = networkProblem(v); return p === undefined ? undefined : { kind: p.kind, message: (path) => p.message(path, '') } }),
  'network.list': s.obj({}, stale),
  'network.show': s.obj({ network: ref }, stale),
  'network.delete': s.obj({ network: ref }),
  'volume.create': s.obj({ name: asCommand(NAME, 'name'), sizeGiB: asCommand(VOLUME_GIB, 'sizeGiB') }, { pool: asCommand(NAME, 'pool') }),
  'volume.list': s.obj({}, stale),
  'volume.show': s.obj({ volume: ref }, stale),
  'volume.resize': s.obj({ volume: asCommand(NAME, 'volume'), sizeGiB: asCommand(VOLUME_GIB, 'sizeGiB') }),
  'volume.snapshot': s.obj({ volume: asCommand(NAME, 'volume'), snapshot: asCommand(NAME, 'snapshot') }),
  'volume.clone': s.obj({ volume: asCommand(NAME, 'volume'), snapshot: asCommand(NAME, 'snapshot'), name: asCommand(NAME, 'name') }, { sizeGiB: s.int(1, 1 << 20) }),
  'volume.delete': s.obj({ volume: ref })
} as const

type P<M extends keyof typeof RESOURCE_PARAMS> = Infer<(typeof RESOURCE_PARAMS)[M]>

function method<M extends keyof typeof RESOURCE_PARAMS> (m: M, mutating: boolean): MethodSpec<P<M>> {
  const check = compile<P<M>>(RESOURCE_PARAMS[m] as Schema<P<M>>, 'params', 'params.', 'wire')
  return { mutating, streaming: false, params: (x) => check(x ?? {}) }
}

export const RESOURCE_METHODS: Table = {
  'network.create': method('network.create', true),
  'network.list': method('network.list', false),
  'network.show': method('network.show', false),
  'network.delete': method('network.delete', true),
  'volume.create': method('volume.create', true),
  'volume.list': method('volume.list', false),
  'volume.show': method('volume.show', false),
  'volume.resize': method('volume.resize', true),
  'volume.snapshot': method('volume.snapshot', true),
  'volume.clone': method('volume.clone', true),
  'volume.delete': method('volume.delete', true)
}
