// Builds the IngressContext of node/core/raft-ingress.ts from a RawNode, with the payload checks
// wired to the state machine's own decoders: an entry must decode as a command envelope (or a
// ConfChange) and a snapshot as a state-machine snapshot before the core may persist either.
import type { RaftStatus } from '../../protocols/raft/rawnode.ts'
import { decodeConfChange } from '../../protocols/raft/rawnode.ts'
import type { NodeId } from '../../protocols/raft/types.ts'
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

/** What the context needs of a node: a RawNode, or node/core/raft-node.ts's RaftNode around one. */
export interface IngressSource { status: () => RaftStatus, lastIndex: () => number }

export function raftIngressContext (self: NodeId, node: IngressSource): IngressContext {
  const s = node.status()
  // while joint, the outgoing voters (a removed leader among them) and the learners-to-be are
  // members until the leave commits
  const voters = s.conf.votersOutgoing == null ? s.conf.voters : [...new Set([...s.conf.voters, ...s.conf.votersOutgoing])]
  const learners = s.conf.learnersNext == null ? s.conf.learners : [...new Set([...s.conf.learners, ...s.conf.learnersNext])]
  return {
    self,
    voters,
    learners,
    term: s.term,
    leader: s.lead,
    isLeader: s.role === 'leader',
    lastIndex: node.lastIndex(),
    checkEntry: checkEntryData,
    checkSnapshot: validateSnapshot
  }
}
