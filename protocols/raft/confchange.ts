// Membership changes, one voter at a time: their wire form inside a 'conf'
// entry, the check a leader makes before proposing one, and how a committed
// one changes the configuration.
import type { ConfChange, ConfState, NodeId } from './types.ts'
import { RaftError } from './types.ts'

const TYPE_CODES: Record<ConfChange['type'], number> = { addLearner: 1, promote: 2, remove: 3 }
const CODE_TYPES: Record<number, ConfChange['type']> = { 1: 'addLearner', 2: 'promote', 3: 'remove' }
/** Node ids are short (peer ids); anything longer is garbage, not a conf change. */
const MAX_NODE_ID_BYTES = 1024

/** One type byte, then the node id in UTF-8. */
export function encodeConfChange (cc: ConfChange): Uint8Array {
  const id = new TextEncoder().encode(cc.node)
  const out = new Uint8Array(1 + id.byteLength)
  out[0] = TYPE_CODES[cc.type]
  out.set(id, 1)
  return out
}

/** Throws RaftError('InvalidConfChange') on bytes that are not an encoded ConfChange. */
export function decodeConfChange (b: Uint8Array): ConfChange {
  const type = b.byteLength > 0 ? CODE_TYPES[b[0]] : undefined
  if (type === undefined) throw new RaftError('InvalidConfChange', 'conf change: unknown type byte')
  if (b.byteLength < 2 || b.byteLength - 1 > MAX_NODE_ID_BYTES) throw new RaftError('InvalidConfChange', 'conf change: bad node id length')
  let node: NodeId
  try {
    node = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(1))
  } catch {
    throw new RaftError('InvalidConfChange', 'conf change: node id is not UTF-8')
  }
  return { type, node }
}

export function isVoter (conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id)
}

export function isLearner (conf: ConfState, id: NodeId): boolean {
  return conf.learners.includes(id)
}

export function isMember (conf: ConfState, id: NodeId): boolean {
  return isVoter(conf, id) || isLearner(conf, id)
}

/** Why `cc` makes no sense against `conf`, or null when it is a real one-step change. */
export function confChangeError (conf: ConfState, cc: ConfChange): RaftError | null {
  switch (cc.type) {
    case 'addLearner':
      if (isMember(conf, cc.node)) return new RaftError('InvalidConfChange', `${cc.node} is already a member`)
      return null
    case 'promote':
      if (!isLearner(conf, cc.node)) return new RaftError('InvalidConfChange', `${cc.node} is not a learner`)
      return null
    case 'remove':
      if (!isMember(conf, cc.node)) return new RaftError('InvalidConfChange', `${cc.node} is not a member`)
      if (conf.voters.length === 1 && isVoter(conf, cc.node)) return new RaftError('InvalidConfChange', `cannot remove the last voter ${cc.node}`)
      return null
  }
}

/** The configuration after a committed change. Changes that would not apply (already done, or
 * leaving no voter) leave it unchanged, so replaying a committed entry after a restart is harmless. */
export function applyConfChange (conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter(v => v !== cc.node)
  const learners = conf.learners.filter(l => l !== cc.node)
  switch (cc.type) {
    case 'addLearner':
      if (isMember(conf, cc.node)) return conf
      return { voters: [...conf.voters], learners: [...learners, cc.node] }
    case 'promote':
      if (!isLearner(conf, cc.node)) return conf
      return { voters: [...voters, cc.node], learners }
    case 'remove':
      if (voters.length === 0) return conf
      return { voters, learners }
  }
}
