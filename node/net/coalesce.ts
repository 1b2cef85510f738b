// Frames a connection's muxer sends within one turn of the event loop leave as one write.
//
// yamux (libp2p 3) hands every frame to the connection below at once: a Raft message, an RPC
// answer, and the 12-byte window update it sends back after every data frame it reads each become
// a Noise message of their own, a pass of the cluster-key cipher and a socket write. On a 3-node
// cluster at one client the leader made ~17 socket writes per Raft write, half of them 30-byte
// window updates (strace, bench:raft, session 12); each write on loopback also wakes the receiver.
//
// Here the muxer's `send` appends to a per-connection list instead, and the list goes down as one
// chunk (one Noise message up to 64 KiB, one cipher pass, one socket write) when the turn ends
// (setImmediate), when it reaches COALESCE_FLUSH_BYTES, when the muxer closes, or when someone
// calls flushCoalesced() — the Raft transport does, right after handing over a Ready's messages,
// so that they are on the wire before the fsync that follows them blocks the loop.
//
// Back-pressure is kept: a flush goes through the muxer's own send, which pauses the streams
// when the connection below is full; while it is, `send` answers false too, until it drains.
import type { MessageStream, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'

/** A list this long is sent at once, without waiting for the turn to end: bulk streams (a
 * migration, a snapshot) gain nothing from waiting, and Noise cuts messages at 64 KiB anyway. */
export const COALESCE_FLUSH_BYTES = 64 * 1024

type Send = (data: Uint8Array | Uint8ArrayList) => boolean
interface Sender { send: Send, close: StreamMuxer['close'], abort: StreamMuxer['abort'], status: StreamMuxer['status'] }

const waiting = new Set<() => void>()
let scheduled = false

function flushAll (): void {
  scheduled = false
  for (const flush of [...waiting]) flush()
}

/** Sends now whatever any connection holds: for a caller about to block the loop (an fsync). */
export function flushCoalesced (): void {
  if (waiting.size > 0) flushAll()
}

/** How many connections hold unsent frames (tests). */
export function coalescedPending (): number { return waiting.size }

function coalesceSends (muxer: StreamMuxer, conn: MessageStream): void {
  const m = muxer as unknown as Sender
  const send = m.send.bind(muxer)
  const close = m.close.bind(muxer)
  const abort = m.abort.bind(muxer)
  let pending: Uint8ArrayList | null = null
  let full = false
  const flush = (): boolean => {
    waiting.delete(flush)
    const data = pending
    pending = null
    if (data == null) return !full
    try {
      const ok = send(data)
      full = !ok
      return ok
    } catch (err) {
      // the connection below closed meanwhile: what was waiting fails with it, as a direct send
      // would have (its streams abort with the error, even when the muxer already counts itself
      // closed and its own abort would do nothing); never thrown out of the turn's flush, where
      // it would kill the process
      for (const stream of [...muxer.streams]) stream.abort(err as Error)
      abort(err as Error)
      return false
    }
  }
  conn.addEventListener('drain', () => { full = false })
  m.send = (data) => {
    if (pending == null) pending = new Uint8ArrayList()
    pending.append(data)
    if (pending.byteLength >= COALESCE_FLUSH_BYTES) return flush()
    if (!waiting.has(flush)) {
      waiting.add(flush)
      if (!scheduled) { scheduled = true; setImmediate(flushAll) }
    }
    return !full
  }
  // a close sends the streams' last frames (FIN) through send: they must leave before the
  // connection below is closed; an abort throws them away, as it does the muxer's own buffers
  m.close = async (options) => {
    try { await close(options) } finally { flush() }
  }
  m.abort = (err) => {
    waiting.delete(flush)
    pending = null
    abort(err)
  }
}

/** Wraps a libp2p stream muxer factory (yamux) so that each muxer it makes coalesces its sends. */
export function coalescing<C> (inner: (components: C) => StreamMuxerFactory): (components: C) => StreamMuxerFactory {
  return (components) => {
    const factory = inner(components)
    return {
      protocol: factory.protocol,
      createStreamMuxer (conn: MessageStream): StreamMuxer {
        const muxer = factory.createStreamMuxer(conn)
        coalesceSends(muxer, conn)
        return muxer
      }
    }
  }
}
