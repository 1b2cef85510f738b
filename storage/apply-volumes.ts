// Volumes (Ceph RBD images): the desired state an admin records (create or clone, grow, snapshot,
// delete) and the volume reconciler's reports on carrying it out (node/volumes/). Phases and who
// may report: protocols/volume-phases.ts.
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VolumeRecord } from '../protocols/model.ts'
import { COMMAND_LIMITS } from '../protocols/command-schema.ts'
import { generationOf, imageMade, phaseOf, volumeReconciler } from '../protocols/volume-phases.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

function getVolume (ctx: ApplyContext, name: string): VolumeRecord {
  const v = ctx.tx.get<VolumeRecord>('volumes', name)
  if (v === undefined) reject('NotFound', `volume ${name} not found`)
  return v
}

/** A change for the reconciler to carry out: the next generation, pending. */
function pending (v: VolumeRecord, change: Partial<VolumeRecord>): VolumeRecord {
  return { ...v, ...change, phase: 'pending', reason: null, generation: generationOf(v) + 1, imageMade: imageMade(v) }
}

function refuseWhileDeleting (v: VolumeRecord): void {
  if (phaseOf(v) === 'deleting') reject('Conflict', `volume ${v.name} is being deleted`)
}

export function createVolume (ctx: ApplyContext, c: Cmd<'CreateVolume'>): VolumeRecord {
  const old = ctx.tx.get<VolumeRecord>('volumes', c.name)
  if (old !== undefined) reject('AlreadyExists', `volume ${c.name} already exists${phaseOf(old) === 'deleting' ? ' (being deleted: retry once it is gone)' : ''}`)
  const parent = c.parent ?? null
  if (parent !== null) {
    const p = getVolume(ctx, parent.volume)
    refuseWhileDeleting(p)
    if (!p.snapshots.includes(parent.snapshot)) reject('NotFound', `volume ${p.name} has no snapshot ${parent.snapshot}`)
    if (c.sizeGiB < p.sizeGiB) reject('InvalidSpec', `a clone of ${p.name} needs at least ${p.sizeGiB} GiB`)
  }
  const rec: VolumeRecord = {
    name: c.name, pool: c.pool, sizeGiB: c.sizeGiB, snapshots: [], parent, attachedTo: null, createdAt: ctx.at,
    phase: 'pending', reason: null, generation: 1, imageMade: false
  }
  ctx.tx.put('volumes', c.name, rec)
  return rec
}

/** Only grows: shrinking would cut a filesystem the guest still believes in. */
export function resizeVolume (ctx: ApplyContext, c: Cmd<'ResizeVolume'>): VolumeRecord {
  const v = getVolume(ctx, c.name)
  refuseWhileDeleting(v)
  if (c.sizeGiB < v.sizeGiB) reject('InvalidSpec', `volume ${v.name} is ${v.sizeGiB} GiB and can only grow`)
  // the same size again is a retry of a failed grow: carried out again
  const rec = pending(v, { sizeGiB: c.sizeGiB })
  ctx.tx.put('volumes', v.name, rec)
  return rec
}

export function snapshotVolume (ctx: ApplyContext, c: Cmd<'SnapshotVolume'>): VolumeRecord {
  const v = getVolume(ctx, c.name)
  refuseWhileDeleting(v)
  if (v.snapshots.includes(c.snapshot)) reject('AlreadyExists', `volume ${v.name} already has a snapshot ${c.snapshot}`)
  if (v.snapshots.length >= COMMAND_LIMITS.maxListItems) reject('TooLarge', `volume ${v.name} already has ${v.snapshots.length} snapshots`)
  const rec = pending(v, { snapshots: [...v.snapshots, c.snapshot] })
  ctx.tx.put('volumes', v.name, rec)
  return rec
}

/** Marks the volume deleting; the record goes when the reconciler reports the image gone. A
 * volume being deleted already answers as it is (a retry changes nothing). */
export function deleteVolume (ctx: ApplyContext, c: Cmd<'DeleteVolume'>): VolumeRecord {
  const v = getVolume(ctx, c.name)
  if (phaseOf(v) === 'deleting') return v
  if (v.attachedTo !== null) reject('InUse', `volume ${v.name} is attached to VM ${v.attachedTo}`)
  for (const [, o] of ctx.tx.range<VolumeRecord>('volumes')) {
    if (o.parent?.volume === v.name) reject('InUse', `volume ${v.name} has a clone ${o.name}${phaseOf(o) === 'deleting' ? ' (being deleted: retry once it is gone)' : ''}`)
  }
  const rec: VolumeRecord = { ...v, phase: 'deleting', reason: null, generation: generationOf(v) + 1 }
  ctx.tx.put('volumes', v.name, rec)
  return rec
}

/** What a report did: applied; stale (about an older generation, or a volume no longer waiting for
 * it: changes nothing, so a retried or late report is harmless); notFound (the record is gone). */
export type VolumeReportOutcome = 'applied' | 'stale' | 'notFound'

/**
 * The reconciler's report on one generation of a volume. Only the volume reconciler at this index
 * may report (protocols/volume-phases.ts volumeReconciler: the lowest-id node that advertises rbd
 * and is not down); the signature already says the report comes from `c.node` (protocols/auth.ts).
 * pending + ready → ready (image made); pending + failed → failed (reason); deleting + gone → the
 * record is removed; deleting + failed → failed (reason; a delete retries it).
 */
export function reportVolume (ctx: ApplyContext, c: Cmd<'ReportVolume'>): { outcome: VolumeReportOutcome, volume: VolumeRecord | null } {
  const nodes = ctx.tx.range<NodeRecord>('nodes').map(([, n]) => n)
  const who = volumeReconciler(nodes)
  if (who !== c.node) {
    reject('Unauthorized', who === null
      ? `node ${c.node} may not report on volume ${c.name}: no node is the volume reconciler (none advertises rbd and is up)`
      : `node ${c.node} may not report on volume ${c.name}: the volume reconciler is ${who} (the lowest-id node with Ceph that is up)`)
  }
  const v = ctx.tx.get<VolumeRecord>('volumes', c.name)
  if (v === undefined) return { outcome: 'notFound', volume: null }
  const phase = phaseOf(v)
  if (generationOf(v) !== c.generation || (phase !== 'pending' && phase !== 'deleting')) return { outcome: 'stale', volume: v }
  if (c.outcome === 'failed') {
    const rec: VolumeRecord = { ...v, phase: 'failed', reason: c.reason ?? 'no reason given' }
    ctx.tx.put('volumes', v.name, rec)
    return { outcome: 'applied', volume: rec }
  }
  if (phase === 'deleting') {
    if (c.outcome !== 'gone') reject('InvalidCommand', `volume ${v.name} is being deleted: a report on it is gone or failed, not ${c.outcome}`)
    ctx.tx.delete('volumes', v.name)
    return { outcome: 'applied', volume: null }
  }
  if (c.outcome !== 'ready') reject('InvalidCommand', `volume ${v.name} is pending: a report on it is ready or failed, not ${c.outcome}`)
  const rec: VolumeRecord = { ...v, phase: 'ready', reason: null, imageMade: true }
  ctx.tx.put('volumes', v.name, rec)
  return { outcome: 'applied', volume: rec }
}
