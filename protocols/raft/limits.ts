// Defaults that bound the core's work per message and per Ready, kept together.

/** Bytes of entry payload per MsgApp when RaftConfig.maxSizePerMsg is not set. */
export const DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024
/** MsgApps in flight per follower in the replicate state when maxInflightMsgs is not set. */
export const DEFAULT_MAX_INFLIGHT_MSGS = 256
/** Bytes of committed entries handed out in one Ready (always at least one entry). */
export const MAX_COMMITTED_BYTES_PER_READY = 8 * 1024 * 1024
/** Context of a vote request that a leadership transfer forces (skips pre-vote and leases). */
export const TRANSFER_CONTEXT = 'transfer'
