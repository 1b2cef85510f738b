// Follows a growing file (a guest's serial.log): inotify through fs.watch on the
// directory for promptness, plus a slow poll because inotify can miss a file
// that is created, or a directory that is replaced, after the watch began.
import { watch, type FSWatcher } from 'node:fs'
import { open } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { StringDecoder } from 'node:string_decoder'
import { QemuError } from './errors.ts'

const POLL_MS = 200
const CHUNK = 64 * 1024

export interface FileTail {
  stop (): void
  /** reads whatever is new now (also done on every watch event and poll) */
  poke (): Promise<void>
}

/** Calls onText with each new piece of the file, starting at `from` bytes. */
export function tailFile (path: string, onText: (text: string) => void, from = 0): FileTail {
  let offset = from
  let stopped = false
  let reading: Promise<void> | null = null
  let again = false
  const decoder = new StringDecoder('utf8')

  const readNew = async (): Promise<void> => {
    let fh
    try { fh = await open(path, 'r') } catch { return } // not created yet
    try {
      const buf = Buffer.alloc(CHUNK)
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, offset)
        if (bytesRead === 0 || stopped) break
        offset += bytesRead
        const text = decoder.write(buf.subarray(0, bytesRead))
        if (text !== '') onText(text)
      }
    } finally { await fh.close() }
  }
  const poke = async (): Promise<void> => {
    if (stopped) return
    if (reading != null) { again = true; return await reading }
    reading = (async () => {
      do { again = false; await readNew() } while (again && !stopped)
    })().finally(() => { reading = null })
    return await reading
  }

  let watcher: FSWatcher | null = null
  try {
    watcher = watch(dirname(path), (_ev, name) => { if (name == null || name === basename(path)) void poke() })
    watcher.on('error', () => { watcher?.close(); watcher = null })
  } catch { watcher = null } // the poll still works
  const timer = setInterval(() => { void poke() }, POLL_MS)
  timer.unref()
  void poke()
  return {
    stop () { stopped = true; clearInterval(timer); watcher?.close() },
    poke
  }
}

export interface WaitTextOptions {
  timeoutMs: number
  signal?: AbortSignal
  /** rejects the wait early (e.g. the process exited); its value is the error */
  abortWhen?: Promise<Error>
}

/** Resolves with the first non-null result of match() on the file's whole text so far. */
export async function waitForText<T> (path: string, match: (text: string) => T | null, opts: WaitTextOptions): Promise<T> {
  let text = ''
  let tail: FileTail | null = null
  let timer: NodeJS.Timeout | null = null
  let onAbort: (() => void) | null = null
  try {
    return await new Promise<T>((resolve, reject) => {
      tail = tailFile(path, (t) => {
        text += t
        const r = match(text)
        if (r != null) resolve(r)
      })
      timer = setTimeout(() => { reject(new QemuError('Timeout', `no match in ${path} within ${opts.timeoutMs} ms`)) }, opts.timeoutMs)
      onAbort = () => { reject(new QemuError('Timeout', `wait on ${path} aborted`)) }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      // a last read before giving up: the match may be in what was flushed at exit
      opts.abortWhen?.then(async (err) => { await tail?.poke(); reject(err) }, () => {})
    })
  } finally {
    (tail as FileTail | null)?.stop()
    if (timer != null) clearTimeout(timer)
    if (onAbort != null) opts.signal?.removeEventListener('abort', onAbort)
  }
}
