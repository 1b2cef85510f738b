// A node that finds bad data in its own store must not crash-loop with a stack trace: it refuses
// to start with one paragraph naming the file and the way out, and a distinct exit code
// (STORE_CORRUPT_EXIT) that systemd's RestartPreventExitStatus can name. Checked at start: the
// Raft log store opens, its hard state is sane, its snapshot decodes as a state-machine snapshot,
// and every entry in the log decodes as a command or a conf change.
import { join } from 'node:path'
import { WalLogStore } from '../storage/wal-log-store.ts'
import { DirLockedError, lockDir, unlockDir } from '../storage/dir-lock.ts'
import { migrateLmdbLog, needsLogMigration } from '../storage/log-migrate.ts'
import type { LogMigration } from '../storage/log-migrate.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import { validateSnapshot } from '../storage/state-machine.ts'
import { checkEntryData } from './core/raft-ingress-context.ts'
import { MAX_INDEX, MAX_TERM } from './core/raft-ingress.ts'

/** EX_DATAERR of sysexits(3): input data was incorrect — here, the node's own store. */
export const STORE_CORRUPT_EXIT = 65

export class CorruptStoreError extends Error {
  constructor (readonly file: string, readonly problem: string) {
    super(`the Raft store ${file} holds bad data (${problem}), so this node refuses to start rather than serve or replicate it. ` +
      'If the other members are healthy, stop this node, move its data directory aside (keep it for a post-mortem), and start it again: ' +
      'it rejoins as a fresh node and receives a snapshot from the leader (remove its old id with `blixard node remove` first if it was a voter). ' +
      'If this was the last copy of the cluster, restore the data directory from a backup instead.')
    this.name = 'CorruptStoreError'
  }
}

/** Opens the Raft log store of `dataDir` (migrating an LMDB log of an earlier release first, and
 * telling `onMigrated` what it carried over) and checks it; throws CorruptStoreError on bad data. */
export function openCheckedLogStore (dataDir: string, onMigrated?: (m: LogMigration) => void): WalLogStore {
  const dir = join(dataDir, 'raft')
  if (needsLogMigration(dir)) {
    // under the directory's lock: a second daemon started on the same data directory meanwhile is
    // refused (DirLockedError) instead of migrating beside this one
    lockDir(dir)
    let m: LogMigration | null = null
    try {
      if (needsLogMigration(dir)) m = migrateLmdbLog(dir)
    } catch (err) {
      throw new CorruptStoreError(join(dir, 'data.mdb'), `cannot be migrated to the WAL: ${err instanceof Error ? err.message : String(err)}`)
    } finally { unlockDir(dir) }
    if (m !== null) onMigrated?.(m)
  }
  let store: WalLogStore
  try {
    store = WalLogStore.open(dir)
  } catch (err) {
    if (err instanceof DirLockedError) throw err // not bad data: another daemon on this data directory
    throw new CorruptStoreError(dir, `cannot be read: ${err instanceof Error ? err.message : String(err)}`)
  }
  const problem = checkLogStore(store)
  if (problem != null) {
    store.close()
    throw new CorruptStoreError(dir, problem)
  }
  return store
}

/** null when the store is sane, else what is wrong with it. */
export function checkLogStore (store: LogStore): string | null {
  try {
    const { hardState: hs } = store.initialState()
    const last = store.lastIndex()
    if (!Number.isSafeInteger(hs.term) || hs.term < 0 || hs.term > MAX_TERM) return `hard state term ${hs.term} is outside [0, ${MAX_TERM}]`
    if (!Number.isSafeInteger(hs.commit) || hs.commit < 0 || hs.commit > Math.min(last, MAX_INDEX)) return `hard state commit ${hs.commit} is beyond the last index ${last}`
    const snap = store.snapshot()
    if (snap.meta.index > 0 || snap.data.byteLength > 0) {
      const why = validateSnapshot(snap.data)
      if (why != null) return `snapshot at index ${snap.meta.index}: ${why}`
    }
    // entries in pages, so a long log is not held in memory at once
    const PAGE = 1024
    for (let lo = store.firstIndex(); lo <= last; lo += PAGE) {
      for (const e of store.entries(lo, Math.min(last + 1, lo + PAGE))) {
        if (e.type === 'normal' && e.data.byteLength === 0) continue
        const why = checkEntryData(e.type, e.data)
        if (why != null) return `log entry ${e.index}: ${why}`
      }
    }
    return null
  } catch (err) {
    return `cannot be read: ${err instanceof Error ? err.message : String(err)}`
  }
}
