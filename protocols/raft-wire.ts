// Validation of Raft messages arriving from the network. The core trusts its input, so every
// field is checked here for shape, type and size before a message reaches step(). The shapes are
// declared in the schema vocabulary (protocols/schema.ts), wire dialect: unknown fields refused.
import type { Message, MessageType } from './raft/types.ts'
import { BlixardError } from './errors.ts'
import { compile, s, type Infer, type Problem } from './schema.ts'
import {
  MAX_CONF_MEMBERS, MAX_CONTEXT_BYTES, MAX_ENTRIES_PER_MSG, MAX_ENTRY_BYTES, MAX_NODE_ID_LENGTH,
  MAX_RAFT_BATCH_MSGS, MAX_SNAPSHOT_BYTES
} from './limits.ts'

/** Types that may cross the wire. Local-only types (MsgHup, MsgBeat, MsgUnreachable,
 * MsgSnapStatus) never do; MsgProp neither, since proposals are forwarded over RPC, not Raft. */
export const WIRE_MESSAGE_TYPES: readonly MessageType[] = [
  'MsgApp', 'MsgAppResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgVote', 'MsgVoteResp', 'MsgSnap',
  'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex',
  'MsgReadIndexResp', 'MsgRelayApp', 'MsgRelaySnap', 'MsgRelayAppResp', 'MsgRelaySub'
]
/** Types that may carry `lead` (relayed learners: protocols/raft/relay.ts). */
const LEAD_TYPES: ReadonlySet<MessageType> = new Set(['MsgRelayApp', 'MsgRelaySnap', 'MsgRelaySub'])

const bad = (message: (path: string, prefix: string) => string): Problem => ({ kind: 'BadMessage', message })

const nodeId = s.str(MAX_NODE_ID_LENGTH, { min: 1 })
/** a term or an index: a non-negative safe integer */
const count = (min = 0): ReturnType<typeof s.int> => s.int(min, Number.MAX_SAFE_INTEGER, 'BadMessage')

const ENTRY = s.obj({
  term: count(),
  index: count(1),
  type: s.oneOf(['normal', 'conf'] as const),
  data: s.blob(MAX_ENTRY_BYTES)
})

const members = s.refine(s.list(MAX_CONF_MEMBERS, nodeId), (ids) =>
  new Set(ids).size === ids.length ? undefined : bad((p) => `${p}: duplicate member`))

const SNAPSHOT = s.obj({
  meta: s.obj({
    index: count(),
    term: count(),
    // the joint fields are optional: snapshots from before joint consensus have none
    conf: s.obj({ voters: members, learners: members }, { votersOutgoing: members, learnersNext: members, autoLeave: s.bool() })
  }),
  data: s.blob(MAX_SNAPSHOT_BYTES)
})

const FIELDS = s.obj({
  type: s.oneOf(WIRE_MESSAGE_TYPES),
  from: nodeId,
  to: nodeId,
  term: count()
}, {
  logTerm: count(),
  index: count(),
  entries: s.list(MAX_ENTRIES_PER_MSG, ENTRY),
  commit: count(),
  reject: s.bool(),
  rejectHint: count(),
  snapshot: SNAPSHOT,
  context: s.blob(MAX_CONTEXT_BYTES),
  lead: nodeId
})
const MESSAGE = s.refine(FIELDS, crossFields)

/** What no single field says: who it is between, where entries and a snapshot may be, and that
 * entries follow the (index, logTerm) they are appended after, consecutively, terms never decreasing. */
function crossFields (m: Infer<typeof FIELDS>): Problem | undefined {
  if (m.from === m.to) return bad((p) => `${p}: from equals to`)
  if (m.entries !== undefined) {
    if (m.type !== 'MsgApp' && m.type !== 'MsgRelayApp') return bad((_p, f) => `${f}entries: not allowed on ${m.type}`)
    if (m.index === undefined) return bad((_p, f) => `${f}index: required with entries`)
    let prevIndex = m.index
    let prevTerm = m.logTerm ?? 0
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]
      if (e.index !== prevIndex + 1) { const want = prevIndex + 1; return bad((_p, f) => `${f}entries[${i}].index: expected ${want}, got ${e.index}`) }
      if (e.term < prevTerm || e.term > m.term) return bad((_p, f) => `${f}entries[${i}].term: ${e.term} out of order`)
      prevIndex = e.index
      prevTerm = e.term
    }
  }
  const snapType = m.type === 'MsgSnap' || m.type === 'MsgRelaySnap'
  if (m.snapshot !== undefined && !snapType) return bad((_p, f) => `${f}snapshot: not allowed on ${m.type}`)
  if (m.snapshot === undefined && snapType) return bad((_p, f) => `${f}snapshot: required on ${m.type}`)
  if (m.lead !== undefined && !LEAD_TYPES.has(m.type)) return bad((_p, f) => `${f}lead: not allowed on ${m.type}`)
  return undefined
}

const ROOT = 'msg'
const checkMessage = compile(MESSAGE, ROOT, `${ROOT}.`, 'wire')

/** Checks one decoded Raft message; returns a fresh Message holding only known fields. `path`
 * names it in errors (its place in a batch). */
export function validateMessage (x: unknown, path = ROOT): Message {
  try {
    return checkMessage(x)
  } catch (err) {
    // the checker names fields from a fixed root; a message's place in its batch is put in only
    // when it failed, so the path costs nothing on the receive path
    if (path === ROOT || !(err instanceof BlixardError) || !err.message.startsWith(ROOT)) throw err
    throw BlixardError.quiet(err.kind, path + err.message.slice(ROOT.length))
  }
}

const BATCH = s.list(MAX_RAFT_BATCH_MSGS, s.custom((x) => x))
const checkBatch = compile(BATCH, 'batch', 'batch.', 'wire')

/** A Raft frame is an array of messages; the frame itself must be well formed. Messages inside
 * are checked one by one by the receiver so that one bad message costs only itself. */
export function validateBatch (x: unknown): unknown[] {
  return checkBatch(x)
}
