// Stream framing: each frame is an unsigned LEB128 varint length followed by that many bytes of
// CBOR. Pure (no streams here): node/net/frame-stream.ts moves these bytes over libp2p streams.
// Any bytes a peer sends either decode to frames or raise a BlixardError of a wire kind (BadMessage, TooLarge); nothing else escapes.
import { Encoder } from 'cbor-x'
import { BlixardError, type WireErrorKind } from './errors.ts'

// Plain CBOR: no shared structures/records (any CBOR decoder can read our frames), and
// Uint8Array as a plain byte string rather than cbor-x's typed-array tag.
const cbor = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: true })

/** Longest varint we accept: 5 bytes cover 2^35, far above any frame limit. */
const MAX_VARINT_BYTES = 5

export function encodeVarint (n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint out of range: ${n}`)
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80)
    n = Math.floor(n / 0x80)
  }
  out.push(n)
  return Uint8Array.from(out)
}

/** CBOR bytes of a value (no length prefix). */
export function encodePayload (value: unknown): Uint8Array {
  return cbor.encode(value)
}

/** CBOR-decode one payload; anything malformed (including trailing bytes) is a BadMessage. */
export function decodePayload (bytes: Uint8Array): unknown {
  try {
    return cbor.decode(bytes)
  } catch (err) {
    throw new BlixardError('BadMessage', `undecodable CBOR: ${(err as Error)?.message ?? String(err)}`)
  }
}

/** One length-prefixed frame holding `value`; TooLarge when it would exceed `maxBytes`. */
export function encodeFrame (value: unknown, maxBytes: number): Uint8Array {
  const payload = encodePayload(value)
  if (payload.byteLength > maxBytes) {
    throw new BlixardError('TooLarge', `frame of ${payload.byteLength} bytes exceeds ${maxBytes}`)
  }
  const prefix = encodeVarint(payload.byteLength)
  const frame = new Uint8Array(prefix.byteLength + payload.byteLength)
  frame.set(prefix, 0)
  frame.set(payload, prefix.byteLength)
  return frame
}

/**
 * Incremental frame splitter: push() chunks as they arrive and get back the complete payloads.
 * A declared length above `maxFrameBytes` is rejected as soon as the prefix is read, before
 * the body is buffered, so a peer cannot make us hold more than one maximal frame.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private size = 0
  private need: number | null = null // body length of the frame being read, once known
  private failed: (BlixardError & { kind: WireErrorKind }) | null = null

  constructor (readonly maxFrameBytes: number) {}

  /** Bytes buffered but not yet returned as a frame. */
  buffered (): number { return this.size }

  push (chunk: Uint8Array): Uint8Array[] {
    if (this.failed != null) throw this.failed
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk)
      this.size += chunk.byteLength
    }
    const out: Uint8Array[] = []
    try {
      for (;;) {
        if (this.need == null) {
          const n = this.readPrefix()
          if (n == null) break
          this.need = n
        }
        if (this.size < this.need) break
        out.push(this.take(this.need))
        this.need = null
      }
    } catch (err) {
      this.failed = err as BlixardError & { kind: WireErrorKind }
      throw err
    }
    return out
  }

  /** Reads and consumes a varint prefix when complete; null when more bytes are needed. */
  private readPrefix (): number | null {
    let value = 0
    let scale = 1
    let i = 0
    for (const c of this.chunks) {
      for (let j = 0; j < c.byteLength; j++) {
        const b = c[j]
        value += (b & 0x7f) * scale
        i++
        if ((b & 0x80) === 0) {
          if (i > 1 && b === 0) throw new BlixardError('BadMessage', 'non-minimal varint length prefix')
          if (value > this.maxFrameBytes) {
            throw new BlixardError('TooLarge', `frame of ${value} bytes exceeds ${this.maxFrameBytes}`)
          }
          this.take(i)
          return value
        }
        if (i >= MAX_VARINT_BYTES) throw new BlixardError('BadMessage', 'varint length prefix too long')
        scale *= 0x80
      }
    }
    return null
  }

  private take (n: number): Uint8Array {
    const first = this.chunks[0]
    if (first != null && first.byteLength >= n) { // the common case: no copy, a view of the chunk
      this.chunks[0] = first.subarray(n)
      if (this.chunks[0].byteLength === 0) this.chunks.shift()
      this.size -= n
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const c = this.chunks[0]
      const k = Math.min(c.byteLength, n - off)
      out.set(c.subarray(0, k), off)
      off += k
      if (k === c.byteLength) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.size -= n
    return out
  }
}

/** Most bytes a CBOR array header takes (major type 4 with a 4-byte length: 0x9a + uint32). */
const MAX_ARRAY_HEADER_BYTES = 5

function arrayHeader (n: number): Uint8Array {
  if (n < 24) return Uint8Array.of(0x80 | n)
  if (n < 0x100) return Uint8Array.of(0x98, n)
  if (n < 0x10000) return Uint8Array.of(0x99, n >> 8, n & 0xff)
  return Uint8Array.of(0x9a, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff)
}

/** Why a list answer was cut short: how far it got before its bytes passed the frame's room. */
export class ListTooLarge extends BlixardError {
  constructor (readonly items: number, readonly bytes: number, readonly maxBytes: number, what: string) {
    super('TooLarge', `${what}: the answer passed ${maxBytes} bytes after ${items} items (${bytes} bytes so far) and was not built further`)
  }
}

/**
 * One frame holding `envelope` with `items` as the value of its last key, `listKey` (which the
 * envelope must hold as null, in last place), encoded item by item as they are drawn: once the
 * encoded items would take the frame past `maxBytes`, the rest are not drawn and ListTooLarge is
 * thrown. A lazy `items` (a generator over a table) is therefore never held whole, neither as
 * values nor as bytes. The bytes equal encodeFrame({ ...envelope, [listKey]: [...items] }).
 */
export function encodeListFrame (envelope: Record<string, unknown>, listKey: string, items: Iterable<unknown>, maxBytes: number, what: string): Uint8Array {
  const keys = Object.keys(envelope)
  if (keys[keys.length - 1] !== listKey || envelope[listKey] !== null) throw new Error(`encodeListFrame: '${listKey}' must be the envelope's last key, held as null`)
  const shell = encodePayload(envelope)
  if (shell[shell.byteLength - 1] !== 0xf6) throw new Error('encodeListFrame: the envelope did not end with CBOR null')
  const head = shell.subarray(0, shell.byteLength - 1)
  const room = maxBytes - head.byteLength - MAX_ARRAY_HEADER_BYTES
  const parts: Uint8Array[] = []
  let bytes = 0
  for (const item of items) {
    const b = encodePayload(item)
    if (bytes + b.byteLength > room) throw new ListTooLarge(parts.length, bytes, maxBytes, what)
    parts.push(b)
    bytes += b.byteLength
  }
  const header = arrayHeader(parts.length)
  const payloadLength = head.byteLength + header.byteLength + bytes
  const prefix = encodeVarint(payloadLength)
  const frame = new Uint8Array(prefix.byteLength + payloadLength)
  let off = 0
  for (const p of [prefix, head, header, ...parts]) { frame.set(p, off); off += p.byteLength }
  return frame
}
