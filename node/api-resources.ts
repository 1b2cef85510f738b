// RPC handlers for networks and volumes. Networks are metadata (each host's agent builds
// them). Volumes are metadata plus an RBD image: the node that receives the call does the
// Ceph side (a node without a Ceph config refuses to create one), with the Raft record first (it reserves the name and
// enforces the rules: grow only, no delete while attached or cloned) and rolled back when
// Ceph refuses.
import type { Command } from '../protocols/commands.ts'
import type { NetworkRecord, VolumeRecord } from '../protocols/model.ts'
import type { ReadParams } from '../protocols/rpc.ts'
import { RpcError } from '../protocols/rpc.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RbdClient } from '../storage/rbd.ts'
import { RbdError } from '../storage/ceph-errors.ts'
import type { RpcHandlers } from './net/rpc.ts'

export interface ResourceApiDeps {
  sm: StateMachine
  read: (p: ReadParams) => Promise<void>
  /** proposes under the client's idempotency key (or a fresh one); answers with the command's own result */
  write: (cmd: Command, key?: string) => Promise<unknown>
  /** a ReadIndex barrier: names are resolved, and Ceph acted on, only after it */
  barrier: () => Promise<void>
  /** this node's Ceph client and default pool; null: volumes are metadata only */
  ceph: () => { rbd: RbdClient, pool: string } | null
}

type ResourceHandlers = Pick<RpcHandlers, 'network.create' | 'network.list' | 'network.show' | 'network.delete' |
'volume.create' | 'volume.list' | 'volume.show' | 'volume.resize' | 'volume.snapshot' | 'volume.clone' | 'volume.delete'>

export function createResourceApi (d: ResourceApiDeps): ResourceHandlers {
  const network = (name: string): NetworkRecord => {
    const n = d.sm.getNetwork(name)
    if (n == null) throw new RpcError('NotFound', `no network named '${name}'`)
    return n
  }
  const volume = (name: string): VolumeRecord => {
    const v = d.sm.getVolume(name)
    if (v == null) throw new RpcError('NotFound', `no volume named '${name}'`)
    return v
  }
  /** A create needs this node's Ceph: without it the record would name an image nobody makes. */
  const cephOrRefuse = (name: string): { rbd: RbdClient, pool: string } => {
    const c = d.ceph()
    if (c == null) {
      throw new RpcError('Unavailable', `this node has no Ceph configured, so it cannot create the RBD image of volume ${name}: nothing was recorded. ` +
        'Send the command to a node whose config has a [ceph] section (blixard --peer ADDR ...), or add one to this node\'s config')
    }
    return c
  }
  /** the Ceph side of a create; on failure the Raft record goes again */
  const orUndo = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
    try { await fn() } catch (e) {
      await d.write({ type: 'DeleteVolume', name }).catch(() => {})
      throw e
    }
  }
  return {
    'network.create': async (p) => {
      return await d.write({ type: 'CreateNetwork', name: p.name, kind: p.kind, subnet: p.subnet, ...(p.gateway !== undefined ? { gateway: p.gateway } : {}) }, p.idempotencyKey) as NetworkRecord
    },
    'network.list': async (p) => { await d.read(p); return d.sm.listNetworks() },
    'network.show': async (p) => { await d.read(p); return network(p.network) },
    'network.delete': async (p) => { await d.write({ type: 'DeleteNetwork', name: p.network }, p.idempotencyKey); return { name: p.network } },

    'volume.create': async (p) => {
      const c = cephOrRefuse(p.name)
      const pool = p.pool ?? c.pool
      const v = await d.write({ type: 'CreateVolume', name: p.name, pool, sizeGiB: p.sizeGiB }, p.idempotencyKey) as VolumeRecord
      await orUndo(p.name, async () => await c.rbd.createImage(pool, p.name, p.sizeGiB))
      return v
    },
    'volume.list': async (p) => { await d.read(p); return d.sm.listVolumes() },
    'volume.show': async (p) => { await d.read(p); return volume(p.volume) },
    'volume.resize': async (p) => {
      const v = await d.write({ type: 'ResizeVolume', name: p.volume, sizeGiB: p.sizeGiB }, p.idempotencyKey) as VolumeRecord
      await d.ceph()?.rbd.resize(v.pool, v.name, p.sizeGiB)
      return v
    },
    'volume.snapshot': async (p) => {
      const v = await d.write({ type: 'SnapshotVolume', name: p.volume, snapshot: p.snapshot }, p.idempotencyKey) as VolumeRecord
      const c = d.ceph()
      if (c != null) {
        await c.rbd.snapshotCreate(v.pool, v.name, p.snapshot)
        await c.rbd.snapshotProtect(v.pool, v.name, p.snapshot) // clonable right away
      }
      return v
    },
    'volume.clone': async (p) => {
      await d.barrier()
      const parent = volume(p.volume)
      const c = cephOrRefuse(p.name)
      const size = p.sizeGiB ?? parent.sizeGiB
      const v = await d.write({ type: 'CreateVolume', name: p.name, pool: parent.pool, sizeGiB: size, parent: { volume: parent.name, snapshot: p.snapshot } }, p.idempotencyKey) as VolumeRecord
      await orUndo(p.name, async () => {
        await c.rbd.snapshotProtect(parent.pool, parent.name, p.snapshot)
        await c.rbd.clone({ pool: parent.pool, image: parent.name, snapshot: p.snapshot }, { pool: parent.pool, image: p.name })
        if (size > parent.sizeGiB) await c.rbd.resize(parent.pool, p.name, size)
      })
      return v
    },
    'volume.delete': async (p) => {
      // the Ceph side goes first, so decide on barriered state, not a lagging replica's
      await d.barrier()
      const v = volume(p.volume)
      // the state machine refuses these too, but only after the image would be gone
      if (v.attachedTo !== null) throw new RpcError('InUse', `volume ${v.name} is attached to VM ${v.attachedTo}`)
      const clone = d.sm.listVolumes().find((o) => o.parent?.volume === v.name)
      if (clone != null) throw new RpcError('InUse', `volume ${v.name} has a clone ${clone.name}`)
      const c = d.ceph()
      if (c != null && await c.rbd.exists(v.pool, v.name)) {
        for (const s of await c.rbd.snapshotList(v.pool, v.name)) {
          await c.rbd.snapshotUnprotect(v.pool, v.name, s.name)
          await c.rbd.snapshotRemove(v.pool, v.name, s.name)
        }
        await removeFencingStale(c.rbd, v.pool, v.name)
      }
      await d.write({ type: 'DeleteVolume', name: v.name }, p.idempotencyKey)
      return { name: v.name }
    }
  }
}

/**
 * Removes an image that Raft says no VM holds. Whoever still has it open is stale: a guest killed
 * a moment ago (Ceph drops its watch only after ~30 s) or a host cut off from the cluster. They
 * are fenced as a failover does (blocklisted, lock broken), then the removal is retried while
 * the OSDs drop their watches.
 */
async function removeFencingStale (rbd: RbdClient, pool: string, name: string): Promise<void> {
  const stale = (e: unknown): boolean => e instanceof RbdError && e.kind === 'InUse' && e.message.includes(' is open by ')
  try {
    await rbd.remove(pool, name)
    return
  } catch (e) {
    if (!stale(e)) throw e
  }
  await rbd.fence(pool, name)
  for (let attempt = 0; ; attempt++) {
    try {
      await rbd.remove(pool, name)
      return
    } catch (e) {
      if (!stale(e) || attempt >= 20) throw e
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
}
