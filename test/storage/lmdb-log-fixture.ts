// Writes a Raft log in the LMDB layout of releases before the WAL (described in
// storage/lmdb-log-reader.ts), as those releases left it on disk, for the migration's tests.
// Written here from the layout, not with the reader's code, so that the two check each other.
import { open } from 'lmdb'
import type { Entry, HardState, Snapshot } from '../../protocols/raft/types.ts'
import { encodeCbor } from '../../storage/codec.ts'

export interface OldLog {
  snapshot: Snapshot
  /** entries start after this index, whose term is offsetTerm */
  offset: number
  offsetTerm: number
  /** none: the release never saved one */
  hardState?: HardState
  /** offset+1, offset+2, ... */
  entries: Entry[]
}

export function writeLmdbLog (dir: string, old: OldLog): void {
  const env = open({ path: dir, maxDbs: 4, encoding: 'binary' })
  const log = env.openDB<Uint8Array, number>('log', { encoding: 'binary' })
  const meta = env.openDB<Uint8Array, string>('meta', { encoding: 'binary' })
  env.transactionSync(() => {
    meta.putSync('snapshot', encodeCbor(old.snapshot))
    meta.putSync('offset', encodeCbor({ index: old.offset, term: old.offsetTerm }))
    if (old.hardState !== undefined) meta.putSync('hardState', encodeCbor(old.hardState))
    for (const e of old.entries) {
      const v = new Uint8Array(9 + e.data.byteLength)
      const view = new DataView(v.buffer)
      view.setUint8(0, e.type === 'conf' ? 1 : 0)
      view.setFloat64(1, e.term)
      v.set(e.data, 9)
      log.putSync(e.index, v)
    }
  })
  void env.close()
}

/** Removes one meta record (a log damaged or written by something else). */
export function rmLmdbKey (dir: string, key: string): void {
  const env = open({ path: dir, maxDbs: 4, encoding: 'binary' })
  const meta = env.openDB<Uint8Array, string>('meta', { encoding: 'binary' })
  env.transactionSync(() => { meta.removeSync(key) })
  void env.close()
}
