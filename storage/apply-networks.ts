// Networks and their IPv4 address management.
import type { Command } from '../protocols/commands.ts'
import type { NetworkRecord, VmRecord } from '../protocols/model.ts'
import { formatIpv4, parseCidr, parseIpv4 } from '../protocols/command-schema.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

function getNetwork (ctx: ApplyContext, name: string): NetworkRecord {
  const n = ctx.tx.get<NetworkRecord>('networks', name)
  if (n === undefined) reject('NotFound', `network ${name} not found`)
  return n
}

export function createNetwork (ctx: ApplyContext, c: Cmd<'CreateNetwork'>): NetworkRecord {
  if (ctx.tx.has('networks', c.name)) reject('AlreadyExists', `network ${c.name} already exists`)
  // Two networks sharing addresses would hand the same IP to two VMs and confuse every route.
  const mine = parseCidr(c.subnet)
  if (mine !== null) {
    for (const [, other] of ctx.tx.range<NetworkRecord>('networks')) {
      const o = parseCidr(other.subnet)
      if (o !== null && mine.network <= o.broadcast && o.network <= mine.broadcast) reject('Conflict', `subnet ${c.subnet} overlaps network ${other.name} (${other.subnet}); pick a subnet outside it`)
    }
  }
  const rec: NetworkRecord = { name: c.name, kind: c.kind, subnet: c.subnet, gateway: c.gateway ?? null, allocations: {}, createdAt: ctx.at }
  ctx.tx.put('networks', c.name, rec)
  return rec
}

export function deleteNetwork (ctx: ApplyContext, c: Cmd<'DeleteNetwork'>): void {
  const n = getNetwork(ctx, c.name)
  const held = Object.keys(n.allocations).length
  if (held > 0) reject('InUse', `network ${n.name} still has ${held} allocated addresses`)
  for (const [, vm] of ctx.tx.range<VmRecord>('vms')) {
    if (vm.spec.networks.includes(n.name)) reject('InUse', `VM ${vm.spec.name} is on network ${n.name}`)
  }
  ctx.tx.delete('networks', n.name)
}

/** The lowest free host address, skipping the network, broadcast and gateway addresses.
 * A VM that already holds an address on the network gets that one back. */
export function allocateIp (ctx: ApplyContext, c: Cmd<'AllocateIp'>): { ip: string } {
  const n = getNetwork(ctx, c.network)
  if (!ctx.tx.has('vms', c.vm)) reject('NotFound', `VM ${c.vm} not found`)
  for (const [ip, vm] of Object.entries(n.allocations)) if (vm === c.vm) return { ip }
  const cidr = parseCidr(n.subnet)
  if (cidr === null) reject('Internal', `network ${n.name} has a bad subnet ${n.subnet}`)
  const gw = n.gateway === null ? null : parseIpv4(n.gateway)
  for (let a = cidr.network + 1; a < cidr.broadcast; a++) {
    if (a === gw) continue
    const ip = formatIpv4(a)
    if (n.allocations[ip] !== undefined) continue
    ctx.tx.put('networks', n.name, { ...n, allocations: { ...n.allocations, [ip]: c.vm } })
    return { ip }
  }
  return reject('NoCapacity', `network ${n.name} (${n.subnet}) has no free address`)
}

export function releaseIp (ctx: ApplyContext, c: Cmd<'ReleaseIp'>): { ip: string } {
  const n = getNetwork(ctx, c.network)
  const ip = Object.keys(n.allocations).find(k => n.allocations[k] === c.vm)
  if (ip === undefined) reject('NotFound', `VM ${c.vm} holds no address on network ${n.name}`)
  const allocations = { ...n.allocations }
  delete allocations[ip]
  ctx.tx.put('networks', n.name, { ...n, allocations })
  return { ip }
}
