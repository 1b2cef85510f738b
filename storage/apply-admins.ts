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
  if (ctx.tx.has('admins', c.peerId)) reject('AlreadyExists', `${c.peerId} is already an admin`)
  const rec: AdminRecord = { peerId: c.peerId, name: c.name, addedAt: ctx.at }
  ctx.tx.put('admins', c.peerId, rec)
  return rec
}

/** The last admin cannot be removed: nobody could change the cluster any more. */
export function removeAdmin (ctx: ApplyContext, c: Cmd<'RemoveAdmin'>): void {
  if (!ctx.tx.has('admins', c.peerId)) reject('NotFound', `${c.peerId} is not an admin`)
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

/**
 * Offline recovery of a cluster whose admins' keys are lost (`blixard-node admin recover`): each
 * registered node votes, with its own key, to make `peerId` an admin; the admin is added once
 * EVERY registered node has voted for it. Why every node and not a majority: under join policy
 * "open" any key holder can register hosts of its own, so a majority of registered nodes can be
 * manufactured; a vote from each real node cannot (it needs root on that host, for its identity
 * key and the recovery flag). A node that is gone for good must come back (or be wiped and
 * re-registered) before recovery completes; votes stay until then.
 */
export function recoverAdmin (ctx: ApplyContext, c: Cmd<'RecoverAdmin'>, voter: string): { peerId: string, votes: number, needed: number, added: boolean } {
  if (!isEd25519PeerId(c.peerId)) reject('InvalidCommand', `"${c.peerId}" is not a libp2p peer id of an Ed25519 key`)
  if (ctx.tx.get('nodes', voter) === undefined) reject('Unauthorized', `${voter} is not a registered node`)
  ctx.tx.put('recoveryVotes', `${c.peerId}/${voter}`, ctx.at)
  const nodes = ctx.tx.range('nodes').map(([id]) => id)
  const votes = nodes.filter((n) => ctx.tx.get('recoveryVotes', `${c.peerId}/${n}`) !== undefined).length
  const added = votes === nodes.length
  if (added) {
    for (const [k] of ctx.tx.range('recoveryVotes', { start: `${c.peerId}/`, end: `${c.peerId}0` })) ctx.tx.delete('recoveryVotes', k)
    if (!ctx.tx.has('admins', c.peerId)) ctx.tx.put('admins', c.peerId, { peerId: c.peerId, name: 'recovered', addedAt: ctx.at })
  }
  return { peerId: c.peerId, votes, needed: nodes.length, added }
}
