// The hand-written Raft message validator that protocols/raft-wire.ts replaced, as it was (its
// wire types now imported from there), kept only as bench:schema's baseline.
//
// Validation of Raft messages arriving from the network. The core trusts its input, so every
// field is checked here for shape, type and size before a message reaches step().
import type { Entry, Message, Snapshot } from '../../protocols/raft/types.ts'
import { WIRE_MESSAGE_TYPES } from '../../protocols/raft-wire.ts'
import { arr, bad, bool, bytes, int, obj, oneOf, opt, str } from './validate-handwritten.ts'
import {
  MAX_CONF_MEMBERS, MAX_CONTEXT_BYTES, MAX_ENTRIES_PER_MSG, MAX_ENTRY_BYTES, MAX_NODE_ID_LENGTH,
  MAX_RAFT_BATCH_MSGS, MAX_SNAPSHOT_BYTES
} from '../../protocols/limits.ts'

const MESSAGE_FIELDS = ['type', 'from', 'to', 'term', 'logTerm', 'index', 'entries', 'commit', 'reject', 'rejectHint', 'snapshot', 'context'] as const

const nodeId = (x: unknown, path: string): string => str(x, path, MAX_NODE_ID_LENGTH, 1)

function entry (x: unknown, path: string): Entry {
  const o = obj(x, path, ['term', 'index', 'type', 'data'], ['term', 'index', 'type', 'data'])
  return {
    term: int(o.term, `${path}.term`),
    index: int(o.index, `${path}.index`, 1),
    type: oneOf(o.type, `${path}.type`, ['normal', 'conf'] as const),
    data: bytes(o.data, `${path}.data`, MAX_ENTRY_BYTES)
  }
}

function members (x: unknown, path: string): string[] {
  const ids = arr(x, path, MAX_CONF_MEMBERS).map((id, i) => nodeId(id, `${path}[${i}]`))
  if (new Set(ids).size !== ids.length) bad(path, 'duplicate member')
  return ids
}

function snapshot (x: unknown, path: string): Snapshot {
  const o = obj(x, path, ['meta', 'data'], ['meta', 'data'])
  const m = obj(o.meta, `${path}.meta`, ['index', 'term', 'conf'], ['index', 'term', 'conf'])
  // The joint fields are optional: snapshots from before joint consensus have none.
  const c = obj(m.conf, `${path}.meta.conf`, ['voters', 'learners', 'votersOutgoing', 'learnersNext', 'autoLeave'], ['voters', 'learners'])
  const conf: Snapshot['meta']['conf'] = { voters: members(c.voters, `${path}.meta.conf.voters`), learners: members(c.learners, `${path}.meta.conf.learners`) }
  if (c.votersOutgoing !== undefined) conf.votersOutgoing = members(c.votersOutgoing, `${path}.meta.conf.votersOutgoing`)
  if (c.learnersNext !== undefined) conf.learnersNext = members(c.learnersNext, `${path}.meta.conf.learnersNext`)
  if (c.autoLeave !== undefined) conf.autoLeave = bool(c.autoLeave, `${path}.meta.conf.autoLeave`)
  return {
    meta: {
      index: int(m.index, `${path}.meta.index`),
      term: int(m.term, `${path}.meta.term`),
      conf
    },
    data: bytes(o.data, `${path}.data`, MAX_SNAPSHOT_BYTES)
  }
}

/** Checks one decoded Raft message; returns a fresh Message holding only known fields. */
export function validateMessage (x: unknown, path = 'msg'): Message {
  const o = obj(x, path, MESSAGE_FIELDS, ['type', 'from', 'to', 'term'])
  const type = oneOf(o.type, `${path}.type`, WIRE_MESSAGE_TYPES)
  const m: Message = {
    type,
    from: nodeId(o.from, `${path}.from`),
    to: nodeId(o.to, `${path}.to`),
    term: int(o.term, `${path}.term`)
  }
  if (m.from === m.to) bad(path, 'from equals to')
  const logTerm = opt(o, 'logTerm', int, path); if (logTerm !== undefined) m.logTerm = logTerm
  const index = opt(o, 'index', int, path); if (index !== undefined) m.index = index
  const commit = opt(o, 'commit', int, path); if (commit !== undefined) m.commit = commit
  const reject = opt(o, 'reject', bool, path); if (reject !== undefined) m.reject = reject
  const rejectHint = opt(o, 'rejectHint', int, path); if (rejectHint !== undefined) m.rejectHint = rejectHint
  const context = opt(o, 'context', (v, p) => bytes(v, p, MAX_CONTEXT_BYTES), path); if (context !== undefined) m.context = context

  if (o.entries !== undefined) {
    if (type !== 'MsgApp') bad(`${path}.entries`, `not allowed on ${type}`)
    const entries = arr(o.entries, `${path}.entries`, MAX_ENTRIES_PER_MSG).map((e, i) => entry(e, `${path}.entries[${i}]`))
    // entries follow the (index, logTerm) they are appended after, consecutively, terms never decreasing
    let prevIndex = m.index ?? bad(`${path}.index`, 'required with entries')
    let prevTerm = m.logTerm ?? 0
    for (const [i, e] of entries.entries()) {
      if (e.index !== prevIndex + 1) bad(`${path}.entries[${i}].index`, `expected ${prevIndex + 1}, got ${e.index}`)
      if (e.term < prevTerm || e.term > m.term) bad(`${path}.entries[${i}].term`, `${e.term} out of order`)
      prevIndex = e.index
      prevTerm = e.term
    }
    m.entries = entries
  }
  if (o.snapshot !== undefined) {
    if (type !== 'MsgSnap') bad(`${path}.snapshot`, `not allowed on ${type}`)
    m.snapshot = snapshot(o.snapshot, `${path}.snapshot`)
  } else if (type === 'MsgSnap') {
    bad(`${path}.snapshot`, 'required on MsgSnap')
  }
  return m
}

/** A Raft frame is an array of messages; the frame itself must be well formed. Messages inside
 * are checked one by one by the receiver so that one bad message costs only itself. */
export function validateBatch (x: unknown): unknown[] {
  return arr(x, 'batch', MAX_RAFT_BATCH_MSGS)
}

