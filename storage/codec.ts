// Our own CBOR for everything we persist. Plain CBOR (no records, no shared structures) so that
// any decoder can read the bytes back, and the same value always encodes to the same bytes.
import { Encoder } from 'cbor-x'

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true })

export function encodeCbor (value: unknown): Uint8Array {
  return cbor.encode(value)
}

export function decodeCbor (bytes: Uint8Array): unknown {
  return cbor.decode(bytes)
}

/** A plain Uint8Array view (not a Buffer) so deep equality and instanceof behave the same everywhere. */
export function plainBytes (b: Uint8Array): Uint8Array {
  return b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}
