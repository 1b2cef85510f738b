// The Raft log on disk of releases before the WAL (storage/wal-log-store.ts): entries, hard state and
// the latest snapshot in one LMDB environment. Kept to read such a log once and migrate it
// (storage/log-migrate.ts), and as the WAL's second subject in the log-store property test.
// Durability: with noSync=false every save() and compact() is one LMDB write transaction committed
// by transactionSync with its default flags, which fdatasyncs the data file and writes the meta
// page through LMDB's O_DSYNC descriptor before returning (checked with strace: one fdatasync per
// commit, on the calling thread). So sync() has nothing left to do; it still exists because the
// contract says nothing is durable before it. With noSync=true nothing is ever flushed (benchmark).
import { open } from 'lmdb'
import type { Database, RootDatabase } from 'lmdb'
import type { ConfState, Entry, EntryType, HardState, Snapshot } from '../protocols/raft/types.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import { RaftError } from '../protocols/raft/types.ts'
import { applyConfChange, copyConf, decodeConfChange } from '../protocols/raft/confchange.ts'
import { decodeCbor, encodeCbor, plainBytes } from './codec.ts'
import { failpoint } from './failpoints.ts'
import { LogDurabilityError } from './wal-log-store.ts'

export interface LmdbLogStoreOptions {
  /** Membership before any snapshot; persisted on first open, ignored afterwards. */
  initialConf?: ConfState
  /** Never flush to disk (benchmarks only: a crash may lose or corrupt the log). */
  noSync?: boolean
}

/** Entry value layout: [type: u8][term: f64 big-endian][data]. The index is the key. */
const HEADER = 9
const TYPE_CODE: Record<EntryType, number> = { normal: 0, conf: 1 }

function encodeEntry (e: Entry): Uint8Array {
  const out = new Uint8Array(HEADER + e.data.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, TYPE_CODE[e.type])
  view.setFloat64(1, e.term)
  out.set(e.data, HEADER)
  return out
}

function decodeEntry (index: number, v: Uint8Array): Entry {
  const view = new DataView(v.buffer, v.byteOffset, v.byteLength)
  const type: EntryType = view.getUint8(0) === 1 ? 'conf' : 'normal'
  // A plain copy: Buffer.slice would be a view into memory LMDB may reuse.
  return { term: view.getFloat64(1), index, type, data: new Uint8Array(v.subarray(HEADER)) }
}


function isConfState (x: unknown): x is ConfState {
  if (x == null || typeof x !== 'object') return false
  const c = x as { voters?: unknown, learners?: unknown }
  return Array.isArray(c.voters) && Array.isArray(c.learners)
}

/** Recent entries kept in memory: the leader re-reads what it just wrote to replicate it. */
const TAIL_MAX = 4096

/** Persisted meta keys. */
const K_HARD = 'hardState'
const K_SNAP = 'snapshot'
const K_OFFSET = 'offset'

export class LmdbLogStore implements LogStore {
  private readonly env: RootDatabase
  private readonly log: Database<Uint8Array, number>
  private readonly meta: Database<Uint8Array, string>
  private hard: HardState
  private snap: Snapshot
  /** Index just below the first stored entry and its term (etcd's dummy entry). */
  private offset: number
  private offsetTerm: number
  /** terms[i] is the term of entry offset+1+i: term() and lastIndex() never touch the disk. */
  private terms: number[]
  /** Conf entries in the log, for initialState(). */
  private confs: Array<{ index: number, data: Uint8Array }>
  /** The last entries written (contiguous, ending at the last stored index), served without LMDB. */
  private tail: Entry[] = []
  private closed = false
  /** a write failed or was not made durable: memory and disk may differ, so nothing more is written */
  private failed = false

  private constructor (env: RootDatabase, opts: LmdbLogStoreOptions) {
    this.env = env
    this.log = env.openDB<Uint8Array, number>('log', { encoding: 'binary' })
    this.meta = env.openDB<Uint8Array, string>('meta', { encoding: 'binary' })
    const hard = this.readMeta(K_HARD) as HardState | undefined
    this.hard = hard ?? { term: 0, vote: null, commit: 0 }
    const snap = this.readMeta(K_SNAP) as Snapshot | undefined
    if (snap != null && isConfState(snap.meta?.conf)) {
      this.snap = { meta: snap.meta, data: plainBytes(snap.data) }
    } else {
      this.snap = { meta: { index: 0, term: 0, conf: copyConf(opts.initialConf ?? { voters: [], learners: [] }) }, data: new Uint8Array(0) }
      const s = this.snap
      this.env.transactionSync(() => { this.meta.putSync(K_SNAP, encodeCbor(s)) })
    }
    const off = this.readMeta(K_OFFSET) as { index: number, term: number } | undefined
    this.offset = off?.index ?? 0
    this.offsetTerm = off?.term ?? 0
    this.terms = []
    this.confs = []
    let expect = this.offset + 1
    for (const { key, value } of this.log.getRange({ start: this.offset + 1 })) {
      if (key !== expect) throw new RaftError('Unavailable', `log has a hole at ${expect} (found ${key})`)
      const e = decodeEntry(key, value)
      this.terms.push(e.term)
      if (e.type === 'conf') this.confs.push({ index: key, data: e.data })
      expect++
    }
  }

  static open (dir: string, opts: LmdbLogStoreOptions = {}): LmdbLogStore {
    const env = open({ path: dir, maxDbs: 4, noSync: opts.noSync === true, encoding: 'binary' })
    return new LmdbLogStore(env, opts)
  }

  initialState (): { hardState: HardState, conf: ConfState } {
    let conf = copyConf(this.snap.meta.conf)
    // Only committed conf entries count: an uncommitted one may still be truncated by a new
    // leader, and a configuration read from it would outlive the entry (two leaders in a term).
    for (const c of this.confs) {
      if (c.index <= this.snap.meta.index || c.index > this.hard.commit) continue
      try {
        conf = applyConfChange(conf, decodeConfChange(c.data))
      } catch {
        // undecodable: the core ignores such an entry too
      }
    }
    return { hardState: { ...this.hard }, conf }
  }

  entries (lo: number, hi: number, maxBytes?: number): Entry[] {
    this.assertOpen()
    if (lo <= this.offset) throw new RaftError('Compacted', `entries(${lo}) at or below compacted index ${this.offset}`)
    const last = this.lastIndex()
    if (hi > last + 1) throw new RaftError('Unavailable', `entries(.., ${hi}) beyond last index ${last}`)
    const out: Entry[] = []
    if (lo >= hi) return out
    let bytes = 0
    const t0 = this.tail.length > 0 ? this.tail[0].index : Infinity
    if (lo >= t0) {
      for (let i = lo; i < hi; i++) {
        const e = this.tail[i - t0]
        bytes += e.data.byteLength
        if (out.length > 0 && maxBytes !== undefined && bytes > maxBytes) break
        out.push(e)
      }
      return out
    }
    for (const { key, value } of this.log.getRange({ start: lo, end: hi })) {
      const e = decodeEntry(key, value)
      bytes += e.data.byteLength
      if (out.length > 0 && maxBytes !== undefined && bytes > maxBytes) break
      out.push(e)
    }
    return out
  }

  term (i: number): number {
    const t = this.termOf(i)
    if (t !== undefined) return t
    if (i < this.offset) throw new RaftError('Compacted', `term(${i}) below compacted index ${this.offset}`)
    throw new RaftError('Unavailable', `term(${i}) beyond last index ${this.lastIndex()}`)
  }

  firstIndex (): number {
    return this.offset + 1
  }

  lastIndex (): number {
    return Math.max(this.offset + this.terms.length, this.snap.meta.index)
  }

  snapshot (): Snapshot {
    return this.snap
  }

  save (ready: { hardState?: HardState | null, entries?: Entry[], snapshot?: Snapshot | null }): void {
    this.assertOpen()
    // Work out the new in-memory state first, write it in one transaction, then adopt it.
    let offset = this.offset
    let offsetTerm = this.offsetTerm
    let terms = this.terms
    let confs = this.confs
    let snap = this.snap
    let tail = this.tail
    const deletes: Array<[number, number]> = [] // inclusive index ranges to remove
    const s = ready.snapshot
    // A snapshot at the current snapshot index is accepted too: a joiner learns the cluster's
    // initial configuration from the leader's index-0 snapshot (as MemoryLogStore).
    if (s != null && s.meta.index >= this.snap.meta.index) {
      // Entries after a snapshot that agrees with our log stay; otherwise the log restarts after it.
      const agrees = this.termOf(s.meta.index) === s.meta.term
      const lastStored = offset + terms.length
      if (agrees) {
        deletes.push([offset + 1, s.meta.index])
        terms = terms.slice(s.meta.index - offset)
      } else {
        deletes.push([offset + 1, lastStored])
        terms = []
      }
      confs = confs.filter(c => c.index > s.meta.index && agrees)
      tail = tail.filter(e => e.index > s.meta.index && agrees)
      offset = s.meta.index
      offsetTerm = s.meta.term
      snap = { meta: { index: s.meta.index, term: s.meta.term, conf: copyConf(s.meta.conf) }, data: s.data }
    }
    let fresh: Entry[] = []
    // The common case, entries right after the last one and nothing else changing the log:
    // the in-memory indexes grow in place after the commit (copying them on every append cost
    // O(log length) per write, which showed in profiles with a 100 000-entry log)
    let appendOnly = false
    if (ready.entries != null && ready.entries.length > 0) {
      fresh = ready.entries.filter(e => e.index > offset)
      if (fresh.length > 0 && snap === this.snap && fresh[0].index === offset + terms.length + 1 && fresh[0].index > snap.meta.index) {
        for (let k = 1; k < fresh.length; k++) {
          if (fresh[k].index !== fresh[0].index + k) throw new RaftError('Unavailable', `entries to append are not consecutive at ${fresh[k].index}`)
        }
        appendOnly = true
      } else if (fresh.length > 0) {
        const first = fresh[0].index
        // Entries kept behind a snapshot (compact's `keep`) are committed: Raft never rewrites them,
        // and truncating them would leave the snapshot ahead of a shorter log.
        if (first <= snap.meta.index) throw new RaftError('Compacted', `append at ${first} would rewrite entries at or below the snapshot at ${snap.meta.index}`)
        const last = Math.max(offset + terms.length, snap.meta.index)
        if (first > last + 1) throw new RaftError('Unavailable', `append at ${first} leaves a gap after ${last}`)
        // The in-memory term index assumes consecutive entries: refuse anything else before writing.
        for (let k = 1; k < fresh.length; k++) {
          if (fresh[k].index !== first + k) throw new RaftError('Unavailable', `entries to append are not consecutive at ${fresh[k].index}`)
        }
        const lastStored = offset + terms.length
        if (first <= lastStored) deletes.push([first, lastStored])
        terms = terms.slice(0, first - offset - 1).concat(fresh.map(e => e.term))
        confs = confs.filter(c => c.index < first)
        for (const e of fresh) if (e.type === 'conf') confs.push({ index: e.index, data: e.data })
        // The tail must stay contiguous: drop it if the append does not continue it.
        const kept = tail.length > 0 && tail[0].index < first ? tail.filter(e => e.index < first) : []
        const copies = fresh.map(e => ({ term: e.term, index: e.index, type: e.type, data: e.data }))
        tail = kept.concat(copies)
        if (tail.length > TAIL_MAX) tail = tail.slice(tail.length - TAIL_MAX)
      }
    }
    const hard = ready.hardState != null ? { term: ready.hardState.term, vote: ready.hardState.vote, commit: ready.hardState.commit } : null
    const snapChanged = snap !== this.snap
    if (!snapChanged && fresh.length === 0 && hard == null) return
    // Failpoints (storage/failpoints.ts): a write that fails before anything reaches the disk, a batch
    // torn by a crash half-way (LMDB commits are atomic, so the crash is between two commits), and an
    // fsync that fails after the write. All three leave this store's memory untouched and unusable.
    if (failpoint('raft.log.write') != null) { this.failed = true; throw new LogDurabilityError('Raft log write failed (failpoint raft.log.write)') }
    if (fresh.length > 1 && failpoint('raft.log.torn') != null) {
      const half = fresh.slice(0, Math.ceil(fresh.length / 2))
      this.env.transactionSync(() => { for (const e of half) this.log.putSync(e.index, encodeEntry(e)) })
      this.failed = true
      throw new LogDurabilityError(`Raft log batch torn after ${half.length} of ${fresh.length} entries (failpoint raft.log.torn)`)
    }
    this.env.transactionSync(() => {
      for (const [a, b] of deletes) for (let i = a; i <= b; i++) this.log.removeSync(i)
      for (const e of fresh) this.log.putSync(e.index, encodeEntry(e))
      if (snapChanged) {
        this.meta.putSync(K_SNAP, encodeCbor(snap))
        this.meta.putSync(K_OFFSET, encodeCbor({ index: offset, term: offsetTerm }))
      }
      if (hard != null) this.meta.putSync(K_HARD, encodeCbor(hard))
    })
    if (failpoint('raft.log.fsync') != null) { this.failed = true; throw new LogDurabilityError('Raft log fsync failed (failpoint raft.log.fsync): what was written may not be on disk') }
    if (hard != null) this.hard = hard
    if (appendOnly) {
      const contiguous = this.tail.length > 0 && this.tail[this.tail.length - 1].index === fresh[0].index - 1
      if (!contiguous) this.tail = []
      for (const e of fresh) {
        this.terms.push(e.term)
        if (e.type === 'conf') this.confs.push({ index: e.index, data: e.data })
        this.tail.push({ term: e.term, index: e.index, type: e.type, data: e.data })
      }
      // trimmed in steps, so that the copy is amortized over TAIL_MAX appends
      if (this.tail.length > 2 * TAIL_MAX) this.tail = this.tail.slice(this.tail.length - TAIL_MAX)
      return
    }
    this.offset = offset
    this.offsetTerm = offsetTerm
    this.terms = terms
    this.confs = confs
    this.tail = tail
    this.snap = snap
  }

  /** Every save() already committed durably (see the file comment), so nothing is pending here. */
  sync (): void {
    this.assertOpen()
  }

  compact (index: number, conf: ConfState, data: Uint8Array, keep = 0): void {
    this.assertOpen()
    const term = this.termOf(index)
    if (index <= this.snap.meta.index || term === undefined) return
    const snap: Snapshot = { meta: { index, term, conf: copyConf(conf) }, data }
    const dropThrough = Math.max(this.offset, index - keep)
    const newOffsetTerm = this.termOf(dropThrough) ?? this.offsetTerm
    const from = this.offset + 1
    this.env.transactionSync(() => {
      for (let i = from; i <= dropThrough; i++) this.log.removeSync(i)
      this.meta.putSync(K_SNAP, encodeCbor(snap))
      this.meta.putSync(K_OFFSET, encodeCbor({ index: dropThrough, term: newOffsetTerm }))
    })
    this.terms = this.terms.slice(dropThrough - this.offset)
    this.confs = this.confs.filter(c => c.index > dropThrough)
    this.tail = this.tail.filter(e => e.index > dropThrough)
    this.offset = dropThrough
    this.offsetTerm = newOffsetTerm
    this.snap = snap
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    void this.env.close()
  }

  private termOf (i: number): number | undefined {
    if (i === this.snap.meta.index) return this.snap.meta.term
    if (i === this.offset) return this.offsetTerm
    if (i > this.offset && i <= this.offset + this.terms.length) return this.terms[i - this.offset - 1]
    return undefined
  }

  private readMeta (key: string): unknown {
    const v = this.meta.get(key)
    return v == null ? undefined : decodeCbor(v)
  }

  private assertOpen (): void {
    if (this.closed) throw new RaftError('Unavailable', 'log store is closed')
    if (this.failed) throw new LogDurabilityError('an earlier Raft log write failed: restart to recover from the log')
  }
}
