// A savepoint for one command inside a larger transaction: writes are held here (encoded, so a
// value read back is a copy, as from the store) and reads see them over the base transaction.
// commit() hands the writes to the base; dropping the overlay discards them. This is what lets
// the state machine apply a whole batch of committed entries in one LMDB transaction and still
// roll back a single rejected command exactly (LMDB's nested transactions are not available
// to synchronous lmdb-js transactions).
import type { KvTx, RangeOptions, Table } from './kv.ts'
import { compareKeys } from './kv.ts'
import { decodeCbor, encodeCbor } from './codec.ts'

/** bytes, or null for a deletion */
type Write = Uint8Array | null

export class OverlayTx implements KvTx {
  private readonly writes = new Map<Table, Map<string, Write>>()
  private readonly cleared = new Set<Table>()

  constructor (private readonly base: KvTx) {}

  private table (t: Table): Map<string, Write> {
    let m = this.writes.get(t)
    if (m === undefined) { m = new Map(); this.writes.set(t, m) }
    return m
  }

  get<T>(table: Table, key: string): T | undefined {
    const w = this.writes.get(table)?.get(key)
    if (w !== undefined) return w === null ? undefined : decodeCbor(w) as T
    if (this.cleared.has(table)) return undefined
    return this.base.get<T>(table, key)
  }

  has (table: Table, key: string): boolean {
    const w = this.writes.get(table)?.get(key)
    if (w !== undefined) return w !== null
    if (this.cleared.has(table)) return false
    return this.base.has(table, key)
  }

  put (table: Table, key: string, value: unknown): void {
    this.table(table).set(key, encodeCbor(value))
  }

  putRaw (table: Table, key: string, bytes: Uint8Array): void {
    this.table(table).set(key, new Uint8Array(bytes))
  }

  delete (table: Table, key: string): void {
    this.table(table).set(key, null)
  }

  clear (table: Table): void {
    this.cleared.add(table)
    this.writes.delete(table)
  }

  private touched (table: Table): boolean {
    return this.cleared.has(table) || (this.writes.get(table)?.size ?? 0) > 0
  }

  range<T>(table: Table, opts: RangeOptions = {}): Array<[string, T]> {
    if (!this.touched(table)) return this.base.range<T>(table, opts)
    const inRange = (k: string): boolean =>
      (opts.start === undefined || compareKeys(k, opts.start) >= 0) && (opts.end === undefined || compareKeys(k, opts.end) < 0)
    const rows = new Map<string, T>()
    if (!this.cleared.has(table)) {
      // without the limit: some of the base's first rows may be deleted here
      for (const [k, v] of this.base.range<T>(table, { start: opts.start, end: opts.end })) rows.set(k, v)
    }
    for (const [k, v] of this.writes.get(table) ?? []) {
      if (!inRange(k)) continue
      if (v === null) rows.delete(k)
      else rows.set(k, decodeCbor(v) as T)
    }
    const out = [...rows].sort((x, y) => compareKeys(x[0], y[0]))
    return opts.limit === undefined ? out : out.slice(0, opts.limit)
  }

  rawRange (table: Table): Array<[string, Uint8Array]> {
    if (!this.touched(table)) return this.base.rawRange(table)
    const rows = new Map<string, Uint8Array>(this.cleared.has(table) ? [] : this.base.rawRange(table))
    for (const [k, v] of this.writes.get(table) ?? []) {
      if (v === null) rows.delete(k)
      else rows.set(k, v)
    }
    return [...rows].sort((x, y) => compareKeys(x[0], y[0]))
  }

  /** Hand every write to the base transaction (in the order: clears, then writes). */
  commit (): void {
    for (const t of this.cleared) this.base.clear(t)
    for (const [t, m] of this.writes) {
      for (const [k, v] of m) {
        if (v === null) this.base.delete(t, k)
        else this.base.putRaw(t, k, v)
      }
    }
    this.writes.clear()
    this.cleared.clear()
  }
}
