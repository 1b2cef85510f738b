// Named bounds on the work a peer can make us do. Everything read from the network is checked
// against these before use; every queue and timeout in node/net/ takes its default from here.

const KiB = 1024
const MiB = 1024 * KiB

/** Largest Raft frame (one batch of messages). A snapshot travels in one MsgSnap, so this also
 * bounds the snapshot size until snapshots are chunked. */
export const MAX_RAFT_FRAME_BYTES = 16 * MiB
/** Largest RPC request or response frame. */
export const MAX_RPC_FRAME_BYTES = 1 * MiB
/** Largest gossip load report (they are ~150 bytes). */
export const MAX_LOAD_REPORT_BYTES = 1 * KiB

/** Raft messages per outbound frame, and the soft byte size at which a batch is cut. */
export const MAX_RAFT_BATCH_MSGS = 256
export const MAX_RAFT_BATCH_BYTES = 1 * MiB
/** Per-peer outbound queue (messages). Raft tolerates loss: past this the oldest are dropped. */
export const RAFT_QUEUE_MAX_MSGS = 4096
/** Raft message field bounds checked on arrival. */
export const MAX_ENTRIES_PER_MSG = 10_000
export const MAX_ENTRY_BYTES = 4 * MiB
export const MAX_CONTEXT_BYTES = 1 * KiB
export const MAX_SNAPSHOT_BYTES = MAX_RAFT_FRAME_BYTES - 64 * KiB
export const MAX_CONF_MEMBERS = 1024
/** Node ids are libp2p peer ids (52 chars for Ed25519 in base58); leave room, no more. */
export const MAX_NODE_ID_LENGTH = 128

/** Reconnection backoff of the Raft transport: doubles from MIN to MAX, jittered. */
export const RAFT_RECONNECT_MIN_MS = 50
export const RAFT_RECONNECT_MAX_MS = 2000
/** A peer that does not drain a frame we wrote within this is treated as gone (stream reset). */
export const WRITE_TIMEOUT_MS = 10_000
/** Opening a stream (dial included) gives up after this. */
export const DIAL_TIMEOUT_MS = 5000

/** A frame that has started arriving must be complete within this, else the stream is reset: a
 * peer that sends part of a frame and stalls would otherwise pin its bytes forever. The largest
 * frame (16 MiB) takes well under a second on any LAN; 15 s leaves room for a loaded node. */
export const FRAME_READ_TIMEOUT_MS = 15_000
/** Bytes of incomplete frames held by all streams of this process together. A stream whose partial
 * frame would cross it is reset: many peers sending partial maximum-size frames cannot grow the
 * heap past this (the per-stream bound is the protocol's frame size). */
export const MAX_PARTIAL_FRAME_BYTES_TOTAL = 64 * MiB

/** Connection manager (libp2p 3 names). A TCP socket that never finishes the pnet+noise+yamux
 * upgrade is dropped after INBOUND_UPGRADE_TIMEOUT_MS (libp2p's default 10 s let a dozen idle
 * sockets block keyed peers for 10 s at a time); the upgrade takes a few ms on a LAN. */
export const INBOUND_UPGRADE_TIMEOUT_MS = 2000
/** Upgrades in progress at once (libp2p default 10): room for a dozen idle sockets plus keyed peers. */
export const MAX_INCOMING_PENDING_CONNECTIONS = 64
/** New inbound connections per second from one IP address before further ones are refused. */
export const INBOUND_CONNECTIONS_PER_IP_PER_S = 8
/** Open connections in total; a cluster of tens of nodes and a few CLIs needs far fewer. */
export const MAX_CONNECTIONS = 256
/** Outbound dials in parallel. */
export const MAX_PARALLEL_DIALS = 32

/** RPC client defaults. */
export const RPC_TIMEOUT_MS = 10_000
export const RPC_MAX_IN_FLIGHT = 64
/** RPC server: concurrent requests handled per stream; past it the server stops reading. */
export const RPC_SERVER_MAX_CONCURRENT = 64
/** Cluster members forward their own clients' writes over one stream to the leader: room for many
 * clients at once (a member is trusted: it holds the key and sits in the Raft configuration). */
export const RPC_MEMBER_MAX_CONCURRENT = 1024
/** Forwarded writes per internal.proposeMany call, and their encoded bytes (under the frame limit) */
export const MAX_FORWARD_BATCH = 256
export const MAX_FORWARD_BATCH_BYTES = 512 * 1024
/** RPC requests in flight on all the streams of one connection (a member's connection: its
 * maxConcurrentFor bound). Without it a peer multiplies the per-stream bound by its 32 streams:
 * 16 streams x 64 vm.list answers of 0.9 MiB were ~920 MiB built at once (measured before this
 * cap). 32 covers bench:raft's 32 clients a connection, one write each in flight. */
export const RPC_MAX_IN_FLIGHT_PER_CONNECTION = 32
/** RPC requests in flight in this process, all peers together. */
export const RPC_MAX_IN_FLIGHT_TOTAL = 4096
/** RPC streams open in this process (libp2p bounds them per connection; this bounds the sum). */
/** RPC streams one connection may hold open on a server (libp2p resets the ones past it). */
export const RPC_SERVER_STREAMS_PER_CONNECTION = 32
export const RPC_MAX_STREAMS_TOTAL = 1024
/** Encoded answers queued for one connection (waiting for its peer to read). An answer that would
 * cross it while others wait is refused with Unavailable instead of held, and the connection's
 * streams stop reading requests until it drains. Four maximal answers. */
export const RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION = 4 * MiB
/** The same for all connections together: what peers that do not read can make this node hold. */
export const RPC_QUEUED_ANSWER_BYTES_TOTAL = 32 * MiB
/** Answers up to this size are never refused for queued bytes (status, write results): they stay
 * bounded by the in-flight caps, and refusing them would starve the admin behind a big reader. */
export const RPC_SMALL_ANSWER_BYTES = 16 * KiB
/** Changes a server-side watch (vm.watch, cluster.events) holds for a reader that has not taken
 * them yet (its answers wait for the peer to read). Past it the watch ends with TooLarge: the
 * reader restarts it and gets the current state. A watch counts against its connection's
 * RPC_MAX_IN_FLIGHT_PER_CONNECTION, so one connection holds at most 32 x 256 changes. */
export const WATCH_MAX_QUEUED_CHANGES = 256
/** Open `watch` subscriptions per RPC stream. */
export const RPC_MAX_WATCHES_PER_STREAM = 16
/** Raw bytes a libp2p stream may hold unread. Yamux lets a sender fill up to its 16 MiB window
 * after we pause, and the stream is aborted past this, so it must exceed that window. */
export const STREAM_READ_BUFFER_BYTES = 17 * MiB
/** Decoded frames buffered on a read side before the stream is paused. */
export const MAX_FRAMES_BUFFERED = 64
/** ... and their encoded bytes: 64 maximal RPC requests would otherwise be 64 MiB a stream. One
 * frame is always taken, so a maximal Raft frame (16 MiB) still passes. */
export const MAX_FRAME_BYTES_BUFFERED = 4 * MiB

/** Load gossip: publish period and the age after which a report counts as stale. */
export const LOAD_INTERVAL_MS = 1000
export const LOAD_STALE_MS = 5000
/** Reports further than this ahead of the receiver's clock are rejected as bogus. */
export const LOAD_MAX_FUTURE_SKEW_MS = 60_000

/** Serial console input: bytes per vm.consoleInput call (a paste is sent in pieces of this size). */
export const MAX_CONSOLE_INPUT_BYTES = 4 * KiB

/** Console history a live migration's target takes over from its source at the switchover (the
 * last this many bytes of what the guest printed before the move): `vm logs` of a moved VM then
 * reads as if it had never moved, and a console that printed gigabytes costs a move no more. */
export const MAX_CONSOLE_HISTORY_BYTES = 1 * MiB
/** Console text per streamed answer (vm.logs, internal.consoleHistory), in UTF-16 code units: at
 * most 3 UTF-8 bytes each, so a piece stays under MAX_RPC_FRAME_BYTES with room for the envelope. */
export const CONSOLE_PIECE_UNITS = 256 * KiB
