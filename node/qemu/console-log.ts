// Reading a guest's console log (serial.log): all of it, its tail, or followed
// as it grows until the guest ends (`blixard vm logs NAME [-f]`).
import { open, stat } from 'node:fs/promises'
import { StringDecoder } from 'node:string_decoder'
import { tailFile } from './file-tail.ts'
import { pushableV } from 'it-pushable'

export interface ConsoleReadOptions {
  /** start this many bytes before the end (default: the whole log) */
  tailBytes?: number
}

export interface ConsoleFollowOptions extends ConsoleReadOptions {
  /** the follow ends when this settles (the qemu exited), after a last read */
  until: Promise<unknown>
  signal?: AbortSignal
}

/** Where to start reading, and the text up to the current end. */
export async function readConsole (path: string, opts: ConsoleReadOptions = {}): Promise<{ text: string, end: number }> {
  let fh
  try { fh = await open(path, 'r') } catch { return { text: '', end: 0 } }
  try {
    const { size } = await fh.stat()
    const from = opts.tailBytes != null ? Math.max(0, size - opts.tailBytes) : 0
    const buf = Buffer.alloc(size - from)
    const { bytesRead } = await fh.read(buf, 0, buf.length, from)
    // a tail may start inside a UTF-8 sequence: the decoder drops nothing it can decode
    return { text: new StringDecoder('utf8').write(buf.subarray(0, bytesRead)), end: from + bytesRead }
  } finally { await fh.close() }
}

/** The last `maxBytes` of a file (all of it when smaller; empty when absent). */
export async function readTail (path: string, maxBytes: number): Promise<Buffer> {
  let fh
  try { fh = await open(path, 'r') } catch { return Buffer.alloc(0) }
  try {
    const { size } = await fh.stat()
    const from = Math.max(0, size - maxBytes)
    const buf = Buffer.alloc(size - from)
    const { bytesRead } = await fh.read(buf, 0, buf.length, from)
    return buf.subarray(0, bytesRead)
  } finally { await fh.close() }
}

/** A file's size, 0 when absent. */
export async function sizeOf (path: string): Promise<number> {
  try { return (await stat(path)).size } catch { return 0 }
}

/** Console text cut into pieces of at most `units` UTF-16 code units, never inside a surrogate
 * pair: each piece is one streamed answer, under the RPC frame limit. */
export function * textPieces (text: string, units: number): Generator<string> {
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + units)
    if (end < text.length && end > at + 1) {
      const c = text.charCodeAt(end - 1)
      if (c >= 0xd800 && c <= 0xdbff) end-- // a high surrogate: its pair goes with it
    }
    yield text.slice(at, end)
    at = end
  }
}

/** Yields the log (or its tail), then every new piece until `until` settles or signal aborts. */
export async function * followConsole (path: string, opts: ConsoleFollowOptions): AsyncGenerator<string> {
  const first = await readConsole(path, opts)
  if (first.text !== '') yield first.text
  const queue = pushableV<string>({ objectMode: true })
  const tail = tailFile(path, (s) => { queue.push(s) }, first.end)
  const end = (): void => { void tail.poke().then(() => { queue.end() }) }
  void opts.until.then(end, end)
  opts.signal?.addEventListener('abort', end, { once: true })
  if (opts.signal?.aborted === true) end()
  try {
    // pushableV hands over everything queued since the last turn: one chunk per turn
    for await (const pieces of queue) {
      const chunk = pieces.join('')
      if (chunk !== '') yield chunk
    }
  } finally {
    tail.stop()
    opts.signal?.removeEventListener('abort', end)
  }
}
