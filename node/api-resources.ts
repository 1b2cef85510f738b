// RPC handlers for networks and volumes. Networks are metadata (each host's agent builds
// them). Volumes are desired state too: a handler records the change through Raft (the state
// machine enforces the rules: grow only, no delete while attached or cloned) and the volume
// reconciler on a node with Ceph makes the RBD image match and reports (node/volumes/), so the
// outcome does not depend on which node the CLI reached. `blixard volume create --wait` follows
// the volume's phase to ready or failed.
import { BlixardError } from '../protocols/errors.ts'
import type { Command } from '../protocols/commands.ts'
import type { NetworkRecord, VolumeRecord } from '../protocols/model.ts'
import type { ReadParams } from '../protocols/rpc.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { CEPH_CONFIG_HINT, volumeReconciler } from '../protocols/volume-phases.ts'
import { ListAnswer, type RpcCallContext, type RpcHandlers } from './net/rpc.ts'

export interface ResourceApiDeps {
  sm: StateMachine
  read: (p: ReadParams) => Promise<void>
  /** proposes under the client's idempotency key (or a fresh one); answers with the command's own result */
  /** `ctx`: the call's context (an admin write that cluster.submit runs proposes its signed command) */
  write: (cmd: Command, key: string | undefined, ctx: RpcCallContext) => Promise<unknown>
  /** a ReadIndex barrier: names are resolved, and the nodes with Ceph judged, only after it */
  barrier: () => Promise<void>
  /** the pool of a volume created without one (this node's config: ceph.pool, default rbd) */
  defaultPool: () => string
}

type ResourceHandlers = Pick<RpcHandlers, 'network.create' | 'network.list' | 'network.show' | 'network.delete' |
'volume.create' | 'volume.list' | 'volume.show' | 'volume.resize' | 'volume.snapshot' | 'volume.clone' | 'volume.delete'>

export function createResourceApi (d: ResourceApiDeps): ResourceHandlers {
  const network = (name: string): NetworkRecord => {
    const n = d.sm.getNetwork(name)
    if (n == null) throw new BlixardError('NotFound', `no network named '${name}'`)
    return n
  }
  const volume = (name: string): VolumeRecord => {
    const v = d.sm.getVolume(name)
    if (v == null) throw new BlixardError('NotFound', `no volume named '${name}'`)
    return v
  }
  /** A new image needs a node that can reach Ceph to make it: without one the record would wait
   * for nobody, so the write is refused before anything is recorded (on barriered state). */
  const refuseWithoutCeph = (what: string): void => {
    if (volumeReconciler(d.sm.listNodes()) !== null) return
    throw new BlixardError('NoCapacity', `cannot ${what}: no node in the cluster can reach Ceph to make its RBD image, so nothing was recorded. To fix it, ${CEPH_CONFIG_HINT}`)
  }
  return {
    'network.create': async (p, ctx) => {
      return await d.write({ type: 'CreateNetwork', name: p.name, kind: p.kind, subnet: p.subnet, ...(p.gateway !== undefined ? { gateway: p.gateway } : {}) }, p.idempotencyKey, ctx) as NetworkRecord
    },
    'network.list': async (p) => { await d.read(p); return new ListAnswer(d.sm.each('networks'), 'network.list') },
    'network.show': async (p) => { await d.read(p); return network(p.network) },
    'network.delete': async (p, ctx) => { await d.write({ type: 'DeleteNetwork', name: p.network }, p.idempotencyKey, ctx); return { name: p.network } },

    'volume.create': async (p, ctx) => {
      await d.barrier()
      refuseWithoutCeph(`create volume ${p.name}`)
      return await d.write({ type: 'CreateVolume', name: p.name, pool: p.pool ?? d.defaultPool(), sizeGiB: p.sizeGiB }, p.idempotencyKey, ctx) as VolumeRecord
    },
    'volume.list': async (p) => { await d.read(p); return new ListAnswer(d.sm.each('volumes'), 'volume.list') },
    'volume.show': async (p) => { await d.read(p); return volume(p.volume) },
    'volume.resize': async (p, ctx) => await d.write({ type: 'ResizeVolume', name: p.volume, sizeGiB: p.sizeGiB }, p.idempotencyKey, ctx) as VolumeRecord,
    'volume.snapshot': async (p, ctx) => await d.write({ type: 'SnapshotVolume', name: p.volume, snapshot: p.snapshot }, p.idempotencyKey, ctx) as VolumeRecord,
    'volume.clone': async (p, ctx) => {
      await d.barrier()
      const parent = volume(p.volume)
      refuseWithoutCeph(`clone volume ${parent.name} into ${p.name}`)
      const size = p.sizeGiB ?? parent.sizeGiB
      return await d.write({ type: 'CreateVolume', name: p.name, pool: parent.pool, sizeGiB: size, parent: { volume: parent.name, snapshot: p.snapshot } }, p.idempotencyKey, ctx) as VolumeRecord
    },
    'volume.delete': async (p, ctx) => {
      // the state machine refuses an attached or cloned volume; the reconciler removes the image
      await d.write({ type: 'DeleteVolume', name: p.volume }, p.idempotencyKey, ctx)
      return { name: p.volume }
    }
  }
}
