// Kv over an LMDB environment (one named database per table), values as our own CBOR bytes,
// keys as UTF-8 bytes so LMDB's order is code point order, as in MemoryKv.
import { open } from 'lmdb'
import type { Database, RootDatabase } from 'lmdb'
import type { Kv, KvTx, RangeOptions, Table } from './kv.ts'
import { TABLES } from './kv.ts'
import { decodeCbor, encodeCbor } from './codec.ts'

/**
 * - 'always': every transaction is fdatasynced before it returns;
 * - 'lazy' (default): committed and crash-consistent at once, flushed to disk shortly after by
 *   LMDB's overlapping sync. The state machine can afford it: the Raft log is the durable record
 *   and the applied index travels in the same transaction, so a restart re-applies what was lost;
 * - 'never': no flushing at all (benchmarks).
 */
export type KvSyncMode = 'always' | 'lazy' | 'never'

const ABORTABLE = 1
const SYNCHRONOUS_COMMIT = 2
const NO_SYNC_FLUSH = 0x10000

function keyBytes (k: string): Buffer {
  return Buffer.from(k, 'utf8')
}

export class LmdbKv implements Kv {
  private readonly env: RootDatabase
  private readonly dbs = new Map<Table, Database<Uint8Array, Buffer>>()
  private readonly flags: number
  private inTxn = false
  private closed = false

  private constructor (env: RootDatabase, mode: KvSyncMode) {
    this.env = env
    this.flags = ABORTABLE | SYNCHRONOUS_COMMIT | (mode === 'always' ? 0 : NO_SYNC_FLUSH)
    for (const t of TABLES) this.dbs.set(t, env.openDB<Uint8Array, Buffer>(t, { encoding: 'binary', keyEncoding: 'binary' }))
  }

  static open (dir: string, opts: { sync?: KvSyncMode } = {}): LmdbKv {
    const mode = opts.sync ?? 'lazy'
    const env = open({ path: dir, maxDbs: TABLES.length + 2, noSync: mode === 'never', encoding: 'binary' })
    return new LmdbKv(env, mode)
  }

  get<T>(table: Table, key: string): T | undefined {
    const v = this.db(table).get(keyBytes(key))
    return v == null ? undefined : decodeCbor(v) as T
  }

  put (table: Table, key: string, value: unknown): void {
    this.putRaw(table, key, encodeCbor(value))
  }

  putRaw (table: Table, key: string, bytes: Uint8Array): void {
    this.transaction(() => { this.db(table).putSync(keyBytes(key), bytes) })
  }

  delete (table: Table, key: string): void {
    this.transaction(() => { this.db(table).removeSync(keyBytes(key)) })
  }

  clear (table: Table): void {
    this.transaction(() => {
      const db = this.db(table)
      for (const k of [...db.getKeys()]) db.removeSync(k)
    })
  }

  range<T>(table: Table, opts: RangeOptions = {}): Array<[string, T]> {
    const out: Array<[string, T]> = []
    const r = this.db(table).getRange({
      start: opts.start !== undefined ? keyBytes(opts.start) : undefined,
      end: opts.end !== undefined ? keyBytes(opts.end) : undefined,
      limit: opts.limit
    })
    for (const { key, value } of r) out.push([key.toString('utf8'), decodeCbor(value) as T])
    return out
  }

  rawRange (table: Table): Array<[string, Uint8Array]> {
    const out: Array<[string, Uint8Array]> = []
    for (const { key, value } of this.db(table).getRange({})) out.push([key.toString('utf8'), new Uint8Array(value)]) // a copy: LMDB may reuse its buffer
    return out
  }

  transaction<R>(fn: (tx: KvTx) => R): R {
    if (this.closed) throw new Error('LmdbKv is closed')
    if (this.inTxn) return fn(this)
    this.inTxn = true
    try {
      // Braces matter: the callback must not return a pending write (it would keep the txn open).
      let result: R | undefined
      this.env.transactionSync(() => { result = fn(this) }, this.flags)
      return result as R
    } finally {
      this.inTxn = false
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    void this.env.close()
  }

  private db (table: Table): Database<Uint8Array, Buffer> {
    const d = this.dbs.get(table)
    if (d === undefined) throw new Error(`unknown table ${String(table)}`)
    return d
  }
}
