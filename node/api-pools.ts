// RPC handlers of warm pools: the writes record the pool through Raft (admin-signed,
// storage/apply-pools.ts); every host keeps its guests to the record (node/pools/service.ts).
import type { Command } from '../protocols/commands.ts'
import type { ReadParams } from '../protocols/rpc.ts'
import type { WarmPoolRecord } from '../protocols/pools.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RpcCallContext, RpcHandlers } from './net/rpc.ts'

export interface PoolApiDeps {
  sm: StateMachine
  read: (p: ReadParams) => Promise<void>
  barrier: () => Promise<void>
  /** an applied idempotency key's stored result (thrown if it was an error), or null */
  prior: (key: string | undefined) => { value: unknown } | null
  /** proposes (admin-signed under cluster.prepare/submit) and answers with the command's result */
  /** `ctx`: the call's context (an admin write that cluster.submit runs proposes its signed command) */
  write: (cmd: Command, key: string | undefined, ctx: RpcCallContext) => Promise<unknown>
}

type PoolHandlers = Pick<RpcHandlers, 'pool.set' | 'pool.list' | 'pool.delete'>

export function createPoolApi (d: PoolApiDeps): PoolHandlers {
  return {
    'pool.set': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as WarmPoolRecord
      return await d.write({ type: 'SetWarmPool', name: p.name, vcpus: p.vcpus, memoryMiB: p.memoryMiB, size: p.size, ...(p.constraints !== undefined ? { constraints: p.constraints } : {}), ...(p.image !== undefined ? { image: p.image } : {}) }, p.idempotencyKey, ctx) as WarmPoolRecord
    },
    'pool.delete': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as { name: string, removed: true }
      return await d.write({ type: 'DeleteWarmPool', name: p.name }, p.idempotencyKey, ctx) as { name: string, removed: true }
    },
    'pool.list': async (p) => {
      await d.read(p)
      return d.sm.listWarmPools()
    }
  }
}
