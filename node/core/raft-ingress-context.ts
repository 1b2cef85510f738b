// Builds the IngressContext of node/core/raft-ingress.ts from a RawNode, with the payload checks
// wired to the state machine's own decoders: an entry must decode as a command envelope (or a
// ConfChange) and a snapshot as a state-machine snapshot before the core may persist either.
import type { RawNode } from '../../protocols/raft/rawnode.ts'
import { decodeConfChange } from '../../protocols/raft/rawnode.ts'
import type { NodeId } from '../../protocols/raft/types.ts'
import { tryDecodeEnvelope } from '../../storage/envelope.ts'
import { validateSnapshot } from '../../storage/state-machine.ts'
import type { IngressContext } from './raft-ingress.ts'

export function checkEntryData (type: 'normal' | 'conf', data: Uint8Array): string | null {
  if (type === 'conf') {
    try { decodeConfChange(data); return null } catch (e) { return `not a conf change: ${e instanceof Error ? e.message : String(e)}` }
  }
  const r = tryDecodeEnvelope(data)
  return r.ok ? null : `not a command: ${r.error.message}`
}

export function raftIngressContext (self: NodeId, node: RawNode): IngressContext {
  const s = node.status()
  return {
    self,
    voters: s.conf.voters,
    learners: s.conf.learners,
    term: s.term,
    leader: s.lead,
    isLeader: s.role === 'leader',
    lastIndex: node.lastIndex(),
    checkEntry: checkEntryData,
    checkSnapshot: validateSnapshot
  }
}
