// The storage seam between the pure core and the disk. The core only reads
// (like etcd's raft.Storage); the shell writes what Ready hands it and then
// syncs before sending any message that depends on it.
import type { ConfState, Entry, HardState, Snapshot } from './types.ts'

/** Read side, used by the core. Must reflect every save() (synced or not). */
export interface RaftStorage {
  /** Hard state and membership at start-up: the snapshot's membership changed by every conf
   * entry after it up to hardState.commit. Conf entries above the commit index never count: they
   * may be truncated, and they take effect only when committed and handed out again. */
  initialState(): { hardState: HardState, conf: ConfState }
  /** Entries in [lo, hi), at least one if any are available, bounded by maxBytes of payload.
   * Throws RaftError('Compacted') if lo <= snapshot index, RaftError('Unavailable') if hi > lastIndex+1. */
  entries(lo: number, hi: number, maxBytes?: number): Entry[]
  /** Term of entry i; valid for i in [firstIndex-1, lastIndex] (firstIndex-1 is the snapshot's). */
  term(i: number): number
  firstIndex(): number
  lastIndex(): number
  /** The latest snapshot (meta index 0 when there is none). */
  snapshot(): Snapshot
}

/** Write side, used by the shell (node/core/raft-loop.ts). */
export interface LogStore extends RaftStorage {
  /** Record what a Ready asks to persist. Appending at index i discards any stored entries >= i.
   * A snapshot replaces the whole log before it. Not durable until sync(). */
  save (ready: { hardState?: HardState | null, entries?: Entry[], snapshot?: Snapshot | null }): void
  /** Make every earlier save() durable. Nothing may be acknowledged (sent) before this returns. */
  sync (): void
  /** Record a state-machine snapshot taken at `index` (<= applied) and drop log entries <= index - keep.
   * Durable on return. */
  compact (index: number, conf: ConfState, data: Uint8Array, keep?: number): void
  close (): void
}
