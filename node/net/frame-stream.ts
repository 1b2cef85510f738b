// Moves protocols/framing.ts frames over libp2p 3 streams. Reading is event-driven with a bounded
// queue of decoded frames: when the consumer falls behind, the stream is paused (yamux then stops
// the sender), so a fast peer cannot grow our memory. Bad bytes reset the stream with a WireError.
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { FrameDecoder, decodePayload, encodeFrame } from '../../protocols/framing.ts'
import { MAX_FRAMES_BUFFERED } from '../../protocols/limits.ts'

export interface ReadFramesOptions {
  maxFrameBytes: number
  /** decoded frames held before the stream is paused (default MAX_FRAMES_BUFFERED) */
  maxBuffered?: number
}

/**
 * Yields each decoded frame (the CBOR value, unvalidated) until the remote closes its write
 * side. Throws the WireError that reset the stream, or the stream's own error.
 */
export async function * readFrames (stream: Stream, opts: ReadFramesOptions): AsyncGenerator<unknown, void, undefined> {
  const decoder = new FrameDecoder(opts.maxFrameBytes)
  const maxBuffered = opts.maxBuffered ?? MAX_FRAMES_BUFFERED
  const queue: unknown[] = []
  let error: Error | null = null
  let ended = false
  let remoteClosed = false
  let wake: (() => void) | null = null
  const notify = (): void => { const w = wake; wake = null; w?.() }

  const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (error != null) return
    try {
      const chunks = evt.data instanceof Uint8Array ? [evt.data] : [...evt.data]
      for (const c of chunks) for (const f of decoder.push(c)) queue.push(decodePayload(f))
      if (queue.length >= maxBuffered && stream.readStatus === 'readable') stream.pause()
    } catch (err) {
      error = err as Error
      stream.abort(error)
    }
    if (remoteClosed && stream.readBufferLength === 0) ended = true
    notify()
  }
  const onClose = (evt: Event): void => {
    const e = (evt as Event & { error?: Error }).error
    if (e != null && error == null) error = e
    ended = true
    notify()
  }
  // buffered bytes may still be dispatched after the remote half-closes: end once they are read
  const onRemoteCloseWrite = (): void => {
    remoteClosed = true
    if (stream.readBufferLength === 0) ended = true
    notify()
  }
  stream.addEventListener('message', onMessage)
  stream.addEventListener('close', onClose)
  stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite)
  try {
    if (stream.status !== 'open') ended = true
    else if (stream.remoteWriteStatus === 'closed') onRemoteCloseWrite()
    for (;;) {
      if (queue.length > 0) {
        const v = queue.shift()
        if (stream.readStatus === 'paused' && queue.length <= maxBuffered / 2) stream.resume()
        yield v
        continue
      }
      if (error != null) throw error
      if (ended) {
        if (decoder.buffered() > 0) throw new Error('stream ended inside a frame')
        return
      }
      await new Promise<void>(resolve => { wake = resolve })
    }
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('close', onClose)
    stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite)
  }
}

/** Sends one frame; when the stream's buffer is full, waits for it to drain (backpressure), at
 * most `drainTimeoutMs` when given (then rejects with the abort reason, a TimeoutError). */
export async function writeFrame (stream: Stream, value: unknown, maxFrameBytes: number, drainTimeoutMs?: number): Promise<void> {
  const frame = encodeFrame(value, maxFrameBytes)
  if (!stream.send(frame)) {
    await stream.onDrain(drainTimeoutMs == null ? undefined : { signal: AbortSignal.timeout(drainTimeoutMs) })
  }
}
