// RPC methods of warm pools (the record is protocols/pools.ts). Params go through the same
// checks as the commands they become (POOL_COMMANDS), so the RPC and the log accept the same values.
import type { IdempotentParams, MethodSpec, ReadParams } from './rpc.ts'
import type { WarmPoolRecord } from './pools.ts'
import type { Constraint } from './model.ts'
import type { VmImage } from './images.ts'
import { POOL_FIELDS, POOL_OPTIONAL } from './command-schema.ts'
import { compile, s } from './schema.ts'

export interface PoolMethods {
  /** declares or resizes a warm pool: `size` pre-booted paused guests of `image` (default tiny) and
   * vcpus × memoryMiB per node */
  'pool.set': { params: { name: string, vcpus: number, memoryMiB: number, size: number, constraints?: Constraint[], image?: VmImage } & IdempotentParams, result: WarmPoolRecord }
  /** the declared pools, by name */
  'pool.list': { params: ReadParams, result: WarmPoolRecord[] }
  /** removes a pool; every host removes its guests of it */
  'pool.delete': { params: { name: string } & IdempotentParams, result: { name: string, removed: true } }
}

type Table = { [M in keyof PoolMethods]: MethodSpec<PoolMethods[M]['params']> }

/** params, declared with the commands they become (POOL_FIELDS), checked in the wire dialect */
const checkSet = compile(s.obj(POOL_FIELDS, POOL_OPTIONAL), 'params', 'params.', 'wire')
const checkDelete = compile(s.obj({ name: POOL_FIELDS.name }), 'params', 'params.', 'wire')
const checkList = compile(s.obj({}, { stale: s.bool() }), 'params', 'params.', 'wire')

export const POOL_METHODS: Table = {
  'pool.set': { mutating: true, streaming: false, params: (x) => checkSet(x ?? {}) },
  'pool.delete': { mutating: true, streaming: false, params: (x) => checkDelete(x ?? {}) },
  'pool.list': { mutating: false, streaming: false, params: (x) => checkList(x ?? {}) }
}
