// Membership changes: one voter at a time (ConfChange) or etcd-style conf change v2
// (ConfChangeV2: several changes through a joint configuration); their wire form inside a
// 'conf' entry, the check a leader makes before proposing one, and how a committed one changes
// the configuration.
import type { AnyConfChange, ConfChange, ConfChangeV2, ConfState, NodeId } from './types.ts'
import { RaftError } from './types.ts'

const TYPE_CODES: Record<ConfChange['type'], number> = { addLearner: 1, promote: 2, remove: 3 }
const CODE_TYPES: Record<number, ConfChange['type']> = { 1: 'addLearner', 2: 'promote', 3: 'remove' }
/** Node ids are short (peer ids); anything longer is garbage, not a conf change. */
const MAX_NODE_ID_BYTES = 1024

/** First byte of a v2 change: not a v1 type code, so old entries still decode as v1. */
const V2_MARKER = 4
const V2_TYPE_CODES: Record<ConfChangeV2['changes'][number]['type'], number> = { 'add-voter': 1, 'add-learner': 2, remove: 3 }
const V2_CODE_TYPES: Record<number, ConfChangeV2['changes'][number]['type']> = { 1: 'add-voter', 2: 'add-learner', 3: 'remove' }
/** Bounds the work of decoding a peer's entry; a membership is a handful of nodes. */
export const MAX_CONF_CHANGES = 64

export function isConfChangeV2 (cc: AnyConfChange): cc is ConfChangeV2 {
  return 'changes' in cc
}

/** v1: one type byte, then the node id in UTF-8. v2: the marker, a transition byte (0 auto,
 * 1 explicit), then per change a type byte, a 2-byte big-endian id length and the id. */
export function encodeConfChange (cc: AnyConfChange): Uint8Array {
  if (isConfChangeV2(cc)) return encodeV2(cc)
  const id = new TextEncoder().encode(cc.node)
  const out = new Uint8Array(1 + id.byteLength)
  out[0] = TYPE_CODES[cc.type]
  out.set(id, 1)
  return out
}

function encodeV2 (cc: ConfChangeV2): Uint8Array {
  const ids = cc.changes.map(c => new TextEncoder().encode(c.node))
  const out = new Uint8Array(2 + ids.reduce((n, id) => n + 3 + id.byteLength, 0))
  out[0] = V2_MARKER
  out[1] = cc.transition === 'explicit' ? 1 : 0
  let at = 2
  cc.changes.forEach((c, i) => {
    out[at] = V2_TYPE_CODES[c.type]
    out[at + 1] = ids[i].byteLength >> 8
    out[at + 2] = ids[i].byteLength & 0xff
    out.set(ids[i], at + 3)
    at += 3 + ids[i].byteLength
  })
  return out
}

function decodeV2 (b: Uint8Array): ConfChangeV2 {
  const bad = (why: string): RaftError => new RaftError('InvalidConfChange', `conf change v2: ${why}`)
  if (b.byteLength < 2 || b[1] > 1) throw bad('bad transition byte')
  const changes: ConfChangeV2['changes'] = []
  let at = 2
  while (at < b.byteLength) {
    if (changes.length >= MAX_CONF_CHANGES) throw bad(`more than ${MAX_CONF_CHANGES} changes`)
    if (at + 3 > b.byteLength) throw bad('truncated change')
    const type = V2_CODE_TYPES[b[at]]
    if (type === undefined) throw bad('unknown change type')
    const len = (b[at + 1] << 8) | b[at + 2]
    if (len === 0 || len > MAX_NODE_ID_BYTES || at + 3 + len > b.byteLength) throw bad('bad node id length')
    let node: NodeId
    try {
      node = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(at + 3, at + 3 + len))
    } catch {
      throw bad('node id is not UTF-8')
    }
    changes.push({ type, node })
    at += 3 + len
  }
  return { changes, transition: b[1] === 1 ? 'explicit' : 'auto' }
}

/** Throws RaftError('InvalidConfChange') on bytes that are not an encoded ConfChange. */
export function decodeConfChange (b: Uint8Array): AnyConfChange {
  if (b.byteLength > 0 && b[0] === V2_MARKER) return decodeV2(b)
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

export function isJoint (conf: ConfState): boolean {
  return (conf.votersOutgoing?.length ?? 0) > 0
}

/** A voter of either half of a joint configuration (it votes and counts for quorums). */
export function isVoter (conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id) || (conf.votersOutgoing?.includes(id) ?? false)
}

export function isLearner (conf: ConfState, id: NodeId): boolean {
  return !isVoter(conf, id) && (conf.learners.includes(id) || (conf.learnersNext?.includes(id) ?? false))
}

export function isMember (conf: ConfState, id: NodeId): boolean {
  return isVoter(conf, id) || isLearner(conf, id)
}

/** Every member: voters of both halves, learners, learners-to-be. */
export function members (conf: ConfState): NodeId[] {
  return [...new Set([...conf.voters, ...(conf.votersOutgoing ?? []), ...conf.learners, ...(conf.learnersNext ?? [])])]
}

export function copyConf (c: ConfState): ConfState {
  const out: ConfState = { voters: [...c.voters], learners: [...c.learners] }
  if (isJoint(c)) {
    out.votersOutgoing = [...(c.votersOutgoing ?? [])]
    out.learnersNext = [...(c.learnersNext ?? [])]
    out.autoLeave = c.autoLeave === true
  }
  return out
}

/** Why `cc` makes no sense against `conf`, or null when it is a real change. */
export function confChangeError (conf: ConfState, cc: AnyConfChange): RaftError | null {
  if (isConfChangeV2(cc)) return v2Error(conf, cc)
  if (isJoint(conf)) return new RaftError('InvalidConfChange', 'the configuration is joint: only leaving it (an empty conf change v2) is allowed')
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

function v2Error (conf: ConfState, cc: ConfChangeV2): RaftError | null {
  const bad = (why: string): RaftError => new RaftError('InvalidConfChange', why)
  if (cc.changes.length === 0) return isJoint(conf) ? null : bad('not in a joint configuration: nothing to leave')
  if (isJoint(conf)) return bad('the configuration is joint: leave it (an empty conf change v2) before another change')
  if (cc.changes.length > MAX_CONF_CHANGES) return bad(`more than ${MAX_CONF_CHANGES} changes`)
  const seen = new Set<NodeId>()
  for (const c of cc.changes) {
    if (seen.has(c.node)) return bad(`${c.node} appears twice in one conf change`)
    seen.add(c.node)
    if (c.type === 'add-voter' && conf.voters.includes(c.node)) return bad(`${c.node} is already a voter`)
    if (c.type === 'add-learner' && conf.learners.includes(c.node)) return bad(`${c.node} is already a learner`)
    if (c.type === 'remove' && !isMember(conf, c.node)) return bad(`${c.node} is not a member`)
  }
  const next = applyV2(conf, cc)
  if (next === conf || next.voters.length === 0) return bad('the change would leave no voter')
  return null
}

/** The configuration after a committed change. Changes that would not apply (already done, or
 * leaving no voter, or not allowed in the current joint state) leave it unchanged, so replaying a
 * committed entry after a restart is harmless and every node computes the same result. */
export function applyConfChange (conf: ConfState, cc: AnyConfChange): ConfState {
  if (isConfChangeV2(cc)) return applyV2(conf, cc)
  if (isJoint(conf)) return conf
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

function applyV2 (conf: ConfState, cc: ConfChangeV2): ConfState {
  if (cc.changes.length === 0) {
    // Leave joint: the incoming voters alone decide; demoted outgoing voters become learners.
    if (!isJoint(conf)) return conf
    const learners = [...conf.learners]
    for (const l of conf.learnersNext ?? []) if (!learners.includes(l) && !conf.voters.includes(l)) learners.push(l)
    return { voters: [...conf.voters], learners }
  }
  if (isJoint(conf)) return conf
  const outgoing = [...conf.voters]
  let voters = [...conf.voters]
  let learners = [...conf.learners]
  let learnersNext: NodeId[] = []
  for (const c of cc.changes) {
    voters = voters.filter(v => v !== c.node)
    learners = learners.filter(l => l !== c.node)
    learnersNext = learnersNext.filter(l => l !== c.node)
    if (c.type === 'add-voter') voters.push(c.node)
    // An outgoing voter still votes while joint, so it cannot be a learner yet.
    else if (c.type === 'add-learner') (outgoing.includes(c.node) ? learnersNext : learners).push(c.node)
  }
  if (voters.length === 0) return conf
  const changedVoters = voters.filter(v => !outgoing.includes(v)).length + outgoing.filter(v => !voters.includes(v)).length
  if (cc.transition === 'auto' && changedVoters <= 1) {
    // One voter changed: any majority of the old set overlaps any of the new, no joint state needed.
    return { voters, learners: [...learners, ...learnersNext] }
  }
  return { voters, learners, votersOutgoing: outgoing, learnersNext, autoLeave: cc.transition === 'auto' }
}

/** One line for logs and traces: 'promote n2', 'v2 auto [add-voter n4, remove n1]', 'leave-joint'. */
export function confChangeText (cc: AnyConfChange): string {
  if (!isConfChangeV2(cc)) return `${cc.type} ${cc.node}`
  if (cc.changes.length === 0) return 'leave-joint'
  return `v2 ${cc.transition} [${cc.changes.map(c => `${c.type} ${c.node}`).join(', ')}]`
}

/** Has `conf` taken in everything `cc` asked for (and, for a v2 change, left joint again)?
 * What a shell waits for after proposing. */
export function confChangeDone (conf: ConfState, cc: AnyConfChange): boolean {
  if (isJoint(conf)) return false
  const changes = isConfChangeV2(cc)
    ? cc.changes
    : [{ type: cc.type === 'addLearner' ? 'add-learner' as const : cc.type === 'promote' ? 'add-voter' as const : 'remove' as const, node: cc.node }]
  return changes.every(c => c.type === 'add-voter'
    ? conf.voters.includes(c.node)
    : c.type === 'add-learner' ? conf.learners.includes(c.node) || (!isConfChangeV2(cc) && conf.voters.includes(c.node)) : !isMember(conf, c.node))
}
