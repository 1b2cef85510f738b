// Warm pools in the replicated state (the record and the hosts' decisions are
// protocols/pools.ts). Pools are rows of the `settings` table under `warmPool/`. Pure: the only
// clock is envelope.at. Each host reads the rows and keeps its own guests to them
// (node/pools/service.ts); nothing per guest is recorded here.
import type { PoolCommand, WarmPoolRecord } from '../protocols/pools.ts'
import { MAX_WARM_POOLS, POOL_RANGE, poolImage, poolKey, unwarmableImage } from '../protocols/pools.ts'
import { imageLabel, sameImage } from '../protocols/images.ts'
import type { KvTx } from './kv.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'

type Cmd<T extends PoolCommand['type']> = Extract<PoolCommand, { type: T }>

export function listPools (tx: Pick<KvTx, 'range'>): WarmPoolRecord[] {
  return tx.range<WarmPoolRecord>('settings', POOL_RANGE).map(([, p]) => p)
}

export function setWarmPool (ctx: ApplyContext, c: Cmd<'SetWarmPool'>): WarmPoolRecord {
  const old = ctx.tx.get<WarmPoolRecord>('settings', poolKey(c.name))
  if (old === undefined && listPools(ctx.tx).length >= MAX_WARM_POOLS) reject('NoCapacity', `the cluster has ${MAX_WARM_POOLS} warm pools, the most it keeps: delete one first`)
  const image = poolImage(c)
  const why = unwarmableImage(image)
  if (why !== null) reject('InvalidSpec', `warm pool ${c.name}: ${why}`)
  // two pools of one image and shape: a create would only ever claim from the first (by name), so
  // the second would hold memory on every node for nothing
  const twin = listPools(ctx.tx).find((p) => p.name !== c.name && sameImage(poolImage(p), image) && p.vcpus === c.vcpus && p.memoryMiB === c.memoryMiB)
  if (twin !== undefined) reject('AlreadyExists', `warm pool ${twin.name} already holds guests of image ${imageLabel(image)}, ${c.vcpus} vCPU × ${c.memoryMiB} MiB: resize it instead`)
  const rec: WarmPoolRecord = { name: c.name, image, vcpus: c.vcpus, memoryMiB: c.memoryMiB, size: c.size, setAt: ctx.at, ...(c.constraints !== undefined && c.constraints.length > 0 ? { constraints: c.constraints } : {}) }
  ctx.tx.put('settings', poolKey(c.name), rec)
  return rec
}

export function deleteWarmPool (ctx: ApplyContext, c: Cmd<'DeleteWarmPool'>): { name: string, removed: true } {
  if (ctx.tx.get('settings', poolKey(c.name)) === undefined) reject('NotFound', `no warm pool named ${c.name}`)
  ctx.tx.delete('settings', poolKey(c.name))
  return { name: c.name, removed: true }
}
