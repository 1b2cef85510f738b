// Copying and fingerprinting a whole model state. The Raft core cannot be
// cloned through its API, so the checker copies the object graph itself:
// every object keeps its prototype (RawNode, Raft, RaftLog, Progress... stay
// what they were), shared references stay shared (raft.log.storage is still
// the replica's own MemoryLogStore in the copy), functions are shared (the
// only one, the injected PRNG, is a constant), and byte arrays and log entries
// are shared (the core stamps a fresh Entry object for every append and never
// writes one afterwards; payloads are never written after they are made).
import { createHash } from 'node:crypto'
import type { Entry } from '../../protocols/raft/types.ts'

/** Deep copy of `root` preserving prototypes and internal sharing. */
export function cloneGraph<T> (root: T): T {
  const memo = new Map<object, unknown>()
  const copy = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v
    const seen = memo.get(v)
    if (seen !== undefined) return seen
    if (ArrayBuffer.isView(v) || isEntry(v)) return v
    if (Array.isArray(v)) {
      const out: unknown[] = new Array(v.length)
      memo.set(v, out)
      for (let i = 0; i < v.length; i++) out[i] = copy(v[i])
      return out
    }
    if (v instanceof Map) {
      const out = new Map<unknown, unknown>()
      memo.set(v, out)
      for (const [k, x] of v) out.set(copy(k), copy(x))
      return out
    }
    if (v instanceof Set) {
      const out = new Set<unknown>()
      memo.set(v, out)
      for (const x of v) out.add(copy(x))
      return out
    }
    const out = Object.create(Object.getPrototypeOf(v) as object | null) as Record<string, unknown>
    memo.set(v, out)
    const src = v as Record<string, unknown>
    for (const k of Object.keys(src)) out[k] = copy(src[k])
    return out
  }
  return copy(root) as T
}

function isEntry (v: object): v is Entry {
  return Object.getPrototypeOf(v) === Object.prototype && (v as Partial<Entry>).data instanceof Uint8Array && typeof (v as Partial<Entry>).index === 'number'
}

/** Keys that are not state: the log's back-reference to its store (the store is encoded where the
 * replica holds it), per-transition scratch, the model's constant configuration, and the store's
 * list of unsynced saves (always the difference between its live and durable copies, which are
 * both encoded). */
const SKIP = new Set(['storage', 'violations', 'cfg', 'unsynced'])

function replacer (this: unknown, key: string, value: unknown): unknown {
  if (SKIP.has(key)) return undefined
  if (value instanceof Uint8Array) return { $u8: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') }
  if (value instanceof Map) return { $map: [...value] }
  if (value instanceof Set) return { $set: [...value] }
  return value
}

function reviver (_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && '$u8' in value) {
    return new Uint8Array(Buffer.from((value as { $u8: string }).$u8, 'base64'))
  }
  return value
}

/** Encodings of entries, which are shared between states (see cloneGraph). */
const entryText = new WeakMap<object, string>()

function bytesText (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')
}

/** Nesting beyond this is a cycle (the model's graphs are a few levels deep). */
const MAX_NESTING = 64

function enc (v: unknown, depth: number): string {
  switch (typeof v) {
    case 'number': return String(v)
    case 'string': return `${v.length}'${v}`
    case 'boolean': return v ? 'T' : 'F'
    case 'undefined': return 'U'
    case 'function': return 'f'
    case 'bigint': case 'symbol': return String(v)
  }
  if (v === null) return 'N'
  if (depth > MAX_NESTING) throw new Error('encodeState: nesting too deep (a cycle in the state graph?)')
  const o = v as object
  if (o instanceof Uint8Array) return `b${bytesText(o)}`
  if (isEntry(o)) {
    let t = entryText.get(o)
    if (t === undefined) {
      t = `E${o.index}/${o.term}/${o.type}/${bytesText(o.data)}`
      entryText.set(o, t)
    }
    return t
  }
  let s: string
  if (Array.isArray(o)) {
    s = '['
    for (const x of o) s += enc(x, depth + 1) + ','
    return s + ']'
  }
  if (o instanceof Map) {
    s = 'M['
    for (const [k, x] of o) s += enc(k, depth + 1) + '=' + enc(x, depth + 1) + ','
    return s + ']'
  }
  if (o instanceof Set) {
    s = 'S['
    for (const x of o) s += enc(x, depth + 1) + ','
    return s + ']'
  }
  s = '{'
  const rec = o as Record<string, unknown>
  for (const k in rec) {
    if (SKIP.has(k)) continue
    s += k + ':' + enc(rec[k], depth + 1) + ','
  }
  return s + '}'
}

/** Canonical text of a state: every own field of every object, maps and sets in insertion order
 * (which the core keeps deterministic), strings length-prefixed so no two values share a text. */
export function encodeState (v: unknown): string {
  return enc(v, 0)
}

/** 160-bit fingerprint of an encoded state: collisions are negligible at any reachable count. */
export function fingerprint (text: string): string {
  return createHash('sha1').update(text).digest('base64')
}

/** A message as a canonical string (the network holds these) and back. */
export function encodeValue (v: unknown): string {
  return JSON.stringify(v, replacer)
}

export function decodeValue<T> (s: string): T {
  return JSON.parse(s, reviver) as T
}
