// Kv over an LMDB environment (one named database per table), values as our own CBOR bytes,
// keys as UTF-8 bytes so LMDB's order is code point order, as in MemoryKv.
import { failpoint } from './failpoints.ts'
import { open } from 'lmdb'
import type { Database, RootDatabase } from 'lmdb'
import type { Kv, KvTx, RangeOptions, Table } from './kv.ts'
import { TABLES } from './kv.ts'
import { decodeCbor, encodeCbor } from './codec.ts'

/**
 * - 'always': every transaction is fdatasynced before it returns;
 * - 'lazy' (default): committed without a flush (LMDB's NOSYNC, per transaction); flush() or the
 *   next 'always'-style commit makes everything before it durable. Survives a process crash
 *   intact; an OS crash or power loss may lose the latest applies (and LMDB documents that a
 *   NOSYNC database may even be damaged then). The state machine can afford it: the Raft log and
 *   its snapshot are the durable record, the applied index travels with each change, so a restart
 *   re-applies what was lost, and a damaged state directory can be wiped and restored from the
 *   log store's snapshot. Measured: ~0.05 ms per apply instead of one fdatasync (0.3-6 ms here);
 * - 'never': no flushing at all, not even flush() (benchmarks).
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
  private readonly flushDb: Database<Uint8Array, Buffer>
  private flushSeq = 0
  private inTxn = false
  private closed = false

  private constructor (env: RootDatabase, mode: KvSyncMode) {
    this.env = env
    this.flags = ABORTABLE | SYNCHRONOUS_COMMIT | (mode === 'always' ? 0 : NO_SYNC_FLUSH)
    this.flushDb = env.openDB<Uint8Array, Buffer>('_flush', { encoding: 'binary', keyEncoding: 'binary' })
    for (const t of TABLES) this.dbs.set(t, env.openDB<Uint8Array, Buffer>(t, { encoding: 'binary', keyEncoding: 'binary' }))
  }

  static open (dir: string, opts: { sync?: KvSyncMode } = {}): LmdbKv {
    const mode = opts.sync ?? 'lazy'
    // overlappingSync off: with it on, NO_SYNC_FLUSH commits still wait for a flush (measured).
    const env = open({ path: dir, maxDbs: TABLES.length + 2, noSync: mode === 'never', overlappingSync: mode === 'always', encoding: 'binary' })
    return new LmdbKv(env, mode)
  }

  get<T>(table: Table, key: string): T | undefined {
    const v = this.db(table).get(keyBytes(key))
    return v == null ? undefined : decodeCbor(v) as T
  }

  has (table: Table, key: string): boolean {
    return this.db(table).doesExist(keyBytes(key))
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
    // failpoint kv.commit (storage/failpoints.ts): the commit fails and nothing of it is written
    if (failpoint('kv.commit') != null) throw new Error('state machine commit failed (failpoint kv.commit)')
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

  /** Make every earlier transaction durable: one flushed commit (LMDB's fdatasync covers all
   * earlier no-flush commits, then writes the meta page synchronously). */
  flush (): void {
    if (this.closed) throw new Error('LmdbKv is closed')
    // A write outside the tables (so hashes and snapshots never see it): an empty commit would not flush.
    this.flushSeq++
    const seq = this.flushSeq
    this.env.transactionSync(() => { this.flushDb.putSync(keyBytes('seq'), encodeCbor(seq)) }, ABORTABLE | SYNCHRONOUS_COMMIT)
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
