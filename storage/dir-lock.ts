// One process at a time in a store directory. The WAL (storage/wal-log-store.ts) appends at the
// offset it remembers, so two daemons started on the same data directory (a unit and a manual run,
// a copied service) would write over each other's batches; LMDB, which the log used before, let
// them share the file. A LOCK file holds the owner's pid, the kernel's start time of that process
// and the boot id: a lock whose process is gone, was restarted (same pid, other start time) or
// lived before a reboot is stale and taken over, so a crash never needs a hand to clean up.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'

export const LOCK_FILE = 'LOCK'

/** Another live process holds the directory. */
export class DirLockedError extends Error {
  constructor (readonly dir: string, readonly pid: number) {
    super(`another process (pid ${pid}) has ${dir} open: stop it first; if no blixard-node uses this data directory, remove ${join(dir, LOCK_FILE)}`)
    this.name = 'DirLockedError'
  }
}

function readOr (file: string, fallback: string): string {
  try { return readFileSync(file, 'utf8').trim() } catch { return fallback }
}

/** Fields of /proc/PID/stat after the command name (field 2, in parentheses, may hold spaces):
 * [0] is the state (field 3), [19] the start time in clock ticks since boot (field 22). */
function statFields (pid: number): string[] {
  const stat = readOr(`/proc/${pid}/stat`, '')
  return stat === '' ? [] : stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

function startTime (pid: number): string {
  return statFields(pid)[19] ?? ''
}

/** This boot's id (empty where /proc does not have it): differs after every reboot or OS crash. */
export const bootId = (): string => readOr('/proc/sys/kernel/random/boot_id', '')

function holderAlive (pid: number, start: string, boot: string): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  if (boot !== '' && bootId() !== '' && boot !== bootId()) return false
  try { process.kill(pid, 0) } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false }
  const f = statFields(pid)
  // a killed daemon its parent has not reaped yet is a zombie: it holds no file any more
  if (f[0] === 'Z' || f[0] === 'X') return false
  const now = f[19] ?? ''
  return start === '' || now === '' || now === start
}

/** Takes `dir`'s lock for this process; throws DirLockedError when a live process holds it. */
export function lockDir (dir: string): void {
  const file = join(dir, LOCK_FILE)
  const mine = `${process.pid} ${startTime(process.pid)} ${bootId()}\n`
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      try { writeSync(fd, mine) } finally { closeSync(fd) }
      return
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const [p, start = '', boot = ''] = readOr(file, '').split(' ')
    const pid = Number(p)
    // our own pid with our own start time: this process opened it before and did not close (or a
    // container's pid 1 again after a restart, whose start time differs and is stale anyway)
    if (pid !== process.pid && holderAlive(pid, start, boot)) throw new DirLockedError(dir, pid)
    try { unlinkSync(file) } catch { /* taken over by someone else meanwhile: try again */ }
  }
  throw new DirLockedError(dir, Number(readOr(file, '0').split(' ')[0]))
}

/** Gives the lock back if this process holds it. */
export function unlockDir (dir: string): void {
  const file = join(dir, LOCK_FILE)
  if (Number(readOr(file, '').split(' ')[0]) === process.pid) {
    try { unlinkSync(file) } catch { /* already gone */ }
  }
}
