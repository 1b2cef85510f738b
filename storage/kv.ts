// The small synchronous, transactional key-value store the state machine is written against,
// so the same apply code runs on LMDB (node) and in memory (simulator).
// Keys are strings, ordered by Unicode code point (= UTF-8 byte order, LMDB's order).
// Values are anything cbor-x encodes; both implementations store the encoded bytes, so a value read
// back is always a fresh copy and never aliases what was put.

export const TABLES = [
  'nodes', 'vms', 'vmNames', 'vmsByNode', 'volumes', 'networks', 'admins', 'idempotency', 'idempotencyByIndex', 'meta',
  // used signature nonces (protocols/auth.ts), keyed by the index they expire after
  // ('nonces' is no longer written: it keeps the rows of stores written before, until they expire)
  'nonces', 'noncesByUntil',
  // cluster settings (the join policy) and the peer ids an admin approved to join
  'settings', 'approvals',
  // admin recovery votes: `${peerId}/${voter}` (storage/apply-admins.ts)
  'recoveryVotes',
  // VM memory snapshots: `${vmId}/${name}` (storage/apply-snapshots.ts)
  'vmSnapshots',
  // VMs still releasing a node they were taken off, by that node: `${node} ${vmId}` → vmId
  // (storage/apply-vms.ts withRelease), so a node's agent finds its releases without a full scan
  'vmsReleasing'
] as const
export type Table = typeof TABLES[number]

export interface RangeOptions {
  /** inclusive */
  start?: string
  /** exclusive */
  end?: string
  limit?: number
}

export interface KvTx {
  /** The caller names the type it stored; the store does not check it. */
  get<T>(table: Table, key: string): T | undefined
  /** Whether a key is present, without decoding its value (the authority checks ask this of every
   * command: is the signer an admin, a node, has its nonce been used). */
  has (table: Table, key: string): boolean
  put (table: Table, key: string, value: unknown): void
  delete (table: Table, key: string): void
  /** Entries in key order. */
  range<T>(table: Table, opts?: RangeOptions): Array<[string, T]>
  /** The stored encoded bytes, in key order (for hashing and snapshots). */
  rawRange (table: Table): Array<[string, Uint8Array]>
  /** Replace a table's contents with already-encoded values (snapshot restore). */
  putRaw (table: Table, key: string, bytes: Uint8Array): void
  clear (table: Table): void
}

export interface Kv extends KvTx {
  /** Run fn atomically: if it throws, nothing it wrote stays and the error propagates.
   * Calls made outside transaction() are each their own transaction. Nested calls join the outer one. */
  transaction<R>(fn: (tx: KvTx) => R): R
  /** Make every committed transaction durable (a no-op where nothing is on disk). */
  flush (): void
  close (): void
}

/** Code point order, which is UTF-8 byte order (what LMDB sorts by). */
export function compareKeys (a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // Surrogates (0xD800-0xDFFF) encode code points above 0xFFFF: they sort after 0xE000-0xFFFF.
    const xs = x >= 0xd800 && x <= 0xdfff
    const ys = y >= 0xd800 && y <= 0xdfff
    if (xs !== ys) return xs ? 1 : -1
    return x - y
  }
  return a.length - b.length
}
