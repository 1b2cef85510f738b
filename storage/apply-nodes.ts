// Node membership in the metadata (not Raft membership): register, update, remove.
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { encodeCbor } from './codec.ts'
import { vmIdsOn, vmIdsReleasing } from './apply-vms.ts'
import { mayJoin } from './apply-admins.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

function sameBytes (a: unknown, b: unknown): boolean {
  return Buffer.from(encodeCbor(a)).equals(encodeCbor(b))
}

/** Re-registering the same node (same id, and the same name, labels, capacity, overcommit,
 * capabilities and maxVms) is what a restarted daemon does: it only refreshes addrs and keeps the
 * state. Anything else under an existing id or name is AlreadyExists (use UpdateNode). */
export function registerNode (ctx: ApplyContext, c: Cmd<'RegisterNode'>): NodeRecord {
  const n = c.node
  const old = ctx.tx.get<NodeRecord>('nodes', n.id)
  if (old !== undefined) {
    const fixed = (r: Omit<NodeRecord, 'registeredAt' | 'updatedAt' | 'state' | 'addrs' | 'id'>) =>
      [r.name, r.labels, r.capacity, r.overcommit, r.capabilities, r.maxVms]
    if (!sameBytes(fixed(old), fixed(n))) reject('AlreadyExists', `node ${n.id} is already registered with different settings (use UpdateNode)`)
    const rec: NodeRecord = { ...old, addrs: n.addrs, updatedAt: ctx.at }
    ctx.tx.put('nodes', n.id, rec)
    return rec
  }
  // a new node: only if the join policy lets this peer in (protocols/auth.ts binds it to its key)
  if (!mayJoin(ctx.tx, n.id)) reject('Unauthorized', `node ${n.id} is not approved to join (join policy "approve"; an admin runs: blixard node approve ${n.id})`)
  for (const [, other] of ctx.tx.range<NodeRecord>('nodes')) {
    if (other.name === n.name) reject('AlreadyExists', `node name ${n.name} is taken by ${other.id}`)
  }
  const rec: NodeRecord = {
    id: n.id,
    name: n.name,
    addrs: n.addrs,
    labels: n.labels,
    capacity: n.capacity,
    overcommit: n.overcommit,
    capabilities: n.capabilities,
    maxVms: n.maxVms,
    state: n.state ?? 'ready',
    registeredAt: ctx.at,
    updatedAt: ctx.at
  }
  ctx.tx.put('nodes', n.id, rec)
  return rec
}

export function updateNode (ctx: ApplyContext, c: Cmd<'UpdateNode'>): NodeRecord {
  const old = ctx.tx.get<NodeRecord>('nodes', c.id)
  if (old === undefined) reject('NotFound', `node ${c.id} not found`)
  // decided here, on apply, so that two drains racing for the same room cannot both land
  if (c.state === 'draining' && old.state !== 'draining' && c.force !== true) strandingRefusal(ctx, old, c.onto ?? [])
  const rec: NodeRecord = { ...old, updatedAt: ctx.at }
  if (c.labels !== undefined) rec.labels = c.labels
  if (c.capacity !== undefined) rec.capacity = c.capacity
  if (c.addrs !== undefined) rec.addrs = c.addrs
  if (c.capabilities !== undefined) rec.capabilities = c.capabilities
  if (c.maxVms !== undefined) rec.maxVms = c.maxVms
  if (c.state !== undefined) rec.state = c.state
  if (c.state === 'draining' && old.state !== 'draining') rec.drainOnto = c.force === true ? [] : c.onto ?? []
  if (c.state !== undefined && c.state !== 'draining') delete rec.drainOnto
  ctx.tx.put('nodes', c.id, rec)
  return rec
}

/** A drain without --force lands only if the node holds no VM meant to run, or every node its
 * evacuation plan counted on (`onto`, computed where it was prepared: node/scheduler.ts
 * drainTargets) is still ready and alive. Placement itself is not run here (storage imports only
 * protocols/): this checks the plan's premise, which is what another drain, a cordon or a node's
 * death changes in between. Deterministic: committed state only. */
function strandingRefusal (ctx: ApplyContext, node: NodeRecord, onto: string[]): void {
  const running = vmIdsOn(ctx.tx, node.id).flatMap((id) => {
    const vm = ctx.tx.get<VmRecord>('vms', id)
    return vm !== undefined && vm.desired === 'running' ? [vm] : []
  })
  const how = `node ${node.name} was not drained; check again (blixard node drain ${node.name}), or drain with --force: VMs that fit nowhere stop and wait pending`
  // a node another drain counts on to take its VMs, while that node still holds one meant to run
  for (const [, other] of ctx.tx.range<NodeRecord>('nodes')) {
    if (other.id === node.id || other.state !== 'draining' || !(other.drainOnto ?? []).includes(node.id)) continue
    const waiting = vmIdsOn(ctx.tx, other.id).find((id) => ctx.tx.get<VmRecord>('vms', id)?.desired === 'running')
    if (waiting !== undefined) {
      reject('Conflict', `draining node ${node.name} would strand VMs: node ${other.name} is draining onto it and still holds VM ${ctx.tx.get<VmRecord>('vms', waiting)?.spec.name ?? waiting}; ${how}`)
    }
  }
  if (running.length === 0) return
  if (onto.length === 0) {
    reject('Conflict', `draining node ${node.name} would strand its ${running.length} running VM(s) (${running.slice(0, 3).map((v) => v.spec.name).join(', ')}${running.length > 3 ? ', …' : ''}): the drain names no node to take them; ${how}`)
  }
  for (const id of onto) {
    const to = ctx.tx.get<NodeRecord>('nodes', id)
    const state = to === undefined ? 'gone' : id === node.id ? 'the node being drained' : to.liveness === 'down' ? 'down' : to.state
    if (state !== 'ready') {
      reject('Conflict', `draining node ${node.name} would strand VMs: node ${to?.name ?? id}, which was to take them, is ${state === 'gone' ? 'no longer in the cluster' : `now ${state}`}; ${how}`)
    }
  }
}

export function removeNode (ctx: ApplyContext, c: Cmd<'RemoveNode'>): void {
  if (!ctx.tx.has('nodes', c.id)) reject('NotFound', `node ${c.id} not found`)
  const assigned = vmIdsOn(ctx.tx, c.id)
  if (assigned.length > 0) reject('InUse', `node ${c.id} still has ${assigned.length} VMs assigned, e.g. ${assigned[0]} (drain it first)`)
  // a VM taken off it may still run there: it must say so, or be marked down, first (release-rules.ts)
  const releasing = vmIdsReleasing(ctx.tx, c.id)
  if (releasing.length > 0) {
    const name = ctx.tx.get<VmRecord>('vms', releasing[0])?.spec.name ?? releasing[0]
    reject('InUse', `node ${c.id} may still run the guest of VM ${name}, taken off it: wait until it reports the guest stopped, or until it is marked down`)
  }
  ctx.tx.delete('nodes', c.id)
}
