// In-memory Kv for the simulator: deterministic (iteration in key order), transactions by undo log.
import type { Kv, KvTx, RangeOptions, Table } from './kv.ts'
import { TABLES, compareKeys } from './kv.ts'
import { decodeCbor, encodeCbor } from './codec.ts'

interface TableData {
  map: Map<string, Uint8Array>
  /** sorted keys, rebuilt lazily after an insert or delete */
  sorted: string[] | null
}

/** First position in sorted `keys` whose key is >= k. */
function lowerBound (keys: string[], k: string): number {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareKeys(keys[mid], k) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}

type Undo = { table: Table, key: string, prev: Uint8Array | undefined }

export class MemoryKv implements Kv {
  private readonly tables = new Map<Table, TableData>()
  private undo: Undo[] | null = null

  constructor () {
    for (const t of TABLES) this.tables.set(t, { map: new Map(), sorted: [] })
  }

  get<T>(table: Table, key: string): T | undefined {
    const v = this.t(table).map.get(key)
    return v === undefined ? undefined : decodeCbor(v) as T
  }

  has (table: Table, key: string): boolean {
    return this.t(table).map.has(key)
  }

  put (table: Table, key: string, value: unknown): void {
    this.putRaw(table, key, encodeCbor(value))
  }

  putRaw (table: Table, key: string, bytes: Uint8Array): void {
    this.write(table, key, bytes)
  }

  delete (table: Table, key: string): void {
    if (this.t(table).map.has(key)) this.write(table, key, undefined)
  }

  clear (table: Table): void {
    for (const k of [...this.keys(table)]) this.write(table, k, undefined)
  }

  range<T>(table: Table, opts: RangeOptions = {}): Array<[string, T]> {
    const d = this.t(table)
    const out: Array<[string, T]> = []
    const keys = this.keys(table)
    for (let i = opts.start === undefined ? 0 : lowerBound(keys, opts.start); i < keys.length; i++) {
      const k = keys[i]
      if (opts.end !== undefined && compareKeys(k, opts.end) >= 0) break
      if (opts.limit !== undefined && out.length >= opts.limit) break
      out.push([k, decodeCbor(d.map.get(k) as Uint8Array) as T])
    }
    return out
  }

  rawRange (table: Table): Array<[string, Uint8Array]> {
    const d = this.t(table)
    return this.keys(table).map(k => [k, d.map.get(k) as Uint8Array])
  }

  transaction<R>(fn: (tx: KvTx) => R): R {
    if (this.undo !== null) return fn(this)
    const undo: Undo[] = []
    this.undo = undo
    try {
      const r = fn(this)
      this.undo = null
      return r
    } catch (e) {
      this.undo = null
      for (let i = undo.length - 1; i >= 0; i--) {
        const u = undo[i]
        this.rawSet(u.table, u.key, u.prev)
      }
      throw e
    }
  }

  flush (): void {}

  close (): void {}

  private write (table: Table, key: string, bytes: Uint8Array | undefined): void {
    if (this.undo !== null) this.undo.push({ table, key, prev: this.t(table).map.get(key) })
    this.rawSet(table, key, bytes)
  }

  private rawSet (table: Table, key: string, bytes: Uint8Array | undefined): void {
    const d = this.t(table)
    const had = d.map.has(key)
    if (bytes === undefined) d.map.delete(key)
    else d.map.set(key, bytes)
    if (had === (bytes !== undefined) || d.sorted === null) return
    // Keep the sorted keys in step (binary search + splice) rather than re-sorting: the
    // idempotency tables gain and lose a key on most applies.
    const sorted = d.sorted
    const n = sorted.length
    // Fast paths for keys that only grow (idempotencyByIndex): append at the end, evict at the front.
    if (bytes !== undefined && (n === 0 || compareKeys(sorted[n - 1], key) < 0)) { sorted.push(key); return }
    if (bytes === undefined && n > 0 && sorted[0] === key) { sorted.shift(); return }
    const at = lowerBound(sorted, key)
    if (bytes === undefined) sorted.splice(at, 1)
    else sorted.splice(at, 0, key)
  }

  private keys (table: Table): string[] {
    const d = this.t(table)
    if (d.sorted === null) d.sorted = [...d.map.keys()].sort(compareKeys)
    return d.sorted
  }

  private t (table: Table): TableData {
    const d = this.tables.get(table)
    if (d === undefined) throw new Error(`unknown table ${String(table)}`)
    return d
  }
}
