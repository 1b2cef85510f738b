// What a node's CPU per committed write comes to, from what the scale model counts: frames (one
// socket write each: the transport sends one frame per peer per Ready, and coalesces a turn's
// frames on a connection into one Noise message, node/net/coalesce.ts) and bytes, sent and received.
//
//   cpu(node) = fixed(role) + msgMs * (frames sent + frames received) + byteMs * (bytes sent + received)
//
// Calibration (the lead's bench:raft --cost-model figures, 3 nodes, 256 clients on the leader):
// - msgMs 0.030: coalescing cut the leader's socket writes per write from 3.42 to 0.74 and its main
//   thread from 0.42 to 0.34 ms/write: 0.08 ms for 2.68 frames (mostly 30-byte window updates, so
//   this is the per-frame part: Noise call, pnet pass, yamux framing, the syscall). A frame received
//   is taken to cost the same (decrypt, decode, validate, step): an assumption, not a measurement.
// - byteMs 5e-6 (5 ns a byte): pnet's XSalsa20 measured 892 MB/s (bench:cipher, ~1.1 ns/B); Noise's
//   ChaCha20-Poly1305, CBOR and the copies are put at ~4 ns/B more: not measured here.
// - fixed(role) is what the measured per-write figure leaves once the model prices its own frames
//   and bytes at the calibration point (topology leader-fed, 3 hosts): the leader's 0.34 ms/write
//   (main thread) and a follower's 0.23. It holds RPC decode/encode, signature checks, the Raft
//   step, log append and apply: work that does not grow with the number of peers. A learner
//   persists and applies every entry as a follower does, so it gets the follower's fixed part;
//   a host without a replica (read-through) keeps no log and gets none.
// All of it is main-thread time, the resource that bounds a Blixard node's write rate today.

export interface CostParams {
  /** CPU per frame sent or received, ms */
  msgMs: number
  /** CPU per byte sent or received, ms */
  byteMs: number
  /** measured main-thread CPU per write at the calibration point, ms */
  leaderMsPerWrite: number
  followerMsPerWrite: number
}

export const DEFAULT_COST: CostParams = {
  msgMs: 0.030,
  byteMs: 5e-6,
  leaderMsPerWrite: 0.34,
  followerMsPerWrite: 0.23
}

/** Per committed write, what one node sent and received. */
export interface Traffic {
  framesSent: number
  framesRecv: number
  bytesSent: number
  bytesRecv: number
}

export type CostRole = 'leader' | 'follower' | 'learner' | 'host'

/** The fixed parts, from the calibration run's per-write traffic of its leader and a follower. */
export interface Calibration {
  leaderFixedMs: number
  followerFixedMs: number
}

export function variableMs (t: Traffic, p: CostParams): number {
  return p.msgMs * (t.framesSent + t.framesRecv) + p.byteMs * (t.bytesSent + t.bytesRecv)
}

/** Fixed parts such that the calibration run's leader and follower cost what was measured. A
 * negative remainder means the model prices more traffic than the measurement holds: refused. */
export function calibrate (leader: Traffic, follower: Traffic, p: CostParams = DEFAULT_COST): Calibration {
  const leaderFixedMs = p.leaderMsPerWrite - variableMs(leader, p)
  const followerFixedMs = p.followerMsPerWrite - variableMs(follower, p)
  if (leaderFixedMs < 0 || followerFixedMs < 0) {
    throw new RangeError(`cost calibration: the model's traffic alone exceeds the measured CPU (leader fixed ${leaderFixedMs.toFixed(3)}, follower fixed ${followerFixedMs.toFixed(3)} ms)`)
  }
  return { leaderFixedMs, followerFixedMs }
}

export function cpuMsPerWrite (role: CostRole, t: Traffic, c: Calibration, p: CostParams = DEFAULT_COST): number {
  const fixed = role === 'leader' ? c.leaderFixedMs : role === 'host' ? 0 : c.followerFixedMs
  return fixed + variableMs(t, p)
}
