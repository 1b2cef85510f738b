// The Raft log as the core sees it: what the storage holds plus the unstable
// tail, the commit index, and how far committed entries have been handed out
// (applying) and applied.
import type { Entry, Snapshot } from './types.ts'
import type { RaftStorage } from './storage.ts'
import { RaftError } from './types.ts'
import { Unstable } from './unstable.ts'

export function entryBytes (ents: readonly Entry[]): number {
  let n = 0
  for (const e of ents) n += e.data.byteLength
  return n
}

/** Keep a prefix of `ents` within maxBytes of payload, but always at least one entry. */
export function limitSize (ents: Entry[], maxBytes: number | undefined): Entry[] {
  if (maxBytes === undefined || ents.length === 0) return ents
  let bytes = ents[0].data.byteLength
  let k = 1
  for (; k < ents.length; k++) {
    bytes += ents[k].data.byteLength
    if (bytes > maxBytes) break
  }
  return k === ents.length ? ents : ents.slice(0, k)
}

export class RaftLog {
  readonly storage: RaftStorage
  readonly unstable: Unstable
  committed: number
  /** Highest index handed out in Ready.committedEntries. */
  applying: number
  /** Highest index the shell has applied (acknowledged through advance). */
  applied: number

  constructor (storage: RaftStorage, committed: number, applied: number) {
    this.storage = storage
    this.unstable = new Unstable(storage.lastIndex() + 1)
    const first = storage.firstIndex()
    const snapIndex = storage.snapshot().meta.index
    this.committed = Math.min(Math.max(committed, snapIndex), this.lastIndex())
    const floor = Math.max(first - 1, snapIndex)
    this.applied = Math.min(Math.max(applied, floor), this.committed)
    this.applying = this.applied
  }

  firstIndex (): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  lastIndex (): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  /** Index of the last entry already in storage (entries after it are unstable). */
  stableIndex (): number {
    return this.unstable.offset - 1
  }

  /** Term of entry i, or undefined when i is compacted away or beyond the log. */
  term (i: number): number | undefined {
    const first = this.firstIndex()
    if (i < first - 1 || i > this.lastIndex()) return undefined
    const t = this.unstable.maybeTerm(i)
    if (t !== undefined) return t
    try {
      return this.storage.term(i)
    } catch (e) {
      if (e instanceof RaftError) return undefined
      throw e
    }
  }

  lastTerm (): number {
    return this.term(this.lastIndex()) ?? 0
  }

  matchTerm (i: number, t: number): boolean {
    return this.term(i) === t
  }

  /** Is a log ending at (lastIndex, term) at least as up to date as ours? (§5.4.1) */
  isUpToDate (lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm()
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex())
  }

  /** Entries in [lo, hi) bounded by maxBytes (at least one). Throws RaftError('Compacted') when lo
   * is below the first index. */
  entries (lo: number, hi: number, maxBytes?: number): Entry[] {
    if (lo < this.firstIndex()) throw new RaftError('Compacted', `entries from ${lo} are compacted`)
    hi = Math.min(hi, this.lastIndex() + 1)
    if (lo >= hi) return []
    let out: Entry[] = []
    const uoff = this.unstable.offset
    if (lo < uoff) {
      out = this.storage.entries(lo, Math.min(hi, uoff), maxBytes)
      // storage stopped early on size: do not add unstable entries after a gap
      if (out.length < Math.min(hi, uoff) - lo) return out
    }
    if (hi > uoff) out = out.concat(this.unstable.slice(Math.max(lo, uoff), hi))
    return limitSize(out, maxBytes)
  }

  /** Index of the first entry of `ents` that conflicts with (or is missing from) our log, or 0. */
  findConflict (ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index
    }
    return 0
  }

  /** Largest index <= index whose term is <= term (the follower's hint for fast backtracking,
   * and the leader's use of it). Returns firstIndex-1 at worst. */
  findConflictByTerm (index: number, term: number): number {
    let i = Math.min(index, this.lastIndex())
    const floor = this.firstIndex() - 1
    for (; i > floor; i--) {
      const t = this.term(i)
      if (t === undefined || t <= term) return i
    }
    return Math.max(floor, 0)
  }

  /** A follower's append: if our entry at `index` has `logTerm`, adopt `ents` and the leader's
   * commit; returns the last index now known to match, or undefined when the check fails. */
  maybeAppend (index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNew = index + ents.length
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      // Never rewrite committed entries: a leader that asks for it is broken; refuse quietly.
      if (ci <= this.committed) return undefined
      this.append(ents.slice(ci - index - 1))
    }
    this.commitTo(Math.min(committed, lastNew))
    return lastNew
  }

  append (ents: Entry[]): number {
    if (ents.length > 0) this.unstable.truncateAndAppend(ents)
    return this.lastIndex()
  }

  commitTo (c: number): void {
    if (c > this.committed) this.committed = Math.min(c, this.lastIndex())
  }

  /** Leader commit rule: only an entry of the current term commits by counting replicas (§5.4.2).
   * `anyTerm` is the deliberately broken variant. */
  maybeCommit (maxIndex: number, term: number, anyTerm = false): boolean {
    if (maxIndex <= this.committed) return false
    if (!anyTerm && this.term(maxIndex) !== term) return false
    this.commitTo(maxIndex)
    return true
  }

  hasNextCommittedEntries (): boolean {
    return this.unstable.snapshot === null && this.committed > this.applying
  }

  /** Committed entries not yet handed out, bounded by maxBytes; marks them as applying. */
  nextCommittedEntries (maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEntries()) return []
    const lo = Math.max(this.applying + 1, this.firstIndex())
    const ents = this.entries(lo, this.committed + 1, maxBytes)
    if (ents.length > 0) this.applying = ents[ents.length - 1].index
    return ents
  }

  appliedTo (i: number): void {
    if (i > this.applied) this.applied = Math.min(i, this.committed)
    if (this.applying < this.applied) this.applying = this.applied
  }

  stableTo (i: number, t: number): void {
    this.unstable.stableTo(i, t)
  }

  stableSnapTo (i: number): void {
    this.unstable.stableSnapTo(i)
  }

  restore (s: Snapshot): void {
    this.committed = s.meta.index
    this.applying = Math.max(this.applying, s.meta.index)
    this.unstable.restore(s)
  }

  snapshot (): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot()
  }
}
