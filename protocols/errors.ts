// The one error type of the tree: a named kind that travels over RPC unchanged (as a BlixError
// body) and that the CLI turns into a sentence with the next step (node/cli/errors.ts). The state
// machine's rejections, the validators' refusals, a peer's bad bytes and an RPC handler's failure
// are all a BlixardError; only its kind says which.
//
// Other error classes, and why each stays (none crosses the wire as itself: toBlixError turns
// each into a body with a protocol kind, Internal for those that should never reach it):
// - subclasses that add data to a BlixardError: ListTooLarge (protocols/framing.ts), RbdError
//   (storage/ceph-errors.ts: Ceph's errno and stderr);
// - SubsystemError, for a part whose callers tell apart kinds of its own, each mapped to a protocol
//   kind: QemuError, NetError (host networking), MigrationStreamError;
// - RaftError (protocols/raft/types.ts): the pure core's own contract with its storage and callers
//   (Compacted, ProposalDropped, as etcd's raft); the shell turns it into a BlixardError;
// - process exits, never answered over RPC: ConfigError, IdentityError, ClusterKeyError,
//   CorruptStoreError, RecoverError, FailpointSpecError (blixard-node prints the message and exits
//   with its code), LogDurabilityError (the node stops and recovers from its log);
// - the CLI's own: UsageError and CliError (a kind plus the next step to print);
// - InjectedFault (storage/failpoints.ts): tests only; each caller turns it into its own error;
// - SendFailed (node/net/rpc.ts): private, tells "the answer was lost" apart from a handler's error.

/** Named error kinds; the CLI turns each into a sentence. */
export const ERROR_KINDS = [
  'NotLeader', 'NotFound', 'AlreadyExists', 'InvalidSpec', 'InvalidCommand', 'InUse', 'NoCapacity', 'Conflict',
  // ifGeneration did not match: definite, nothing was applied; read again and retry
  'GenerationMismatch',
  // a command with this idempotency key is still being processed: retry later with the same key
  'InFlight',
  // the command may or may not have applied (an attempt was proposed, its outcome is unknown):
  // retry with the same idempotency key, which applies it at most once
  'Indeterminate',
  'Unauthorized', 'Unavailable', 'Timeout', 'TooLarge',
  // a project's quota would be exceeded (storage/apply-quotas.ts): definite, nothing was applied
  'QuotaExceeded',
  // bytes from a peer that do not decode or do not have the expected shape
  'BadMessage',
  'Internal',
  // RPC only: the method does not exist on this node; the params of a method are malformed
  'UnknownMethod', 'InvalidParams'
] as const
export type ErrorKind = typeof ERROR_KINDS[number]

/** An error as data: what an apply result and an RPC answer carry. */
export interface BlixError {
  kind: ErrorKind
  message: string
  /** leader hint with NotLeader */
  leader?: string
  /** with Indeterminate and InFlight: the idempotency key to send the same write again under */
  key?: string
}

/** A peer sent bytes we refuse: the stream carrying them is reset. */
export type WireErrorKind = 'BadMessage' | 'TooLarge'

export class BlixardError extends Error {
  readonly kind: ErrorKind
  readonly leader?: string
  readonly key?: string
  constructor (kind: ErrorKind, message: string, leader?: string, key?: string) {
    super(message)
    this.name = 'BlixardError'
    this.kind = kind
    if (leader != null) this.leader = leader
    if (key != null) this.key = key
  }

  /** The body that travels over RPC and into apply results. */
  toJSON (): BlixError {
    const body: BlixError = { kind: this.kind, message: this.message }
    if (this.leader != null) body.leader = this.leader
    if (this.key != null) body.key = this.key
    return body
  }

  /** From a body that came over RPC or out of apply: an outcome reported by someone else, whose
   * stack here would only show the decoder, so none is captured. */
  static from (b: BlixError): BlixardError { return BlixardError.quiet(b.kind, b.message, b.leader, b.key) }

  /** Without a stack trace: for refusals that are ordinary outcomes on hot paths (a validator
   * failing field by field, a command rejected on apply), where capturing one showed in profiles. */
  static quiet (kind: ErrorKind, message: string, leader?: string, key?: string): BlixardError {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try { return new BlixardError(kind, message, leader, key) } finally { Error.stackTraceLimit = limit }
  }
}

export function isWireError (e: unknown): e is BlixardError & { kind: WireErrorKind } {
  return e instanceof BlixardError && (e.kind === 'BadMessage' || e.kind === 'TooLarge')
}

/** An error of one part of the node (QEMU, host networking) with kinds of its own that its
 * callers tell apart, each answered as the protocol kind `protocolKind` once it reaches the RPC
 * boundary (toBlixError): one error vocabulary on the wire, however many inside. */
export class SubsystemError<K extends string> extends Error {
  readonly kind: K
  readonly protocolKind: ErrorKind
  constructor (kind: K, message: string, protocolKind: ErrorKind) {
    super(message)
    this.kind = kind
    this.protocolKind = protocolKind
  }
}

/** Any thrown value as an error body: named kinds are kept (NotLeader keeps its leader hint,
 * RaftError's `leaderHint` included), a SubsystemError becomes its protocol kind, anything else
 * becomes Internal. */
export function toBlixError (e: unknown): BlixError {
  if (e instanceof BlixardError) return e.toJSON()
  if (e instanceof SubsystemError) return { kind: e.protocolKind, message: e.message }
  const x = e as { kind?: unknown, message?: unknown, leader?: unknown, leaderHint?: unknown } | null
  if (x != null && typeof x === 'object' && typeof x.kind === 'string' && (ERROR_KINDS as readonly string[]).includes(x.kind) && typeof x.message === 'string') {
    const leader = typeof x.leader === 'string' ? x.leader : typeof x.leaderHint === 'string' ? x.leaderHint : undefined
    return leader != null ? { kind: x.kind as ErrorKind, message: x.message, leader } : { kind: x.kind as ErrorKind, message: x.message }
  }
  return { kind: 'Internal', message: e instanceof Error ? e.message : String(e) }
}
