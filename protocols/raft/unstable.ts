// The tail of the log that the shell has not yet persisted: entries (and at
// most one snapshot) handed out in Ready and made stable by advance().
import type { Entry, Snapshot } from './types.ts'

export class Unstable {
  snapshot: Snapshot | null = null
  /** Set once the snapshot has been handed out in a Ready and not yet advanced. */
  snapshotInProgress = false
  entries: Entry[] = []
  /** Index of entries[0]. */
  offset: number
  /** Entries below this index have been handed out in a Ready (persisting now). */
  offsetInProgress: number

  constructor (offset: number) {
    this.offset = offset
    this.offsetInProgress = offset
  }

  maybeFirstIndex (): number | undefined {
    return this.snapshot !== null ? this.snapshot.meta.index + 1 : undefined
  }

  maybeLastIndex (): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1
    if (this.snapshot !== null) return this.snapshot.meta.index
    return undefined
  }

  maybeTerm (i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== null && this.snapshot.meta.index === i) return this.snapshot.meta.term
      return undefined
    }
    const last = this.maybeLastIndex()
    if (last === undefined || i > last) return undefined
    return this.entries[i - this.offset].term
  }

  /** Entries not yet handed out in a Ready. */
  nextEntries (): Entry[] {
    return this.entries.slice(this.offsetInProgress - this.offset)
  }

  hasNextEntries (): boolean {
    return this.offsetInProgress < this.offset + this.entries.length
  }

  nextSnapshot (): Snapshot | null {
    return this.snapshot !== null && !this.snapshotInProgress ? this.snapshot : null
  }

  /** The shell now holds everything handed out so far. */
  acceptInProgress (): void {
    this.offsetInProgress = this.offset + this.entries.length
    if (this.snapshot !== null) this.snapshotInProgress = true
  }

  /** Entries up to (i, t) are on disk: drop them, unless the log changed under them meanwhile. */
  stableTo (i: number, t: number): void {
    const gt = this.maybeTerm(i)
    if (gt === undefined || gt !== t || i < this.offset) return
    const n = i + 1 - this.offset
    this.entries = this.entries.slice(n)
    this.offset = i + 1
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset)
  }

  stableSnapTo (i: number): void {
    if (this.snapshot !== null && this.snapshot.meta.index === i) {
      this.snapshot = null
      this.snapshotInProgress = false
    }
  }

  restore (s: Snapshot): void {
    this.offset = s.meta.index + 1
    this.offsetInProgress = this.offset
    this.entries = []
    this.snapshot = s
    this.snapshotInProgress = false
  }

  /** Append `ents`, replacing any unstable entries at or after ents[0].index. The caller has
   * checked that ents[0].index - 1 exists in the log (here or in storage). */
  truncateAndAppend (ents: Entry[]): void {
    const from = ents[0].index
    if (from === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents)
    } else if (from <= this.offset) {
      // Replaces the whole unstable tail (and anything in storage after from-1).
      this.offset = from
      this.entries = ents.slice()
    } else {
      this.entries = this.entries.slice(0, from - this.offset).concat(ents)
    }
    this.offsetInProgress = Math.min(this.offsetInProgress, from)
  }

  /** Entries in [lo, hi), all within the unstable range. */
  slice (lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}
