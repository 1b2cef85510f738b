// Whether the state machine's LMDB directory (DATA_DIR/state) can be trusted after the last run.
//
// The state machine commits without a flush (storage/lmdb-kv.ts 'lazy': LMDB's NOSYNC). A process
// crash loses nothing: every commit is in the page cache, which the kernel writes back. An OS
// crash or power loss can lose the latest commits (harmless: the applied index travels with each
// change, and Raft applies the rest again) but, as LMDB documents for NOSYNC, can also leave the
// database damaged: a meta page on disk that points at pages that never got there. Nothing would
// notice until a read hit them. Everything in it is derived from the Raft snapshot and log
// (storage/wal-log-store.ts, which fsyncs), so a directory that may be damaged is not repaired
// but rebuilt: moved aside, and the node starts with an empty one, which the Raft core restores
// from the log's snapshot and brings up to date by applying the log again (node/core/raft-node.ts).
//
// The RUN file says which boot last opened the directory and whether that run closed it cleanly
// (after a flushed commit). Open + another boot = the machine went down under an open store:
// rebuild. Open + this boot = only the process died: keep. Clean = everything was flushed: keep.
// No RUN file (a new directory, or one from a release before this file) = keep, as before.
//
// Damage from anything else (a disk that returns bad blocks, a file written over) is looked for
// before the store opens, in a child process that opens it read-only and reads every record of
// every table: LMDB maps the file and trusts its pages, so a damaged one can take the reading
// process down with SIGSEGV or SIGBUS (a data.mdb of garbage does at open, a truncated one on
// reading), which the daemon must not share. A store the child cannot read through is moved aside
// and rebuilt the same way. LMDB keeps no checksums: a leaf page overwritten with other bytes is
// read as whatever it now holds, and this check does not find it.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { TABLES } from './kv.ts'
import { bootId } from './dir-lock.ts'
import { LmdbKv } from './lmdb-kv.ts'

export const RUN_FILE = 'RUN'
/** Directories moved aside are named `<dir>.unclean-<time>`; only the newest is kept. */
const ASIDE = '.unclean-'

/** What opening found: null, or where a directory that may be damaged was moved and why. */
export interface StateDirCheck { movedTo: string, why: string }

function readRun (dir: string): { boot: string, state: string } | null {
  try {
    // "<boot id> <open|clean>"; the boot id is empty where /proc has none (not trimmed away)
    const [boot = '', state = ''] = readFileSync(join(dir, RUN_FILE), 'utf8').split('\n')[0].split(' ')
    return { boot, state }
  } catch { return null }
}

function writeRun (dir: string, boot: string, state: 'open' | 'clean'): void {
  const fd = openSync(join(dir, RUN_FILE), 'w')
  try { writeSync(fd, `${boot} ${state}\n`); fsyncSync(fd) } finally { closeSync(fd) }
  const d = openSync(dir, 'r')
  try { fsyncSync(d) } finally { closeSync(d) }
}

/** Call before the state store opens: moves a directory that may be damaged aside (keeping only the
 * newest such copy), creates the directory, and marks it open by this boot. */
export function openStateDir (dir: string, boot: string = bootId(), now: Date = new Date(), unreadable: (dir: string) => string | null = readThrough): StateDirCheck | null {
  let moved: StateDirCheck | null = null
  const run = readRun(dir)
  let why: string | null = null
  if (run !== null && run.state !== 'clean' && run.boot !== '' && boot !== '' && run.boot !== boot) {
    why = `it was open when the machine last went down (boot ${run.boot}; now boot ${boot}), and its commits are not flushed one by one, so it may be damaged`
  } else if (existsSync(join(dir, 'data.mdb'))) {
    const problem = unreadable(dir)
    if (problem !== null) why = `it cannot be read through (${problem})`
  }
  if (why !== null) {
    const parent = dirname(dir)
    const aside = `${dir}${ASIDE}${now.toISOString().replace(/[:.]/g, '-')}`
    for (const f of readdirSync(parent)) if (f.startsWith(basename(dir) + ASIDE)) rmSync(join(parent, f), { recursive: true, force: true })
    renameSync(dir, aside)
    moved = { movedTo: aside, why }
  }
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true })
  writeRun(dir, boot, 'open')
  return moved
}

/** How long the read-through may take (a state of tens of MB reads in well under a second). */
export const READ_THROUGH_TIMEOUT_MS = 120_000

// Plain CommonJS run by `node -e`: lmdb resolved from here, so it works from any working directory.
const LMDB_PATH = createRequire(import.meta.url).resolve('lmdb')
const READ_THROUGH = `
const { open } = require(${JSON.stringify(LMDB_PATH)})
const env = open({ path: process.argv[1], readOnly: true, maxDbs: ${TABLES.length + 2}, encoding: 'binary' })
let n = 0
for (const name of process.argv.slice(2)) {
  let db
  try { db = env.openDB(name, { encoding: 'binary', keyEncoding: 'binary' }) } catch (e) { if (/not ?found/i.test(String(e && e.message))) continue; throw e }
  for (const { value } of db.getRange({})) n += value.length
}
process.stdout.write(String(n))
`

/** null when a child process could open `dir`'s LMDB store and read every record of every table
 * (or could not be started at all); else what went wrong (a signal, an exit code, LMDB's message,
 * a read that never ended). */
export function readThrough (dir: string): string | null {
  const r = spawnSync(process.execPath, ['-e', READ_THROUGH, dir, ...TABLES, '_flush'], { encoding: 'utf8', timeout: READ_THROUGH_TIMEOUT_MS })
  // a reader that could not be started says nothing about the store: kept, as without the check
  if (r.error != null && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') return null
  if (r.error != null) return `reading it took longer than ${READ_THROUGH_TIMEOUT_MS / 1000} s`
  if (r.signal != null) return `reading it killed the reader with ${r.signal}`
  if (r.status !== 0) return `reading it failed: ${(r.stderr ?? '').trim().split('\n').filter((l) => /Error|error/.test(l)).slice(-1)[0] ?? `exit ${String(r.status)}`}`
  return null
}

/** Call after the state store's last commit was flushed and it is closed. */
export function closeStateDir (dir: string, boot: string = bootId()): void {
  writeRun(dir, boot, 'clean')
}

/** The daemon's state store, DATA_DIR/state, opened after the check above; `onMoved` hears of a
 * directory moved aside. */
export function openStateStore (dataDir: string, onMoved?: (m: StateDirCheck) => void, boot: string = bootId()): LmdbKv {
  const dir = join(dataDir, 'state')
  const moved = openStateDir(dir, boot)
  if (moved !== null) onMoved?.(moved)
  return LmdbKv.open(dir, { sync: 'lazy' })
}

/** Flushes and closes the state store and marks its directory clean; if the flush fails (told to
 * `onError`), it stays marked open, so that a start after a reboot rebuilds it. */
export function closeStateStore (kv: LmdbKv, dataDir: string, onError?: (err: unknown) => void, boot: string = bootId()): void {
  let flushed = false
  try { kv.flush(); flushed = true } catch (err) { onError?.(err) }
  kv.close()
  if (flushed) closeStateDir(join(dataDir, 'state'), boot)
}
