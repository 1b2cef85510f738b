// RPC methods of warm pools (issue 18; the record is protocols/pools.ts). Params go through the same
// checks as the commands they become (POOL_COMMANDS), so the RPC and the log accept the same values.
import type { IdempotentParams, MethodSpec, ReadParams } from './rpc.ts'
import type { WarmPoolRecord } from './pools.ts'
import type { Constraint } from './model.ts'
import { POOL_COMMANDS } from './command-schema.ts'
import { compile } from './schema.ts'
import { bool, obj, opt } from './validate.ts'

export interface PoolMethods {
  /** declares or resizes a warm pool: `size` pre-booted paused guests of vcpus × memoryMiB per node */
  'pool.set': { params: { name: string, vcpus: number, memoryMiB: number, size: number, constraints?: Constraint[] } & IdempotentParams, result: WarmPoolRecord }
  /** the declared pools, by name */
  'pool.list': { params: ReadParams, result: WarmPoolRecord[] }
  /** removes a pool; every host removes its guests of it */
  'pool.delete': { params: { name: string } & IdempotentParams, result: { name: string, removed: true } }
}

type Table = { [M in keyof PoolMethods]: MethodSpec<PoolMethods[M]['params']> }

const setShape = compile(POOL_COMMANDS[0], 'params', 'params.', 'wire')
const deleteShape = compile(POOL_COMMANDS[1], 'params', 'params.', 'wire')

export const POOL_METHODS: Table = {
  'pool.set': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = obj(x ?? {}, 'params', ['name', 'vcpus', 'memoryMiB', 'size', 'constraints'], ['name', 'vcpus', 'memoryMiB', 'size'])
      const c = setShape({ type: 'SetWarmPool', ...o })
      return { name: c.name, vcpus: c.vcpus, memoryMiB: c.memoryMiB, size: c.size, ...(c.constraints !== undefined ? { constraints: c.constraints } : {}) }
    }
  },
  'pool.delete': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = obj(x ?? {}, 'params', ['name'], ['name'])
      return { name: deleteShape({ type: 'DeleteWarmPool', ...o }).name }
    }
  },
  'pool.list': {
    mutating: false, streaming: false,
    params: (x) => {
      const o = obj(x ?? {}, 'params', ['stale'])
      const stale = opt(o, 'stale', bool, 'params')
      return stale !== undefined ? { stale } : {}
    }
  }
}
