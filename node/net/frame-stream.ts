// Moves protocols/framing.ts frames over libp2p 3 streams. Reading is event-driven with a bounded
// queue of decoded frames (an it-pushable): when the consumer falls behind, the stream is paused (yamux then stops
// the sender), so a fast peer cannot grow our memory. Bad bytes reset the stream with a
// BlixardError of a wire kind (BadMessage, TooLarge).
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { pushable } from 'it-pushable'
import { FrameDecoder, decodePayload, encodeFrame } from '../../protocols/framing.ts'
import { MAX_FRAMES_BUFFERED, MAX_FRAME_BYTES_BUFFERED, FRAME_READ_TIMEOUT_MS, MAX_PARTIAL_FRAME_BYTES_TOTAL } from '../../protocols/limits.ts'

export interface ReadFramesOptions {
  maxFrameBytes: number
  /** decoded frames held before the stream is paused (default MAX_FRAMES_BUFFERED) */
  maxBuffered?: number
  /** their encoded bytes held before the stream is paused (default MAX_FRAME_BYTES_BUFFERED) */
  maxBufferedBytes?: number
  /** a started frame must complete within this (ms), else the stream is reset (default FRAME_READ_TIMEOUT_MS) */
  frameTimeoutMs?: number
}

/** Bytes of incomplete frames held by every readFrames of this process (MAX_PARTIAL_FRAME_BYTES_TOTAL). */
let partialBytesTotal = 0
export function partialFrameBytes (): number { return partialBytesTotal }

/**
 * Yields each decoded frame (the CBOR value, unvalidated) until the remote closes its write
 * side. Throws the wire error (isWireError) that reset the stream, or the stream's own error.
 */
export async function * readFrames (stream: Stream, opts: ReadFramesOptions): AsyncGenerator<unknown, void, undefined> {
  const decoder = new FrameDecoder(opts.maxFrameBytes)
  const maxBuffered = opts.maxBuffered ?? MAX_FRAMES_BUFFERED
  const maxBufferedBytes = opts.maxBufferedBytes ?? MAX_FRAME_BYTES_BUFFERED
  // decoded frames not yet taken by the consumer; ending it with an error drops what it holds, so
  // a failed stream (reset by either side, bad bytes) yields nothing more: frames still queued
  // would have nobody to answer, and a peer that left would still cost their work
  const frames = pushable<{ value: unknown, bytes: number }>({ objectMode: true })
  let queuedBytes = 0
  const full = (): boolean => frames.readableLength >= maxBuffered || queuedBytes >= maxBufferedBytes
  let error: Error | null = null
  let remoteClosed = false
  const frameTimeoutMs = opts.frameTimeoutMs ?? FRAME_READ_TIMEOUT_MS
  let partialTimer: ReturnType<typeof setTimeout> | null = null
  let held = 0 // this stream's share of partialBytesTotal
  const fail = (err: Error): void => {
    if (error != null) return
    error = err
    stream.abort(err)
    frames.end(err)
  }
  // keeps the global count and the stall timer in step with the decoder's partial frame
  const account = (): void => {
    const now = error != null ? 0 : decoder.buffered()
    partialBytesTotal += now - held
    held = now
    if (now === 0 && partialTimer != null) { clearTimeout(partialTimer); partialTimer = null }
    if (now > 0 && partialTimer == null) {
      const onStall = (): void => {
        // paused by us (our consumer is behind): the peer cannot complete the frame, not its fault
        if (stream.readStatus === 'paused') { partialTimer = setTimeout(onStall, frameTimeoutMs); return }
        partialTimer = null
        fail(new Error(`frame not completed within ${frameTimeoutMs} ms: stream reset`))
        account()
      }
      partialTimer = setTimeout(onStall, frameTimeoutMs)
    }
  }

  const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (error != null) return
    try {
      const chunks = evt.data instanceof Uint8Array ? [evt.data] : [...evt.data]
      for (const c of chunks) {
        for (const f of decoder.push(c)) { frames.push({ value: decodePayload(f), bytes: f.byteLength }); queuedBytes += f.byteLength }
      }
      if (full() && stream.readStatus === 'readable') stream.pause()
      if (partialBytesTotal - held + decoder.buffered() > MAX_PARTIAL_FRAME_BYTES_TOTAL) {
        throw new Error(`incomplete frames of all streams exceed ${MAX_PARTIAL_FRAME_BYTES_TOTAL} bytes: stream reset`)
      }
    } catch (err) {
      fail(err as Error)
    }
    account()
    if (remoteClosed && stream.readBufferLength === 0) frames.end()
  }
  const onClose = (evt: Event): void => {
    const e = (evt as Event & { error?: Error }).error
    if (e != null) fail(e)
    else frames.end()
  }
  // buffered bytes may still be dispatched after the remote half-closes: end once they are read
  const onRemoteCloseWrite = (): void => {
    remoteClosed = true
    if (stream.readBufferLength === 0) frames.end()
  }
  stream.addEventListener('message', onMessage)
  stream.addEventListener('close', onClose)
  stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite)
  try {
    if (stream.status !== 'open') frames.end()
    else if (stream.remoteWriteStatus === 'closed') onRemoteCloseWrite()
    for await (const f of frames) {
      // an error after the queue had ended (a reset once the remote closed its side) still wins
      if (error != null) throw error
      queuedBytes -= f.bytes
      if (stream.readStatus === 'paused' && frames.readableLength <= maxBuffered / 2 && queuedBytes <= maxBufferedBytes / 2) stream.resume()
      yield f.value
    }
    if (error != null) throw error
    if (decoder.buffered() > 0) throw new Error('stream ended inside a frame')
  } finally {
    if (partialTimer != null) clearTimeout(partialTimer)
    partialBytesTotal -= held
    held = 0
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('close', onClose)
    stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite)
  }
}

/** Sends one frame and returns once the stream has handed all of it to the muxer (yamux's window
 * had room). When a write finds the window exhausted, it waits for the peer to read (its window
 * update empties the write buffer), at most `drainTimeoutMs` when given; then the stream is aborted
 * and the TimeoutError thrown.
 *
 * Why not `stream.send()` + `stream.onDrain()`: libp2p 3 creates the drain promise once per stream
 * and never renews it, so after the first drain `onDrain()` resolves at once, and `send()` appends
 * to an unbounded write buffer — a writer to a peer that paused its reading grew our heap by every
 * frame it wrote (test/net/backpressure.test.ts: 98 MiB in 1.5 s). Here the write buffer itself is
 * the credit: a writer waits (before and after) until it is empty, so concurrent writers on one
 * stream hold at most one frame beyond yamux's window between them. */
export async function writeFrame (stream: Stream, value: unknown, maxFrameBytes: number, drainTimeoutMs?: number): Promise<void> {
  await writeFrameBytes(stream, encodeFrame(value, maxFrameBytes), drainTimeoutMs)
}

/** writeFrame for a frame already encoded (encodeFrame), when the caller needs its size first. */
export async function writeFrameBytes (stream: Stream, frame: Uint8Array, drainTimeoutMs?: number): Promise<void> {
  const deadline = drainTimeoutMs == null ? null : Date.now() + drainTimeoutMs
  // the check and the send must run in one synchronous step: writers woken by the same 'idle'
  // would otherwise all see an empty buffer and all append (a helper function's return adds ticks)
  while (stream.writeBufferLength > 0) await writeBufferProgress(stream, deadline, drainTimeoutMs, 'idle')
  // false with an empty write buffer: yamux took the frame but the connection below is saturated
  // (or closing); wait for it to drain, so that a dying connection fails this write, not a later one
  if (!stream.send(frame) && stream.writeBufferLength === 0) await writeBufferProgress(stream, deadline, drainTimeoutMs, 'drain')
  while (stream.writeBufferLength > 0) await writeBufferProgress(stream, deadline, drainTimeoutMs, 'idle')
  if (stream.status !== 'open') throw new Error(`stream ${stream.status} before the frame was sent`)
}

/** Waits once for `event` (the write buffer empty: 'idle'; the connection drained: 'drain'), the stream to close, or the deadline (then
 * the stream is aborted and a TimeoutError thrown). */
async function writeBufferProgress (stream: Stream, deadline: number | null, timeoutMs: number | undefined, event: 'idle' | 'drain'): Promise<void> {
  if (stream.status !== 'open') throw new Error(`stream ${stream.status} with ${stream.writeBufferLength} bytes unsent`)
  const left = deadline == null ? null : deadline - Date.now()
  if (left != null && left <= 0) {
    const err = new Error(`peer did not read ${stream.writeBufferLength} queued bytes within ${timeoutMs ?? 0} ms: stream reset`)
    err.name = 'TimeoutError'
    stream.abort(err)
    throw err
  }
  await new Promise<void>((resolve) => {
    const done = (): void => {
      if (timer != null) clearTimeout(timer)
      stream.removeEventListener(event, done)
      stream.removeEventListener('close', done)
      resolve()
    }
    const timer = left == null ? null : setTimeout(done, left)
    stream.addEventListener(event, done)
    stream.addEventListener('close', done)
  })
}
