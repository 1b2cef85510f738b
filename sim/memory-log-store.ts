// A simulated disk for the Raft log: everything lives in memory, and crash()
// models a power loss by reverting to what the last sync() made durable.
// Used by the Raft tests and by the simulator.
import type { ConfState, Entry, HardState, Snapshot } from '../protocols/raft/types.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import { RaftError } from '../protocols/raft/types.ts'
import { applyConfChange, copyConf, decodeConfChange } from '../protocols/raft/confchange.ts'

/** What survives a crash. Entries are treated as immutable values, so copies share them. */
interface DiskState {
  hardState: HardState
  snapshot: Snapshot
  /** Index just before entries[0]; its term is kept so term(firstIndex-1) answers. With compact(keep)
   * the log may reach below the snapshot index, so offset <= snapshot.meta.index. */
  offset: number
  offsetTerm: number
  entries: Entry[]
}


function copySnapshot (s: Snapshot): Snapshot {
  return { meta: { index: s.meta.index, term: s.meta.term, conf: copyConf(s.meta.conf) }, data: s.data }
}

function copyDisk (d: DiskState): DiskState {
  return { hardState: { ...d.hardState }, snapshot: copySnapshot(d.snapshot), offset: d.offset, offsetTerm: d.offsetTerm, entries: d.entries.slice() }
}

function lastOf (d: DiskState): number {
  return Math.max(d.offset + d.entries.length, d.snapshot.meta.index)
}

function termOf (d: DiskState, i: number): number | undefined {
  if (i === d.snapshot.meta.index) return d.snapshot.meta.term
  if (i === d.offset) return d.offsetTerm
  if (i > d.offset && i <= d.offset + d.entries.length) return d.entries[i - d.offset - 1].term
  return undefined
}

type SaveArgs = { hardState?: HardState | null, entries?: Entry[], snapshot?: Snapshot | null }

/** What save() does to one copy of the disk. In place: appends cost what they write. */
function applySave (d: DiskState, ready: SaveArgs): void {
  const s = ready.snapshot
  // A snapshot at the current snapshot index is accepted too: a joiner learns the cluster's
  // initial configuration from the leader's index-0 snapshot.
  if (s != null && s.meta.index >= d.snapshot.meta.index) {
    // Entries after a snapshot that agrees with our log stay; otherwise the log restarts after it.
    const agrees = termOf(d, s.meta.index) === s.meta.term
    d.entries = agrees ? d.entries.slice(s.meta.index - d.offset) : []
    d.offset = s.meta.index
    d.offsetTerm = s.meta.term
    d.snapshot = copySnapshot(s)
  }
  if (ready.entries != null && ready.entries.length > 0) {
    let k = 0
    while (k < ready.entries.length && ready.entries[k].index <= d.offset) k++
    if (k < ready.entries.length) {
      const first = ready.entries[k].index
      if (first > lastOf(d) + 1) throw new RaftError('Unavailable', `append at ${first} leaves a gap after ${lastOf(d)}`)
      d.entries.length = first - d.offset - 1
      for (; k < ready.entries.length; k++) d.entries.push(ready.entries[k])
    }
  }
  if (ready.hardState != null) d.hardState = { ...ready.hardState }
}

export class MemoryLogStore implements LogStore {
  private live: DiskState
  private durable: DiskState
  /** Saves since the last sync, in order (replayed onto `durable` by sync()). */
  private unsynced: SaveArgs[] = []
  private closed = false

  /** The planted bug 'conf-not-rolled-back': count uncommitted conf entries at start-up too, as
   * the store did before the two-leaders-in-one-term fix (a truncated entry then outlives itself). */
  private readonly countUncommittedConf: boolean

  constructor (initial?: { conf?: ConfState, countUncommittedConf?: boolean }) {
    this.countUncommittedConf = initial?.countUncommittedConf === true
    const conf = copyConf(initial?.conf ?? { voters: [], learners: [] })
    this.live = {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) },
      offset: 0,
      offsetTerm: 0,
      entries: []
    }
    this.durable = copyDisk(this.live)
  }

  /** Membership from the snapshot plus the committed conf entries after it (the interface's
   * contract: an uncommitted conf entry may still be truncated, so it never counts at start). */
  initialState (): { hardState: HardState, conf: ConfState } {
    let conf = copyConf(this.live.snapshot.meta.conf)
    const commit = this.countUncommittedConf ? Infinity : this.live.hardState.commit
    for (const e of this.live.entries) {
      if (e.type !== 'conf' || e.index <= this.live.snapshot.meta.index || e.index > commit) continue
      try {
        conf = applyConfChange(conf, decodeConfChange(e.data))
      } catch {
        // undecodable: the core ignores such an entry too
      }
    }
    return { hardState: { ...this.live.hardState }, conf }
  }

  entries (lo: number, hi: number, maxBytes?: number): Entry[] {
    const d = this.live
    if (lo <= d.offset) throw new RaftError('Compacted', `entries(${lo}) at or below compacted index ${d.offset}`)
    if (hi > this.lastIndex() + 1) throw new RaftError('Unavailable', `entries(.., ${hi}) beyond last index ${this.lastIndex()}`)
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i < hi; i++) {
      const e = d.entries[i - d.offset - 1]
      bytes += e.data.byteLength
      if (out.length > 0 && maxBytes !== undefined && bytes > maxBytes) break
      out.push(e)
    }
    return out
  }

  term (i: number): number {
    const t = termOf(this.live, i)
    if (t !== undefined) return t
    if (i < this.live.offset) throw new RaftError('Compacted', `term(${i}) below compacted index ${this.live.offset}`)
    throw new RaftError('Unavailable', `term(${i}) beyond last index ${this.lastIndex()}`)
  }

  firstIndex (): number {
    return this.live.offset + 1
  }

  lastIndex (): number {
    return lastOf(this.live)
  }

  snapshot (): Snapshot {
    return this.live.snapshot
  }

  save (ready: SaveArgs): void {
    this.assertOpen()
    applySave(this.live, ready)
    this.unsynced.push(ready)
  }

  sync (): void {
    this.assertOpen()
    // Replay the unsynced saves on the durable copy: cost follows the writes, not the log size.
    for (const r of this.unsynced) applySave(this.durable, r)
    this.unsynced = []
  }

  compact (index: number, conf: ConfState, data: Uint8Array, keep = 0): void {
    this.assertOpen()
    for (const d of [this.live, this.durable]) {
      const term = termOf(d, index)
      if (index <= d.snapshot.meta.index || term === undefined) continue
      d.snapshot = { meta: { index, term, conf: copyConf(conf) }, data }
      const dropThrough = Math.max(d.offset, index - keep)
      const newOffsetTerm = termOf(d, dropThrough) ?? d.offsetTerm
      d.entries = d.entries.slice(dropThrough - d.offset)
      d.offset = dropThrough
      d.offsetTerm = newOffsetTerm
    }
  }

  /** Power loss: every save() not followed by sync() is gone. */
  crash (): void {
    this.live = copyDisk(this.durable)
    this.unsynced = []
  }

  /** What a crash would leave (for checkers). */
  durableCopy (): { hardState: HardState, snapshot: Snapshot, entries: Entry[] } {
    const d = copyDisk(this.durable)
    return { hardState: d.hardState, snapshot: d.snapshot, entries: d.entries }
  }

  close (): void {
    this.closed = true
  }

  private assertOpen (): void {
    if (this.closed) throw new RaftError('Unavailable', 'log store is closed')
  }
}
