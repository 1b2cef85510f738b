// The admin list: peer ids whose mutating RPCs are accepted.
import type { Command, JoinPolicy } from '../protocols/commands.ts'
import { DEFAULT_JOIN_POLICY } from '../protocols/commands.ts'
import type { KvTx } from './kv.ts'
import type { AdminRecord } from '../protocols/model.ts'
import type { ApplyContext } from './apply-context.ts'
import { reject } from './apply-context.ts'
import { isEd25519PeerId } from '../protocols/auth.ts'

type Cmd<T extends Command['type']> = Extract<Command, { type: T }>

export function addAdmin (ctx: ApplyContext, c: Cmd<'AddAdmin'>): AdminRecord {
  // an admin that is not a key could never sign anything: refused here too, whoever proposed it
  if (!isEd25519PeerId(c.peerId)) reject('InvalidCommand', `"${c.peerId}" is not a libp2p peer id of an Ed25519 key`)
  if (ctx.tx.get<AdminRecord>('admins', c.peerId) !== undefined) reject('AlreadyExists', `${c.peerId} is already an admin`)
  const rec: AdminRecord = { peerId: c.peerId, name: c.name, addedAt: ctx.at }
  ctx.tx.put('admins', c.peerId, rec)
  return rec
}

/** The last admin cannot be removed: nobody could change the cluster any more. */
export function removeAdmin (ctx: ApplyContext, c: Cmd<'RemoveAdmin'>): void {
  if (ctx.tx.get<AdminRecord>('admins', c.peerId) === undefined) reject('NotFound', `${c.peerId} is not an admin`)
  if (ctx.tx.range<AdminRecord>('admins', { limit: 2 }).length < 2) reject('Conflict', `${c.peerId} is the last admin`)
  ctx.tx.delete('admins', c.peerId)
}

export function joinPolicy (tx: KvTx): JoinPolicy {
  return tx.get<JoinPolicy>('settings', 'joinPolicy') ?? DEFAULT_JOIN_POLICY
}

/** Under `approve`, only peer ids an admin approved may join; nodes already registered stay. */
export function mayJoin (tx: KvTx, peerId: string): boolean {
  return joinPolicy(tx) === 'open' || tx.get('approvals', peerId) !== undefined || tx.get('nodes', peerId) !== undefined
}

export function setJoinPolicy (ctx: ApplyContext, c: Cmd<'SetJoinPolicy'>): { policy: JoinPolicy } {
  ctx.tx.put('settings', 'joinPolicy', c.policy)
  return { policy: c.policy }
}

export function approveNode (ctx: ApplyContext, c: Cmd<'ApproveNode'>): { peerId: string, approvedAt: number } {
  if (!isEd25519PeerId(c.peerId)) reject('InvalidCommand', `"${c.peerId}" is not a libp2p peer id of an Ed25519 key`)
  const rec = { peerId: c.peerId, approvedAt: ctx.at }
  ctx.tx.put('approvals', c.peerId, rec)
  return rec
}
