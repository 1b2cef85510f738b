// A Raft log kept by the LMDB store of earlier releases (raft/data.mdb) is copied into the WAL
// store (storage/wal-log-store.ts) the first time a newer daemon opens it. The WAL is built in a
// directory of its own beside it, then moved in segment by segment with the snapshot file last: the
// snapshot file is what marks a WAL directory, so a crash anywhere before that leaves the LMDB log
// in charge and the next start migrates again. Entries kept behind the snapshot (compaction's
// `keep`) are not carried over: they are committed and inside the snapshot, and were only there to
// spare a slightly lagging follower a snapshot.
import { existsSync, readdirSync, renameSync, rmSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { LmdbLogReader } from './lmdb-log-reader.ts'
import { WalLogStore, isWalDir } from './wal-log-store.ts'

/** Does `dir` hold an LMDB log that has not been migrated yet? */
export function needsLogMigration (dir: string): boolean {
  return !isWalDir(dir) && existsSync(join(dir, 'data.mdb'))
}

/** What was carried over. */
export interface LogMigration { snapshotIndex: number, entries: number, lastIndex: number, commit: number }

/** Copies the LMDB log in `dir` into a WAL in the same directory, then removes the LMDB files. */
export function migrateLmdbLog (dir: string): LogMigration {
  const tmp = join(dir, 'wal.migrating')
  rmSync(tmp, { recursive: true, force: true })
  const old = LmdbLogReader.open(dir)
  let result: LogMigration
  try {
    const snap = old.snapshot
    const hardState = old.hardState
    const wal = WalLogStore.open(tmp, { initialConf: snap.meta.conf })
    try {
      if (snap.meta.index > 0 || snap.data.byteLength > 0) wal.save({ snapshot: snap })
      const last = old.lastIndex
      const PAGE = 1024
      let copied = 0
      for (let lo = snap.meta.index + 1; lo <= last; lo += PAGE) {
        const es = old.entries(lo, Math.min(last + 1, lo + PAGE))
        wal.save({ entries: es })
        copied += es.length
      }
      wal.save({ hardState })
      result = { snapshotIndex: snap.meta.index, entries: copied, lastIndex: wal.lastIndex(), commit: hardState.commit }
    } finally { wal.close() }
  } finally { old.close() }
  // segments first, the snapshot file (the WAL's mark) last; each rename is atomic
  const files = readdirSync(tmp)
  for (const f of files) if (f !== 'snapshot') renameSync(join(tmp, f), join(dir, f))
  renameSync(join(tmp, 'snapshot'), join(dir, 'snapshot'))
  WalLogStore.open(dir).close() // fsyncs nothing new, but proves the moved WAL opens before the old log goes
  for (const f of ['data.mdb', 'lock.mdb']) if (existsSync(join(dir, f))) unlinkSync(join(dir, f))
  rmSync(tmp, { recursive: true, force: true })
  return result
}
