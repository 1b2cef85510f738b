// Volumes (Ceph RBD images, as metadata): create or clone, grow, snapshot, delete.
import type { Command } from '../protocols/commands.ts'
import type { VolumeRecord } from '../protocols/model.ts'
import { COMMAND_LIMITS } from '../protocols/command-schema.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

function getVolume (ctx: ApplyContext, name: string): VolumeRecord {
  const v = ctx.tx.get<VolumeRecord>('volumes', name)
  if (v === undefined) reject('NotFound', `volume ${name} not found`)
  return v
}

export function createVolume (ctx: ApplyContext, c: Cmd<'CreateVolume'>): VolumeRecord {
  if (ctx.tx.get<VolumeRecord>('volumes', c.name) !== undefined) reject('AlreadyExists', `volume ${c.name} already exists`)
  const parent = c.parent ?? null
  if (parent !== null) {
    const p = getVolume(ctx, parent.volume)
    if (!p.snapshots.includes(parent.snapshot)) reject('NotFound', `volume ${p.name} has no snapshot ${parent.snapshot}`)
    if (c.sizeGiB < p.sizeGiB) reject('InvalidSpec', `a clone of ${p.name} needs at least ${p.sizeGiB} GiB`)
  }
  const rec: VolumeRecord = { name: c.name, pool: c.pool, sizeGiB: c.sizeGiB, snapshots: [], parent, attachedTo: null, createdAt: ctx.at }
  ctx.tx.put('volumes', c.name, rec)
  return rec
}

/** Only grows: shrinking would cut a filesystem the guest still believes in. */
export function resizeVolume (ctx: ApplyContext, c: Cmd<'ResizeVolume'>): VolumeRecord {
  const v = getVolume(ctx, c.name)
  if (c.sizeGiB < v.sizeGiB) reject('InvalidSpec', `volume ${v.name} is ${v.sizeGiB} GiB and can only grow`)
  const rec = { ...v, sizeGiB: c.sizeGiB }
  ctx.tx.put('volumes', v.name, rec)
  return rec
}

export function snapshotVolume (ctx: ApplyContext, c: Cmd<'SnapshotVolume'>): VolumeRecord {
  const v = getVolume(ctx, c.name)
  if (v.snapshots.includes(c.snapshot)) reject('AlreadyExists', `volume ${v.name} already has a snapshot ${c.snapshot}`)
  if (v.snapshots.length >= COMMAND_LIMITS.maxListItems) reject('TooLarge', `volume ${v.name} already has ${v.snapshots.length} snapshots`)
  const rec = { ...v, snapshots: [...v.snapshots, c.snapshot] }
  ctx.tx.put('volumes', v.name, rec)
  return rec
}

export function deleteVolume (ctx: ApplyContext, c: Cmd<'DeleteVolume'>): void {
  const v = getVolume(ctx, c.name)
  if (v.attachedTo !== null) reject('InUse', `volume ${v.name} is attached to VM ${v.attachedTo}`)
  for (const [, o] of ctx.tx.range<VolumeRecord>('volumes')) {
    if (o.parent?.volume === v.name) reject('InUse', `volume ${v.name} has a clone ${o.name}`)
  }
  ctx.tx.delete('volumes', v.name)
}
