// The Raft core's vocabulary: entries, messages, hard state, snapshots and
// the Ready batch the shell acts on. Everything here is plain data so that it
// can be CBOR-encoded onto the wire or into LMDB unchanged.

export type NodeId = string

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader'

/** 'normal' entries carry state-machine commands (possibly empty: the no-op a new leader appends);
 * 'conf' entries carry an encoded ConfChange. */
export type EntryType = 'normal' | 'conf'

export interface Entry {
  term: number
  index: number
  type: EntryType
  data: Uint8Array
}

/** One voter at a time: add a learner, promote a learner, remove any member. */
export interface ConfChange {
  type: 'addLearner' | 'promote' | 'remove'
  node: NodeId
}

/** Conf change v2 (etcd style): several changes at once. More than one voter change (or any
 * change with transition 'explicit') enters a joint configuration; an empty change list leaves it.
 * 'auto' has the leader propose the leave itself once the joint entry is applied. */
export interface ConfChangeV2 {
  changes: Array<{ type: 'add-voter' | 'add-learner' | 'remove', node: NodeId }>
  transition: 'auto' | 'explicit'
}

/** Either form a conf entry can carry. */
export type AnyConfChange = ConfChange | ConfChangeV2

/**
 * `voters` is the incoming voter set. While joint, `votersOutgoing` holds the previous voters and
 * every decision (commit, election, ReadIndex, check-quorum) needs a majority of BOTH sets;
 * `learnersNext` are outgoing voters demoted to learner, who become learners on leaving.
 * The joint fields are absent outside joint state, so configurations written before joint
 * consensus existed read unchanged.
 */
export interface ConfState {
  voters: NodeId[]
  learners: NodeId[]
  votersOutgoing?: NodeId[]
  learnersNext?: NodeId[]
  /** Joint and entered with transition 'auto': the leader proposes the leave. */
  autoLeave?: boolean
}

export interface HardState {
  term: number
  vote: NodeId | null
  commit: number
}

export interface SnapshotMeta {
  index: number
  term: number
  conf: ConfState
}

export interface Snapshot {
  meta: SnapshotMeta
  data: Uint8Array
}

/** Message names follow the paper and etcd. Local-only messages (never sent on the wire) are
 * MsgHup, MsgBeat, MsgProp from the local client, MsgUnreachable, MsgSnapStatus. */
export type MessageType =
  | 'MsgHup'
  | 'MsgBeat'
  | 'MsgProp'
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgSnap'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp'
  | 'MsgUnreachable'
  | 'MsgSnapStatus'
  | 'MsgRelayApp'
  | 'MsgRelaySnap'
  | 'MsgRelayAppResp'
  | 'MsgRelaySub'

export const MESSAGE_TYPES: readonly MessageType[] = [
  'MsgHup', 'MsgBeat', 'MsgProp', 'MsgApp', 'MsgAppResp', 'MsgPreVote', 'MsgPreVoteResp',
  'MsgVote', 'MsgVoteResp', 'MsgSnap', 'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader',
  'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp', 'MsgUnreachable', 'MsgSnapStatus',
  'MsgRelayApp', 'MsgRelaySnap', 'MsgRelayAppResp', 'MsgRelaySub'
]

/**
 * One flat message shape (as etcd's raftpb.Message) so that framing and validation are simple.
 * Field meaning by type:
 * - MsgApp: index/logTerm = the entry preceding `entries`; commit = leader's commit.
 * - MsgAppResp: index = highest index now matching (accept) or the rejected prev index (reject);
 *   rejectHint/logTerm = follower's conflict hint (fast backtracking).
 * - MsgVote/MsgPreVote: index/logTerm = candidate's last entry; context 'transfer' for a forced campaign.
 * - MsgHeartbeat: commit = min(leader commit, follower match); context = ReadIndex round ctx.
 * - MsgReadIndex / MsgReadIndexResp: context = the request id; index = the read index in the response.
 * - MsgSnap: snapshot.
 * - Relayed learners (RaftConfig.relayLearners; protocols/raft/relay.ts): MsgRelayApp and MsgRelaySnap
 *   are MsgApp and MsgSnap from a follower (the relay) to a learner, carrying committed entries only,
 *   with `lead` = the relay's leader; MsgRelayAppResp is the learner's answer (as MsgAppResp).
 *   MsgRelaySub, learner to voter: `lead` = the voter the learner takes its feed from (itself when
 *   sent to that voter: a subscription; the leader, when it is the leader: fed directly),
 *   `commit` = the learner's commit index, `index` = its last index.
 */
export interface Message {
  type: MessageType
  from: NodeId
  to: NodeId
  term: number
  logTerm?: number
  index?: number
  entries?: Entry[]
  commit?: number
  reject?: boolean
  rejectHint?: number
  snapshot?: Snapshot
  context?: Uint8Array
  /** relay messages only: see above */
  lead?: NodeId
}

export interface SoftState {
  leader: NodeId | null
  role: Role
}

/** A ReadIndex answer: once the local applied index reaches `index`, a read tagged `context` is linearizable. */
export interface ReadState {
  index: number
  context: Uint8Array
}

/**
 * What the shell must do, in this order:
 * 1. persist `snapshot` (if any), `entries` and `hardState` and sync when `mustSync`;
 * 2. send `messages` (only after step 1: they may depend on the persisted state);
 * 3. apply `committedEntries` to the state machine (and serve `readStates` once applied);
 * 4. call `advance(ready)`.
 */
export interface Ready {
  softState: SoftState | null
  hardState: HardState | null
  entries: Entry[]
  snapshot: Snapshot | null
  committedEntries: Entry[]
  messages: Message[]
  readStates: ReadState[]
  mustSync: boolean
}

/** Errors the core reports to callers of propose(), readIndex(), etc. */
export type RaftErrorKind = 'NotLeader' | 'ProposalDropped' | 'ConfChangeInProgress' | 'Compacted' | 'Unavailable' | 'InvalidConfChange'

export class RaftError extends Error {
  readonly kind: RaftErrorKind
  readonly leaderHint: NodeId | null
  constructor (kind: RaftErrorKind, message: string, leaderHint: NodeId | null = null) {
    super(message)
    this.name = 'RaftError'
    this.kind = kind
    this.leaderHint = leaderHint
  }
}
