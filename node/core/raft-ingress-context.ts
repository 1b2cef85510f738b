// Builds the IngressContext of node/core/raft-ingress.ts from a RawNode, with the payload checks
// wired to the state machine's own decoders: an entry must decode as a command envelope (or a
// ConfChange) and a snapshot as a state-machine snapshot before the core may persist either.
import { decodeConfChange } from '../../protocols/raft/rawnode.ts'
import type { ConfState, NodeId, Role } from '../../protocols/raft/types.ts'
import { tryDecodeEnvelope } from '../../storage/envelope.ts'
import { validateSnapshot } from '../../storage/state-machine.ts'
import type { IngressContext } from './raft-ingress.ts'

/** Why `data` is not a valid entry of `type`, or null. */
export function checkEntryData (type: 'normal' | 'conf', data: Uint8Array): string | null {
  if (type === 'conf') {
    try { decodeConfChange(data); return null } catch (e) { return `not a conf change: ${e instanceof Error ? e.message : String(e)}` }
  }
  const r = tryDecodeEnvelope(data)
  return r.ok ? null : `not a command: ${r.error.message}`
}

/** What the context needs of a node (node/core/raft-node.ts's RaftNode): built for every message
 * received, so from accessors that copy nothing (not status()). */
export interface IngressSource {
  term: () => number
  leaderId: () => NodeId | null
  coreRole: () => Role
  conf: () => Readonly<ConfState>
  lastIndex: () => number
}

export function raftIngressContext (self: NodeId, node: IngressSource): IngressContext {
  const conf = node.conf()
  // while joint, the outgoing voters (a removed leader among them) and the learners-to-be are
  // members until the leave commits
  const voters = conf.votersOutgoing == null ? conf.voters : [...new Set([...conf.voters, ...conf.votersOutgoing])]
  const learners = conf.learnersNext == null ? conf.learners : [...new Set([...conf.learners, ...conf.learnersNext])]
  return {
    self,
    voters,
    learners,
    term: node.term(),
    leader: node.leaderId(),
    isLeader: node.coreRole() === 'leader',
    lastIndex: node.lastIndex(),
    checkEntry: checkEntryData,
    checkSnapshot: validateSnapshot
  }
}
