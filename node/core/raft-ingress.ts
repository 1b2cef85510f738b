// Who may speak Raft, and what they may say. The Raft core trusts its input; the wire schema
// (protocols/raft-wire.ts) checks shapes; this pure module (no I/O, no clock) decides, from the
// authenticated libp2p peer id and the node's own Raft state, whether a well-formed message
// reaches step() at all. Raft is not Byzantine-tolerant: a voter can still disrupt elections.
// What this guards against is everyone else — a key holder that is not a member, a learner
// acting as a voter, a peer speaking for another — and values that could wedge the cluster.
//
// The term rule: a message's term (and every term inside it) must be <= MAX_TERM, and a message
// may raise our term by at most MAX_TERM_LEAP. MAX_TERM is 2^48, far below 2^53−1, so a cluster
// whose term somehow reached MAX_TERM could still campaign 2^53−2^48 more times before the
// integer check of the wire schema refused its votes. A learner may never raise our term (it
// never campaigns, so a higher term from it is a lie or a bug). Indexes (index, commit, logTerm,
// rejectHint, entry and snapshot indexes) are bounded by MAX_INDEX likewise, and a response to
// the leader may not claim an index beyond the leader's own last index.
import type { Message, MessageType, NodeId } from '../../protocols/raft/types.ts'

/** Highest term accepted from the wire; see the file comment. */
export const MAX_TERM = 2 ** 48
/** Largest step by which one message may raise our term. A legitimate cluster moves terms by
 * one per election (pre-vote keeps partitioned nodes from inflating theirs), so a node that was
 * away through a million elections would be the only one to suffer (it rejoins by snapshot after
 * a restart, which starts it at the leader's term). */
export const MAX_TERM_LEAP = 1_000_000
/** Highest log index, commit or snapshot index accepted from the wire. */
export const MAX_INDEX = 2 ** 48

export type DropReason =
  | 'not-member' // the authenticated sender is not in the configuration
  | 'not-admitter' // we have no configuration yet, and the sender is not a peer that admitted us
  | 'spoofed-from' // msg.from is not the authenticated sender
  | 'wrong-to' // msg.to is not this node
  | 'learner-type' // a learner sent a message only a voter sends
  | 'voter-type' // a voter sent a message only a learner sends (relayed learners)
  | 'not-leader' // a leader-only message from a peer that is not our leader in this term
  | 'not-for-leader' // a response meant for a leader, and we do not lead
  | 'term-too-high' // term above MAX_TERM or above our term + MAX_TERM_LEAP
  | 'learner-term' // a learner tried to raise our term
  | 'index-too-high' // an index above MAX_INDEX or beyond what the sender could have
  | 'bad-entry' // an entry's data does not decode as a command
  | 'bad-snapshot' // a snapshot's data does not decode as a state-machine snapshot
  | 'local-type' // a type that never crosses the wire

export type Admission = { ok: true } | { ok: false, reason: DropReason, detail: string }

export interface IngressContext {
  /** this node */
  self: NodeId
  /** voters and learners of our configuration */
  voters: readonly NodeId[]
  learners: readonly NodeId[]
  /** nodes named by a conf entry in our log above commit (a join in flight): treated as learners */
  pending?: readonly NodeId[]
  /** while we have no configuration (a joiner before its first snapshot): the peers we asked to
   * join through and the leader that answered; only they may send us what a leader sends.
   * Undefined: no such binding (a caller that does not track joins, the simulator) */
  admitters?: readonly NodeId[]
  /** our current term, the leader we know (null if none), whether we lead, our last log index */
  term: number
  leader: NodeId | null
  isLeader: boolean
  lastIndex: number
  /** optional deep checks of payloads, injected so this module stays free of storage code;
   * each returns null when fine or a reason */
  checkEntry?: (type: 'normal' | 'conf', data: Uint8Array) => string | null
  checkSnapshot?: (data: Uint8Array) => string | null
}

/** Sent by a leader to its followers (and only by a voter that won an election). */
const FROM_LEADER = new Set<MessageType>(['MsgApp', 'MsgSnap', 'MsgHeartbeat', 'MsgTimeoutNow', 'MsgReadIndexResp'])
/** Sent by any follower (voter or learner) to its leader. */
const TO_LEADER = new Set<MessageType>(['MsgAppResp', 'MsgHeartbeatResp', 'MsgReadIndex'])
/** Elections and leadership transfer: voters only. */
const VOTER_ONLY = new Set<MessageType>(['MsgVote', 'MsgPreVote', 'MsgVoteResp', 'MsgPreVoteResp', 'MsgTransferLeader', ...FROM_LEADER, 'MsgRelayApp', 'MsgRelaySnap'])
/** Relayed learners (protocols/raft/relay.ts): a learner subscribes and answers its relay. */
const LEARNER_ONLY = new Set<MessageType>(['MsgRelaySub', 'MsgRelayAppResp'])
const LOCAL_ONLY = new Set<MessageType>(['MsgHup', 'MsgBeat', 'MsgProp', 'MsgUnreachable', 'MsgSnapStatus'])

const drop = (reason: DropReason, detail: string): Admission => ({ ok: false, reason, detail })
const OK: Admission = { ok: true }

/** Decides whether `msg`, received on a stream authenticated as `sender`, may reach the core. */
export function admitRaftMessage (sender: NodeId, msg: Message, ctx: IngressContext): Admission {
  if (LOCAL_ONLY.has(msg.type)) return drop('local-type', `${msg.type} never crosses the wire`)
  if (msg.from !== sender) return drop('spoofed-from', `from '${msg.from.slice(0, 64)}' is not the sending peer`)
  if (msg.to !== ctx.self) return drop('wrong-to', `to '${msg.to.slice(0, 64)}' is not this node`)

  const voter = ctx.voters.includes(sender)
  const learner = !voter && (ctx.learners.includes(sender) || (ctx.pending?.includes(sender) ?? false))
  // A node with no configuration yet (a joiner before its first snapshot) cannot tell members
  // from others; it accepts only what a leader sends, which is how it learns the configuration.
  const unconfigured = ctx.voters.length === 0
  if (unconfigured && !voter && !learner && ctx.admitters !== undefined && !ctx.admitters.includes(sender)) {
    return drop('not-admitter', `${sender.slice(0, 64)} is not a peer this node asked to join through, and it has no configuration yet`)
  }
  // What a leader sends is taken from a peer that admitted us even when our configuration does not
  // name it: a joiner's first snapshot may be the cluster's oldest (index 1, the bootstrap node's
  // configuration), and the leader that sent it, elected later, is not in it; the conf entries that
  // name it come in the appends that follow (dropping them left a learner that joined after a
  // failover without a log for good).
  const admitter = ctx.admitters?.includes(sender) ?? false
  if (!voter && !learner && !((unconfigured || admitter) && FROM_LEADER.has(msg.type))) {
    return drop('not-member', `${sender.slice(0, 64)} is not a member of the configuration`)
  }
  if (learner && VOTER_ONLY.has(msg.type)) return drop('learner-type', `a learner may not send ${msg.type}`)
  if (!learner && LEARNER_ONLY.has(msg.type)) return drop('voter-type', `only a learner sends ${msg.type}`)

  // terms
  const terms = [msg.term, msg.logTerm ?? 0, ...(msg.entries ?? []).map(e => e.term), msg.snapshot?.meta.term ?? 0]
  for (const t of terms) if (t > MAX_TERM) return drop('term-too-high', `term ${t} > MAX_TERM ${MAX_TERM}`)
  if (msg.term > ctx.term + MAX_TERM_LEAP) return drop('term-too-high', `term ${msg.term} > our term ${ctx.term} + ${MAX_TERM_LEAP}`)
  if (learner && msg.term > ctx.term) return drop('learner-term', `a learner may not raise the term (${msg.term} > ${ctx.term})`)

  // indexes
  const idx = [msg.index ?? 0, msg.commit ?? 0, msg.rejectHint ?? 0, msg.snapshot?.meta.index ?? 0]
  const entries = msg.entries ?? []
  if (entries.length > 0) idx.push(entries[entries.length - 1].index)
  for (const i of idx) if (i > MAX_INDEX) return drop('index-too-high', `index ${i} > MAX_INDEX ${MAX_INDEX}`)

  // who is the leader here
  if (FROM_LEADER.has(msg.type) && msg.term === ctx.term && ctx.leader != null && ctx.leader !== sender) {
    return drop('not-leader', `${msg.type} from ${sender.slice(0, 64)} but our leader in term ${ctx.term} is ${ctx.leader.slice(0, 64)}`)
  }
  if (FROM_LEADER.has(msg.type) && msg.term === ctx.term && ctx.isLeader) {
    return drop('not-leader', `${msg.type} in our own term while we lead`)
  }
  if (TO_LEADER.has(msg.type) && msg.term <= ctx.term) {
    // a follower's answer to us; stale answers from an earlier term are harmless and ignored by the core
    if (msg.term === ctx.term && !ctx.isLeader && msg.type !== 'MsgReadIndex') return drop('not-for-leader', `${msg.type} but we do not lead term ${ctx.term}`)
    if (ctx.isLeader && msg.term === ctx.term && (msg.index ?? 0) > ctx.lastIndex) {
      return drop('index-too-high', `${msg.type} claims index ${msg.index ?? 0} beyond our last index ${ctx.lastIndex}`)
    }
  }

  // payloads
  if (ctx.checkEntry != null) {
    for (const e of entries) {
      if (e.type === 'normal' && e.data.byteLength === 0) continue // a new leader's no-op
      const why = ctx.checkEntry(e.type, e.data)
      if (why != null) return drop('bad-entry', `entry ${e.index}: ${why}`)
    }
  }
  if (msg.snapshot != null && ctx.checkSnapshot != null) {
    const s = msg.snapshot
    // Not required: the sender's voter status in the snapshot's own configuration. A leader that
    // joined after the snapshot's index is not in it (the simulator found that drop starving a
    // follower for good); who may send a snapshot is decided above (our leader, a member).
    if (s.meta.index > 0 || s.data.byteLength > 0) {
      const why = ctx.checkSnapshot(s.data)
      if (why != null) return drop('bad-snapshot', why)
    }
  }
  return OK
}

/** Keeps "log once per peer and reason" bounded: at most this many distinct keys are remembered. */
export const MAX_LOGGED_DROP_KEYS = 1024

/** Remembers which (peer, reason) pairs have been logged, so a flood is logged once. Pure. */
export class DropLogOnce {
  private readonly seen = new Set<string>()
  /** true the first time a (peer, reason) pair is seen */
  first (peer: NodeId, reason: DropReason): boolean {
    const k = `${reason} ${peer}`
    if (this.seen.has(k)) return false
    if (this.seen.size >= MAX_LOGGED_DROP_KEYS) return false
    this.seen.add(k)
    return true
  }
}
