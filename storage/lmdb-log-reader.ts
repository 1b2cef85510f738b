// The Raft log on disk of releases before the WAL (storage/wal-log-store.ts), read once to migrate
// it (storage/log-migrate.ts); nothing writes this layout any more. One LMDB environment in
// DATA_DIR/raft (data.mdb) with two databases:
//   log   key: the entry's index (a number key); value: [type u8: 0 normal, 1 conf][term: f64 big-endian][data]
//   meta  'snapshot' → CBOR { meta: { index, term, conf: { voters, learners } }, data }
//         'offset'   → CBOR { index, term }: the entry just below the first stored one (etcd's dummy
//                      entry); entries offset+1.. are stored, consecutive
//         'hardState' → CBOR { term, vote, commit } (absent: nothing was ever voted or committed)
// An earlier release always wrote a snapshot record on first open; a log without one, with an
// entry that is not consecutive, or with a record of another shape is refused, naming what is wrong.
import { open } from 'lmdb'
import type { Database, RootDatabase } from 'lmdb'
import type { ConfState, Entry, EntryType, HardState, Snapshot } from '../protocols/raft/types.ts'
import { RaftError } from '../protocols/raft/types.ts'
import { copyConf } from '../protocols/raft/confchange.ts'
import { decodeCbor, plainBytes } from './codec.ts'

/** Entry value layout: [type: u8][term: f64 big-endian][data]. */
const HEADER = 9

function decodeEntry (index: number, v: Uint8Array): Entry {
  if (v.byteLength < HEADER) throw new RaftError('Unavailable', `LMDB log entry ${index} is ${v.byteLength} bytes, shorter than its ${HEADER}-byte header`)
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength)
  const code = view.getUint8(0)
  if (code > 1) throw new RaftError('Unavailable', `LMDB log entry ${index} has type ${code} (0 normal or 1 conf)`)
  const type: EntryType = code === 1 ? 'conf' : 'normal'
  // a plain copy: a Buffer view would point into memory LMDB may reuse
  return { term: view.getFloat64(1), index, type, data: new Uint8Array(v.subarray(HEADER)) }
}

const isIndex = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
const isConf = (x: unknown): x is ConfState => {
  const c = x as { voters?: unknown, learners?: unknown } | null
  return c != null && typeof c === 'object' && Array.isArray(c.voters) && Array.isArray(c.learners) &&
    c.voters.every((v) => typeof v === 'string') && c.learners.every((v) => typeof v === 'string')
}

interface Parsed { hardState: HardState, snapshot: Snapshot, offset: number }

/** The meta records, checked. */
function parseMeta (meta: Database<Uint8Array, string>, dir: string): Parsed {
  const read = (key: string): unknown => { const v = meta.get(key); return v == null ? undefined : decodeCbor(v) }
  const bad = (what: string): never => { throw new RaftError('Unavailable', `the LMDB Raft log in ${dir}: ${what}`) }
  const snap = read('snapshot') as { meta?: { index?: unknown, term?: unknown, conf?: unknown }, data?: unknown } | undefined
  if (snap == null) return bad('no snapshot record (every release that wrote this layout made one on first open)')
  const m = snap.meta
  if (m == null || !isIndex(m.index) || !isIndex(m.term) || !isConf(m.conf) || !(snap.data instanceof Uint8Array)) return bad('the snapshot record is not { meta: { index, term, conf }, data }')
  const snapshot: Snapshot = { meta: { index: m.index, term: m.term, conf: copyConf(m.conf) }, data: plainBytes(snap.data) }
  const hard = read('hardState') as { term?: unknown, vote?: unknown, commit?: unknown } | null | undefined
  let hardState: HardState = { term: 0, vote: null, commit: 0 }
  if (hard !== undefined) {
    if (hard == null || !isIndex(hard.term) || !isIndex(hard.commit) || !(hard.vote === null || typeof hard.vote === 'string')) return bad('the hardState record is not { term, vote, commit }')
    hardState = { term: hard.term, vote: hard.vote, commit: hard.commit }
  }
  const off = read('offset') as { index?: unknown } | null | undefined
  let offset = 0
  if (off !== undefined) {
    if (off == null || !isIndex(off.index)) return bad('the offset record is not { index, term }')
    offset = off.index
  }
  if (offset > snapshot.meta.index) return bad(`entries start after ${offset}, beyond the snapshot at ${snapshot.meta.index}`)
  return { hardState, snapshot, offset }
}

/** A read-only view of such a log. */
export class LmdbLogReader {
  readonly hardState: HardState
  readonly snapshot: Snapshot
  /** entries offset+1 ..lastIndex are stored */
  readonly offset: number
  readonly lastIndex: number
  private closed = false

  private constructor (private readonly env: RootDatabase, private readonly log: Database<Uint8Array, number>, p: Parsed) {
    this.hardState = p.hardState
    this.snapshot = p.snapshot
    this.offset = p.offset
    let last = this.offset
    for (const key of log.getKeys({ reverse: true, limit: 1 })) last = key
    this.lastIndex = Math.max(last, this.snapshot.meta.index)
  }

  static open (dir: string): LmdbLogReader {
    const env = open({ path: dir, maxDbs: 4, readOnly: true, encoding: 'binary' })
    try {
      const log = env.openDB<Uint8Array, number>('log', { encoding: 'binary' })
      const meta = env.openDB<Uint8Array, string>('meta', { encoding: 'binary' })
      return new LmdbLogReader(env, log, parseMeta(meta, dir))
    } catch (e) {
      void env.close()
      throw e
    }
  }

  /** Entries [lo, hi), which must all be stored and consecutive. */
  entries (lo: number, hi: number): Entry[] {
    if (this.closed) throw new RaftError('Unavailable', 'LMDB log reader is closed')
    if (lo <= this.offset || hi > this.lastIndex + 1) throw new RaftError('Unavailable', `entries(${lo}, ${hi}) outside the stored ${this.offset + 1}..${this.lastIndex}`)
    const out: Entry[] = []
    let expect = lo
    for (const { key, value } of this.log.getRange({ start: lo, end: hi })) {
      if (key !== expect) throw new RaftError('Unavailable', `the LMDB Raft log has a hole at ${expect} (next stored entry: ${key})`)
      out.push(decodeEntry(key, value))
      expect++
    }
    if (expect !== hi) throw new RaftError('Unavailable', `the LMDB Raft log has a hole at ${expect} (nothing stored from there to ${hi - 1})`)
    return out
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    void this.env.close()
  }
}
