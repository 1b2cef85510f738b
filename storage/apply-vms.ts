// VM lifecycle: create, change spec or desired state, assign to a node, status reports, delete.
import type { Command } from '../protocols/commands.ts'
import type { NetworkRecord, NodeRecord, VmRecord, VmSpec, VolumeRecord } from '../protocols/model.ts'
import { DEFAULT_PROJECT, projectOf } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import type { KvTx } from './kv.ts'
import { reject } from './apply-context.ts'
import { incomingTo, refuseWhileMigrating } from './migration-guard.ts'
import { generationOf, imageMade, phaseOf, volumeUnusable } from '../protocols/volume-phases.ts'
import { cloneFromSnapshot } from './apply-snapshots.ts'
import { chargeQuota } from './apply-quotas.ts'
import { releaseAfterMove, releaseBlocks, reportReleases } from './release-rules.ts'
import type { Releasing } from './release-rules.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

export type ReportOutcome = 'applied' | 'stale' | 'notFound'

/** The VM with this id, or a NotFound rejection. */
export function getVm (ctx: ApplyContext, id: string): VmRecord {
  const vm = ctx.tx.get<VmRecord>('vms', id)
  if (vm === undefined) reject('NotFound', `VM ${id} not found`)
  return vm
}

/** The first network or volume a spec names that does not exist, as the NotFound message the
 * state machine refuses it with; node/api.ts says the same before proposing a VM. */
export function missingRef (spec: Pick<VmSpec, 'networks' | 'volumes'>, exists: { network: (name: string) => boolean, volume: (name: string) => boolean }): string | null {
  for (const n of spec.networks) if (!exists.network(n)) return `network ${n} not found`
  for (const v of spec.volumes) if (!exists.volume(v)) return `volume ${v} not found`
  return null
}

/** Networks must exist; volumes must exist and be free or already ours. */
function checkRefs (ctx: ApplyContext, spec: VmSpec, vmId: string): VolumeRecord[] {
  const missing = missingRef(spec, {
    network: (n) => ctx.tx.has('networks', n),
    volume: (v) => ctx.tx.has('volumes', v)
  })
  if (missing !== null) reject('NotFound', missing)
  return spec.volumes.map(name => {
    const v = ctx.tx.get<VolumeRecord>('volumes', name)
    if (v === undefined) reject('NotFound', `volume ${name} not found`) // (checked above; narrows v)
    if (v.attachedTo !== null && v.attachedTo !== vmId) reject('InUse', `volume ${name} is attached to VM ${v.attachedTo}`)
    // a pending volume is taken: the VM waits for it (node/scheduler.ts); one that can never be
    // used is refused now (being deleted, or its image failed to be made)
    if (v.attachedTo !== vmId && (phaseOf(v) === 'deleting' || (phaseOf(v) === 'failed' && !imageMade(v)))) reject('Conflict', volumeUnusable(v) ?? `volume ${name} cannot be used`)
    return v
  })
}

function setAttached (ctx: ApplyContext, vols: VolumeRecord[], to: string | null): void {
  for (const v of vols) if (v.attachedTo !== to) ctx.tx.put('volumes', v.name, { ...v, attachedTo: to })
}

export function createVm (ctx: ApplyContext, c: Cmd<'CreateVm'>): VmRecord {
  if (ctx.tx.has('vms', c.id)) reject('AlreadyExists', `VM ${c.id} already exists`)
  if (ctx.tx.has('vmNames', c.spec.name)) reject('AlreadyExists', `a VM named ${c.spec.name} already exists`)
  // a clone's volumes are made here, from the snapshot's disks, before the refs are checked
  const clonedFrom = c.fromSnapshot !== undefined ? cloneFromSnapshot(ctx, c.id, c.spec, c.fromSnapshot) : undefined
  const vols = checkRefs(ctx, c.spec, c.id)
  // its project's quota, in this same entry: a racing create through another node sees this one
  // recorded with its project, the default one when the command names none (what quotas count)
  const spec = c.spec.project === undefined ? { ...c.spec, project: DEFAULT_PROJECT } : c.spec
  chargeQuota(ctx, spec.name, null, spec)
  setAttached(ctx, vols, c.id)
  const vm: VmRecord = {
    id: c.id,
    spec,
    generation: 1,
    desired: c.desired ?? 'running',
    assignedNode: null,
    status: { phase: 'pending', reason: 'created', node: null, at: ctx.at },
    createdAt: ctx.at,
    updatedAt: ctx.at,
    ...(clonedFrom !== undefined ? { clonedFrom } : {})
  }
  ctx.tx.put('vms', c.id, vm)
  ctx.tx.put('vmNames', c.spec.name, c.id)
  return vm
}

/** A new spec bumps the generation, so the agent restarts the guest and older reports go stale.
 * Volumes dropped from the spec are detached, new ones attached. */
export function updateVmSpec (ctx: ApplyContext, c: Cmd<'UpdateVmSpec'>): VmRecord {
  const vm = getVm(ctx, c.id)
  refuseWhileMigrating(ctx, vm, 'a spec change')
  if (c.ifGeneration !== undefined && c.ifGeneration !== vm.generation) {
    reject('GenerationMismatch', `VM ${vm.spec.name} is at generation ${vm.generation}, not ${c.ifGeneration}: it changed since it was read; read it again and retry`)
  }
  if (c.spec.name !== vm.spec.name) {
    if (ctx.tx.has('vmNames', c.spec.name)) reject('AlreadyExists', `a VM named ${c.spec.name} already exists`)
    ctx.tx.delete('vmNames', vm.spec.name)
    ctx.tx.put('vmNames', c.spec.name, vm.id)
  }
  const vols = checkRefs(ctx, c.spec, vm.id)
  // a placed VM restarts with the new spec at once: a volume it adds must have its image already
  if (vm.assignedNode !== null) {
    for (const v of vols) {
      const why = v.attachedTo === vm.id ? null : volumeUnusable(v)
      if (why !== null) reject('Conflict', `${why}: VM ${vm.spec.name} is placed and would restart without it; add it once the volume is ready (blixard volume show ${v.name})`)
    }
  }
  // A placed VM keeps its node: a larger spec must still fit there (stop and unassign it to move it).
  if (vm.assignedNode !== null) {
    const node = ctx.tx.get<NodeRecord>('nodes', vm.assignedNode)
    if (node !== undefined) checkFits(ctx, node, vm.id, c.spec, incomingTo(ctx.tx, node.id))
  }
  // a spec that names no project keeps the VM's (a client that knows nothing of projects moves none)
  const spec = c.spec.project === undefined ? { ...c.spec, project: projectOf(vm.spec) } : c.spec
  chargeQuota(ctx, spec.name, vm.spec, spec)
  const dropped = vm.spec.volumes.filter(n => !c.spec.volumes.includes(n))
    .map(n => ctx.tx.get<VolumeRecord>('volumes', n))
    .filter((v): v is VolumeRecord => v !== undefined && v.attachedTo === vm.id)
  setAttached(ctx, dropped, null)
  setAttached(ctx, vols, vm.id)
  const rec: VmRecord = { ...vm, spec, generation: vm.generation + 1, updatedAt: ctx.at }
  ctx.tx.put('vms', vm.id, rec)
  return rec
}

export function setVmDesiredState (ctx: ApplyContext, c: Cmd<'SetVmDesiredState'>): VmRecord {
  const vm = getVm(ctx, c.id)
  if (c.desired !== vm.desired) refuseWhileMigrating(ctx, vm, c.desired === 'stopped' ? 'a stop' : 'a start')
  const rec: VmRecord = { ...vm, desired: c.desired, updatedAt: ctx.at }
  ctx.tx.put('vms', vm.id, rec)
  return rec
}

/** vmsByNode keys: node id, a space (never inside an id), VM id; so one node's VMs are one range. */
export function byNodeKey (node: string, vm: string): string {
  return `${node} ${vm}`
}

export function vmIdsOn (tx: KvTx, node: string): string[] {
  return tx.range<string>('vmsByNode', { start: `${node} `, end: `${node}!` }).map(([, id]) => id)
}

/** Keep the vmsByNode index in step with an assignment change. */
function setAssignment (ctx: ApplyContext, vm: string, from: string | null, to: string | null): void {
  if (from === to) return
  if (from !== null) ctx.tx.delete('vmsByNode', byNodeKey(from, vm))
  if (to !== null) ctx.tx.put('vmsByNode', byNodeKey(to, vm), vm)
}

/** What VMs assigned to a node reserve (the committed capacity placement also counts). */
export function reservedOn (ctx: ApplyContext, node: string, except: string): { cpu: number, memoryMiB: number, diskGiB: number, vms: number } {
  const r = { cpu: 0, memoryMiB: 0, diskGiB: 0, vms: 0 }
  for (const id of vmIdsOn(ctx.tx, node)) {
    const vm = ctx.tx.get<VmRecord>('vms', id)
    if (vm === undefined || vm.id === except) continue
    r.cpu += vm.spec.vcpus
    r.memoryMiB += vm.spec.memoryMiB
    r.diskGiB += vm.spec.diskGiB
    r.vms++
  }
  return r
}

/** Rejects (NoCapacity) when `spec` does not fit on `node` next to the node's other VMs (and
 * `also`: what else is on its way there, such as live migrations into it). */
export function checkFits (ctx: ApplyContext, node: NodeRecord, vmId: string, spec: VmRecord['spec'], also: { cpu: number, memoryMiB: number, diskGiB: number, vms: number } = { cpu: 0, memoryMiB: 0, diskGiB: 0, vms: 0 }): void {
  const own = reservedOn(ctx, node.id, vmId)
  const used = { cpu: own.cpu + also.cpu, memoryMiB: own.memoryMiB + also.memoryMiB, diskGiB: own.diskGiB + also.diskGiB, vms: own.vms + also.vms }
  const cap = node.capacity
  const oc = node.overcommit
  if (used.cpu + spec.vcpus > cap.cpu * oc.cpu) reject('NoCapacity', `node ${node.name} has no CPU left for ${spec.vcpus} vCPUs`)
  if (used.memoryMiB + spec.memoryMiB > cap.memoryMiB * oc.memory) reject('NoCapacity', `node ${node.name} has no memory left for ${spec.memoryMiB} MiB`)
  if (used.diskGiB + spec.diskGiB > cap.diskGiB * oc.disk) reject('NoCapacity', `node ${node.name} has no disk left for ${spec.diskGiB} GiB`)
  if (node.maxVms !== null && used.vms + 1 > node.maxVms) reject('NoCapacity', `node ${node.name} already runs its maximum of ${node.maxVms} VMs`)
}

/** The state machine is the last word on capacity: two scheduling rounds that raced on the same
 * view cannot both commit a node beyond capacity × overcommit (NoCapacity). */
export function assignVm (ctx: ApplyContext, c: Cmd<'AssignVm'>): VmRecord {
  const vm = getVm(ctx, c.id)
  if (vm.assignedNode !== c.node) refuseWhileMigrating(ctx, vm, 'moving it elsewhere')
  if (c.node === null) {
    // its guest may still run on the node it leaves: bound there until released (release-rules.ts)
    const rec: VmRecord = withRelease(ctx.tx, { ...vm, assignedNode: null, status: { phase: 'pending', reason: c.reason ?? 'unassigned', node: null, at: ctx.at }, updatedAt: ctx.at, ...leaving(vm, ctx.at) }, releaseAfterMove(vm.releasing, vm.assignedNode, null, ctx.at, leftDown(ctx, vm)))
    setAssignment(ctx, vm.id, vm.assignedNode, null)
    ctx.tx.put('vms', vm.id, rec)
    return rec
  }
  const node = ctx.tx.get<NodeRecord>('nodes', c.node)
  if (node === undefined) reject('NotFound', `node ${c.node} not found`)
  if (vm.assignedNode === c.node) return vm
  // never on two hosts: not elsewhere while the node it left may still run its guest
  const waits = releaseBlocks(vm, node.id, (id) => ctx.tx.get<NodeRecord>('nodes', id)?.name ?? id)
  if (waits !== null) reject('Conflict', `VM ${vm.spec.name} cannot be placed on ${node.name} yet: ${waits}`)
  if (node.state !== 'ready') reject('Conflict', `node ${node.name} is ${node.state}: it takes no new VMs`)
  if (node.liveness === 'down') reject('Conflict', `node ${node.name} is down (lease expired): it takes no new VMs`)
  // the room live moves into the node were promised is not free (migration-guard.ts incomingTo)
  checkFits(ctx, node, vm.id, vm.spec, incomingTo(ctx.tx, node.id))
  const rec: VmRecord = withRelease(ctx.tx, { ...vm, assignedNode: node.id, status: { phase: 'scheduled', reason: c.reason ?? 'assigned', node: node.id, at: ctx.at }, updatedAt: ctx.at, ...leaving(vm, ctx.at) }, releaseAfterMove(vm.releasing, vm.assignedNode, node.id, ctx.at, leftDown(ctx, vm)))
  setAssignment(ctx, vm.id, vm.assignedNode, node.id)
  ctx.tx.put('vms', vm.id, rec)
  return rec
}

/** A VM taken off the node it was on moved (cold): the rebalancer's cooldown counts from now. A
 * first placement is no move. */
function leaving (vm: VmRecord, at: number): { movedAt?: number } {
  return vm.assignedNode === null ? {} : { movedAt: at }
}

/** Is the node the VM is assigned to marked down (its guests fenced)? */
function leftDown (ctx: ApplyContext, vm: VmRecord): boolean {
  return vm.assignedNode !== null && ctx.tx.get<NodeRecord>('nodes', vm.assignedNode)?.liveness === 'down'
}

/** The record with this release, or none (the field absent, not undefined: records are compared
 * and encoded as they are), the vmsReleasing index kept in step; `vm` still holds the old release. */
export function withRelease (tx: KvTx, vm: VmRecord, releasing: Releasing | undefined): VmRecord {
  const { releasing: old, ...rest } = vm
  if (old?.node !== releasing?.node) {
    if (old !== undefined) tx.delete('vmsReleasing', byNodeKey(old.node, vm.id))
    if (releasing !== undefined) tx.put('vmsReleasing', byNodeKey(releasing.node, vm.id), vm.id)
  }
  return releasing === undefined ? rest : { ...rest, releasing }
}

/** Ids of the VMs still releasing `node` (taken off it, its guest maybe still there). */
export function vmIdsReleasing (tx: Pick<KvTx, 'range'>, node: string): string[] {
  return tx.range<string>('vmsReleasing', { start: `${node} `, end: `${node}!` }).map(([, id]) => id)
}

/** The vmsReleasing index rebuilt from the VM records (a store or snapshot from before it existed). */
export function rebuildReleasingIndex (tx: KvTx): void {
  tx.clear('vmsReleasing')
  for (const [, vm] of tx.range<VmRecord>('vms')) {
    if (vm.releasing !== undefined) tx.put('vmsReleasing', byNodeKey(vm.releasing.node, vm.id), vm.id)
  }
}

/** Each report counts only if it comes from the assigned node about the current generation;
 * anything else is stale (a late report from an old placement or spec) and is skipped, not an error. */
export function reportVmStatus (ctx: ApplyContext, c: Cmd<'ReportVmStatus'>): { outcomes: ReportOutcome[] } {
  const outcomes = c.reports.map((r): ReportOutcome => {
    const vm = ctx.tx.get<VmRecord>('vms', r.id)
    if (vm === undefined) return 'notFound'
    // the node it was taken off says its guest is gone: it may run elsewhere now (its status stays:
    // that is the VM's, pending or starting elsewhere, not the old node's)
    if (reportReleases(vm, r)) {
      ctx.tx.put('vms', vm.id, withRelease(ctx.tx, { ...vm, updatedAt: ctx.at }, undefined))
      return 'applied'
    }
    if (vm.assignedNode !== r.node || vm.generation !== r.generation) return 'stale'
    // a clone ran once: it resumed the snapshot (or its host booted it), later starts boot its disks
    const resumed = vm.clonedFrom !== undefined && vm.clonedFrom.resumedAt === undefined && r.status.phase === 'running' ? { clonedFrom: { ...vm.clonedFrom, resumedAt: ctx.at } } : {}
    ctx.tx.put('vms', vm.id, { ...vm, ...resumed, status: { ...r.status, node: r.node }, updatedAt: ctx.at })
    return 'applied'
  })
  return { outcomes }
}

/** Deleting releases the VM's volumes and every IP it holds. Answers with the id deleted, so a
 * retried key gets the same answer from the stored result. */
export function deleteVm (ctx: ApplyContext, c: Cmd<'DeleteVm'>): { id: string } {
  const vm = getVm(ctx, c.id)
  refuseWhileMigrating(ctx, vm, 'a delete')
  for (const name of vm.spec.volumes) {
    const v = ctx.tx.get<VolumeRecord>('volumes', name)
    if (v === undefined || v.attachedTo !== vm.id) continue
    // a clone's own disks (RBD clones of the snapshot's) go with it: they hold the snapshot's
    // disk snapshots in place, which its delete then can remove
    const own = vm.clonedFrom?.volumes.includes(name) === true
    ctx.tx.put('volumes', name, own ? { ...v, attachedTo: null, phase: 'deleting', reason: null, generation: generationOf(v) + 1 } : { ...v, attachedTo: null })
  }
  for (const [name, net] of ctx.tx.range<NetworkRecord>('networks')) {
    const ips = Object.keys(net.allocations).filter(ip => net.allocations[ip] === vm.id)
    if (ips.length === 0) continue
    const allocations = { ...net.allocations }
    for (const ip of ips) delete allocations[ip]
    ctx.tx.put('networks', name, { ...net, allocations })
  }
  chargeQuota(ctx, vm.spec.name, vm.spec, null)
  setAssignment(ctx, vm.id, vm.assignedNode, null)
  if (vm.releasing !== undefined) ctx.tx.delete('vmsReleasing', byNodeKey(vm.releasing.node, vm.id))
  ctx.tx.delete('vmNames', vm.spec.name)
  ctx.tx.delete('vms', vm.id)
  return { id: vm.id }
}
