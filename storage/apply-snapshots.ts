// VM memory snapshots in the replicated state (the record and commands are
// protocols/snapshots.ts). The VM's host carries each step out (node/snapshots/service.ts) and
// reports; these rules decide what may be asked and which reports count. Pure: the only clock is
// envelope.at.
//
// - one snapshot operation per VM at a time (a save, a restore or nothing): a second is refused
//   (Conflict) rather than queued, so the host never has two QEMU operations on one guest;
// - a snapshot is taken of a running guest on the node the VM is assigned to, not while it migrates;
//   a VM with volumes gets an RBD snapshot of each (named here, taken by the host while the guest
//   is paused), so every volume must have its image;
// - a restore needs the snapshot ready, the VM running, at the spec generation the snapshot was
//   taken at (the same devices: QEMU refuses other ones), and on a host that can read the state: any
//   host when it is an RBD image, only the holding node when it is a local file. The VM's host of the
//   moment carries it out (and alone may report it);
// - a VM's delete marks its snapshots 'deleting', so their host removes the state and disk snapshots.
import type { VmCloneSource, VmRecord, VmSpec } from '../protocols/model.ts'
import type { SnapshotCommand, VmSnapshotRecord } from '../protocols/snapshots.ts'
import { MAX_SNAPSHOTS_PER_VM, cloneDevices, cloneVolumeName, diskSnapshotName, snapshotKey, snapshotRange, stateImageName } from '../protocols/snapshots.ts'
import type { SnapshotDisk } from '../protocols/snapshots.ts'
import type { VolumeRecord } from '../protocols/model.ts'
import { imageMade, phaseOf } from '../protocols/volume-phases.ts'
import { cloneIdentityRefusal } from '../protocols/images.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { activeMigration, nodeName } from './migration-guard.ts'

type Cmd<T extends SnapshotCommand['type']> = Extract<SnapshotCommand, { type: T }>

const TABLE = 'vmSnapshots'

function vmOf (ctx: ApplyContext, id: string): VmRecord {
  const vm = ctx.tx.get<VmRecord>('vms', id)
  if (vm === undefined) reject('NotFound', `VM ${id} not found`)
  return vm
}

function get (ctx: ApplyContext, vm: string, name: string, vmName: string): VmSnapshotRecord {
  const s = ctx.tx.get<VmSnapshotRecord>(TABLE, snapshotKey(vm, name))
  if (s === undefined) reject('NotFound', `VM ${vmName} has no snapshot named ${name}`)
  return s
}

/** The VM's snapshots in name order. */
export function snapshotsOf (ctx: ApplyContext, vm: string): VmSnapshotRecord[] {
  return ctx.tx.range<VmSnapshotRecord>(TABLE, snapshotRange(vm)).map(([, s]) => s)
}

/** What of the VM's snapshots keeps its host busy now, in words, or null. Only operations on the
 * node the VM is assigned to count: one left on a host the VM moved off (that host died mid-save)
 * can no longer touch the guest, and must not block its snapshots for ever. */
function busyWith (snaps: VmSnapshotRecord[], vm: VmRecord | undefined): string | null {
  for (const s of snaps) {
    if (vm !== undefined && s.node !== vm.assignedNode) continue
    if (s.phase === 'taking') return `snapshot ${s.name} is being taken`
    if (s.restore?.phase === 'requested') return `a restore from snapshot ${s.name} is running`
  }
  // a restore runs on the VM's host of the moment, which need not be the snapshot's node
  for (const s of snaps) if (s.restore?.phase === 'requested' && vm !== undefined && s.restore.node === vm.assignedNode) return `a restore from snapshot ${s.name} is running`
  return null
}

function put (ctx: ApplyContext, s: VmSnapshotRecord): VmSnapshotRecord {
  ctx.tx.put(TABLE, snapshotKey(s.vm, s.name), s)
  return s
}

export function snapshotVm (ctx: ApplyContext, c: Cmd<'SnapshotVm'>): VmSnapshotRecord {
  const vm = vmOf(ctx, c.vm)
  const n = vm.spec.name
  if (ctx.tx.get(TABLE, snapshotKey(vm.id, c.name)) !== undefined) reject('AlreadyExists', `VM ${n} already has a snapshot named ${c.name}`)
  if (vm.spec.hypervisor !== 'qemu') reject('InvalidSpec', `VM ${n} runs through ${vm.spec.hypervisor}: memory snapshots are taken through the QEMU driver only`)
  if (vm.assignedNode === null || vm.desired !== 'running' || vm.status.phase !== 'running' || vm.status.node !== vm.assignedNode) {
    reject('Conflict', `VM ${n} is not running (${vm.status.phase}${vm.desired !== 'running' ? `, desired ${vm.desired}` : ''}): a memory snapshot is taken of a running guest`)
  }
  const m = activeMigration(vm)
  if (m !== null) reject('Conflict', `VM ${n} is migrating to ${nodeName(ctx, m.target)} (${m.phase}): snapshot it once the move ended`)
  const snaps = snapshotsOf(ctx, vm.id)
  const busy = busyWith(snaps, vm)
  if (busy !== null) reject('Conflict', `VM ${n}: ${busy}; one snapshot operation per VM at a time`)
  if (snaps.length >= MAX_SNAPSHOTS_PER_VM) reject('NoCapacity', `VM ${n} has ${snaps.length} snapshots, the most a VM keeps (${MAX_SNAPSHOTS_PER_VM}): delete one first`)
  const disks: SnapshotDisk[] = vm.spec.volumes.map((name) => {
    const v = ctx.tx.get<VolumeRecord>('volumes', name)
    if (v === undefined) reject('NotFound', `VM ${n}'s volume ${name} not found`)
    if (!imageMade(v)) reject('Conflict', `VM ${n}'s volume ${name} has no RBD image yet (${v.phase ?? 'pending'}): its disk cannot be snapshotted`)
    return { volume: v.name, pool: v.pool, image: v.name, snapshot: diskSnapshotName(c.name) }
  })
  return put(ctx, {
    vm: vm.id, name: c.name, node: vm.assignedNode, generation: vm.generation, phase: 'taking',
    createdAt: ctx.at, updatedAt: ctx.at, location: null, sizeBytes: null, pausedMs: null, disks: disks.length > 0 ? disks : 'none'
  })
}

export function restoreVm (ctx: ApplyContext, c: Cmd<'RestoreVm'>): VmSnapshotRecord {
  const vm = vmOf(ctx, c.vm)
  const n = vm.spec.name
  const s = get(ctx, vm.id, c.name, n)
  if (s.phase !== 'ready') reject('Conflict', `snapshot ${c.name} of VM ${n} is ${s.phase}, not ready${s.reason != null ? ` (${s.reason})` : ''}`)
  if (vm.assignedNode === null) reject('Conflict', `VM ${n} is not placed: restore it once it runs`)
  if (s.location?.kind !== 'rbd' && vm.assignedNode !== s.node) {
    reject('Conflict', `snapshot ${c.name} is a local file on ${nodeName(ctx, s.node)}, and VM ${n} is on ${nodeName(ctx, vm.assignedNode)}: only that host can restore it (move the VM back first)`)
  }
  if (vm.generation !== s.generation) reject('Conflict', `VM ${n}'s spec changed since snapshot ${c.name} (generation ${s.generation} → ${vm.generation}): its devices would not match the saved state`)
  if (vm.desired !== 'running') reject('Conflict', `VM ${n} is desired ${vm.desired}: start it first (blixard vm start ${n}), then restore`)
  const m = activeMigration(vm)
  if (m !== null) reject('Conflict', `VM ${n} is migrating to ${nodeName(ctx, m.target)} (${m.phase}): restore it once the move ended`)
  const busy = busyWith(snapshotsOf(ctx, vm.id), vm)
  if (busy !== null) reject('Conflict', `VM ${n}: ${busy}; one snapshot operation per VM at a time`)
  return put(ctx, { ...s, updatedAt: ctx.at, restore: { phase: 'requested', requestedAt: ctx.at, node: vm.assignedNode } })
}

/** The VMs cloned from the snapshot, by name. */
function clonesOf (ctx: ApplyContext, vm: string, name: string): string[] {
  return ctx.tx.range<VmRecord>('vms').flatMap(([, v]) => v.clonedFrom?.vm === vm && v.clonedFrom.name === name ? [v.spec.name] : [])
}

/** Volumes that are RBD clones of the snapshot's disk snapshots (a deleted clone's, still being removed). */
function cloneVolumesOf (ctx: ApplyContext, s: VmSnapshotRecord): string[] {
  if (s.disks === 'none') return []
  const disks = s.disks
  return ctx.tx.range<VolumeRecord>('volumes').flatMap(([, v]) => disks.some((d) => v.parent?.volume === d.volume && v.parent.snapshot === d.snapshot) ? [v.name] : [])
}

/**
 * CreateVm's part for a clone (vm create --from-snapshot): the snapshot must be ready and the source
 * at the spec generation it was taken at, and a source with networks must run an image that takes a
 * new identity after a resume (cloneIdentityRefusal); the clone has the source's devices (cloneDevices), and
 * each of its volumes is made here as an RBD clone of the matching disk snapshot, named by
 * cloneVolumeName and attached to the clone (the volume reconciler makes the image; the VM waits for
 * it). A local-file state pins the clone to the host holding the file.
 */
export function cloneFromSnapshot (ctx: ApplyContext, id: string, spec: VmSpec, from: { vm: string, name: string }): VmCloneSource {
  const src = ctx.tx.get<VmRecord>('vms', from.vm)
  if (src === undefined) reject('NotFound', `VM ${from.vm} not found: nothing to clone snapshot ${from.name} of`)
  const n = src.spec.name
  const s = get(ctx, src.id, from.name, n)
  // the clone would answer on the network as its source: refused whatever the snapshot's phase
  const identity = cloneIdentityRefusal(src.spec, n, from.name)
  if (identity !== null) reject('InvalidSpec', identity)
  if (s.phase !== 'ready') reject('Conflict', `snapshot ${from.name} of VM ${n} is ${s.phase}, not ready: a clone starts from a ready snapshot`)
  if (src.generation !== s.generation) reject('Conflict', `VM ${n}'s spec changed since snapshot ${from.name} (generation ${s.generation} → ${src.generation}): the clone's devices would not match the saved state`)
  if (cloneDevices(spec) !== cloneDevices(src.spec)) reject('InvalidSpec', `a clone of VM ${n} has its devices (vCPUs, memory, image, networks, kernel parameters, number of disks): ${spec.name}'s differ`)
  const disks = s.disks === 'none' ? [] : s.disks
  const volumes = disks.map((d, i) => {
    const name = spec.volumes[i]
    if (name !== cloneVolumeName(spec.name, i)) reject('InvalidCommand', `disk ${i} of clone ${spec.name} is volume ${cloneVolumeName(spec.name, i)}, not ${name}`)
    if (ctx.tx.has('volumes', name)) reject('AlreadyExists', `volume ${name} already exists: clone ${spec.name}'s disk ${i} would take that name`)
    const parent = ctx.tx.get<VolumeRecord>('volumes', d.volume)
    if (parent === undefined || phaseOf(parent) === 'deleting') reject('Conflict', `VM ${n}'s volume ${d.volume} is gone: snapshot ${from.name}'s disk cannot be cloned`)
    const rec: VolumeRecord = {
      name, pool: d.pool, sizeGiB: parent.sizeGiB, snapshots: [], parent: { volume: d.volume, snapshot: d.snapshot }, attachedTo: id, createdAt: ctx.at,
      phase: 'pending', reason: null, generation: 1, imageMade: false
    }
    ctx.tx.put('volumes', name, rec)
    return name
  })
  const restoredOn = s.restore?.phase === 'done' ? s.restore.node : undefined
  return {
    vm: src.id, name: s.name, volumes,
    cachedOn: restoredOn !== undefined && restoredOn !== s.node ? [s.node, restoredOn] : [s.node],
    pinnedTo: s.location?.kind === 'rbd' ? null : s.node
  }
}

export function deleteVmSnapshot (ctx: ApplyContext, c: Cmd<'DeleteVmSnapshot'>): VmSnapshotRecord | { vm: string, name: string, removed: true } {
  const vm = ctx.tx.get<VmRecord>('vms', c.vm)
  const s = get(ctx, c.vm, c.name, vm?.spec.name ?? c.vm)
  // a clone's disks are RBD clones of the disk snapshots (and a clone not started yet needs the
  // state): refused, not flattened, so a delete never copies whole disks behind the admin's back
  const clones = clonesOf(ctx, s.vm, s.name)
  if (clones.length > 0) reject('Conflict', `snapshot ${c.name} of VM ${vm?.spec.name ?? c.vm} has clones: VM ${clones.join(', VM ')}; delete them first`)
  const children = cloneVolumesOf(ctx, s)
  if (children.length > 0) reject('Conflict', `snapshot ${c.name} of VM ${vm?.spec.name ?? c.vm}: the clone volume ${children.join(', ')} of its disks is still being removed; retry once it is gone`)
  // an operation still in flight on the VM's host is waited for; one on a host the VM left is not
  const inFlight = vm !== undefined && vm.assignedNode === s.node
  if (inFlight && s.phase === 'taking') reject('Conflict', `snapshot ${c.name} is still being taken: delete it once it is ready or failed`)
  if (vm !== undefined && s.restore?.phase === 'requested' && vm.assignedNode === (s.restore.node ?? s.node)) reject('Conflict', `a restore from snapshot ${c.name} is running: delete it once that ended`)
  const gone = !ctx.tx.has('nodes', s.node)
  // what lives in Ceph (the state image, the disk snapshots) any host with Ceph removes: the VM's
  // host of the moment takes it over from a holder that left the cluster
  const inCeph = s.location?.kind === 'rbd' || s.disks !== 'none'
  if (gone && inCeph && vm?.assignedNode != null && ctx.tx.has('nodes', vm.assignedNode)) {
    return put(ctx, { ...s, node: vm.assignedNode, phase: 'deleting', updatedAt: ctx.at })
  }
  // a host no longer in the cluster will never remove its file: the record goes now
  if (gone) {
    ctx.tx.delete(TABLE, snapshotKey(s.vm, s.name))
    return { vm: s.vm, name: s.name, removed: true }
  }
  if (s.phase === 'deleting') return s
  return put(ctx, { ...s, phase: 'deleting', updatedAt: ctx.at })
}

/** DeleteVm's part: the VM's snapshots are marked 'deleting' (their host removes the files). */
export function forgetVmSnapshots (ctx: ApplyContext, vm: string): void {
  for (const s of snapshotsOf(ctx, vm)) {
    // one with clones stays ready (they depend on it): deleted by the VM's id once they are gone
    if (clonesOf(ctx, vm, s.name).length > 0 || cloneVolumesOf(ctx, s).length > 0) continue
    if (s.phase !== 'deleting') put(ctx, { ...s, phase: 'deleting', updatedAt: ctx.at, ...(s.restore?.phase === 'requested' ? { restore: { ...s.restore, phase: 'failed', at: ctx.at, reason: 'the VM was deleted' } } : {}) })
  }
}

export function reportVmSnapshot (ctx: ApplyContext, c: Cmd<'ReportVmSnapshot'>): VmSnapshotRecord | { vm: string, name: string, removed: true } {
  const s = ctx.tx.get<VmSnapshotRecord>(TABLE, snapshotKey(c.vm, c.name))
  if (s === undefined) reject('NotFound', `no snapshot ${c.name} of VM ${c.vm}`)
  const restoring = c.event === 'restored' || c.event === 'restore-failed'
  const actor = restoring ? (s.restore?.node ?? s.node) : s.node
  if (actor !== c.node) reject('Unauthorized', `snapshot ${c.name} of VM ${c.vm}: this step is ${actor}'s, not ${c.node}'s`)
  const stale = (what: string): never => reject('Conflict', `stale report ${c.event} on snapshot ${c.name} of VM ${c.vm}: ${what}`)
  switch (c.event) {
    case 'taken':
      if (s.phase !== 'taking') stale(`it is ${s.phase}`)
      // the state image has the one name a delete may remove: a host cannot point it at another image
      if (c.image !== undefined && c.image !== stateImageName(s.vm, s.name)) reject('InvalidCommand', `the state image of snapshot ${c.name} of VM ${c.vm} is named ${stateImageName(s.vm, s.name)}, not ${c.image}`)
      return put(ctx, {
        ...s, phase: 'ready', updatedAt: ctx.at, sizeBytes: c.sizeBytes ?? null, pausedMs: c.pausedMs ?? null,
        location: c.image !== undefined && c.pool !== undefined ? { kind: 'rbd', pool: c.pool, image: c.image } : { kind: 'local-file', path: c.path ?? '' }
      })
    case 'failed':
      if (s.phase !== 'taking') stale(`it is ${s.phase}`)
      return put(ctx, { ...s, phase: 'failed', updatedAt: ctx.at, reason: c.reason ?? 'no reason given' })
    case 'restored': case 'restore-failed': {
      if (s.restore?.phase !== 'requested') return stale('no restore of it is running')
      const restore = { requestedAt: s.restore.requestedAt, ...(s.restore.node !== undefined ? { node: s.restore.node } : {}), phase: c.event === 'restored' ? 'done' as const : 'failed' as const, at: ctx.at, ...(c.ms !== undefined ? { ms: c.ms } : {}), ...(c.reason !== undefined ? { reason: c.reason } : {}) }
      return put(ctx, { ...s, updatedAt: ctx.at, restore })
    }
    case 'removed':
      if (s.phase !== 'deleting') stale(`it is ${s.phase}, not being deleted`)
      ctx.tx.delete(TABLE, snapshotKey(s.vm, s.name))
      return { vm: s.vm, name: s.name, removed: true }
  }
}
