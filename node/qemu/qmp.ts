// A QMP client over QEMU's unix socket: greeting, capability negotiation,
// commands matched to replies by id, and the asynchronous event stream.
// QEMU serves one QMP client per socket at a time: a second connect waits in
// the listen backlog until the first closes, which shows here as a greeting timeout.
import { createConnection, type Socket } from 'node:net'
import { QemuError } from './errors.ts'
import { failpoint } from '../../storage/failpoints.ts'
import { pushable } from 'it-pushable'

export interface QmpGreeting {
  version: { qemu: { major: number, minor: number, micro: number }, package: string }
  capabilities: string[]
}

export interface QmpEvent {
  event: string
  data?: Record<string, unknown>
  timestamp: { seconds: number, microseconds: number }
}

export interface QmpConnectOptions {
  /** bounds the whole connect: retries while the socket is absent, greeting, negotiation */
  timeoutMs?: number
  /** default bound for each execute() */
  commandTimeoutMs?: number
  /** stops the retries (e.g. the qemu already exited) */
  signal?: AbortSignal
}

export const QMP_CONNECT_TIMEOUT_MS = 5_000
export const QMP_COMMAND_TIMEOUT_MS = 5_000
const RETRY_MS = 20
/** a reply line longer than this is not QMP talking */
const MAX_LINE = 4 * 1024 * 1024

interface Pending {
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

type Reply =
  | { QMP: QmpGreeting }
  | { return: unknown, id?: string }
  | { error: { class: string, desc: string }, id?: string }
  | QmpEvent

async function openSocket (path: string, deadline: number, signal?: AbortSignal): Promise<Socket> {
  for (;;) {
    if (signal?.aborted === true) throw new QemuError('QmpClosed', `QMP connect ${path}: aborted`)
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path)
        s.once('connect', () => { s.removeAllListeners('error'); resolve(s) })
        s.once('error', reject)
      })
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // absent or not yet listening: qemu is still starting
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() + RETRY_MS > deadline) {
        throw new QemuError(code === 'ENOENT' || code === 'ECONNREFUSED' ? 'Timeout' : 'QmpClosed', `QMP connect ${path}: ${(e as Error).message}`)
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS))
    }
  }
}

export class QmpClient {
  readonly path: string
  greeting: QmpGreeting | null = null
  private readonly sock: Socket
  private readonly commandTimeoutMs: number
  private buf = ''
  private nextId = 1
  private readonly pending = new Map<string, Pending>()
  private readonly eventListeners = new Set<(e: QmpEvent) => void>()
  private readonly closeListeners = new Set<(err: Error | null) => void>()
  private greetingWaiter: ((g: QmpGreeting) => void) | null = null
  private closeError: Error | null = null
  private isClosed = false
  private closing = false

  private constructor (path: string, sock: Socket, commandTimeoutMs: number) {
    this.path = path
    this.sock = sock
    this.commandTimeoutMs = commandTimeoutMs
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => { this.onData(d) })
    sock.on('error', (e) => { this.closeError = new QemuError('QmpClosed', `QMP ${path}: ${e.message}`) })
    sock.on('close', () => {
      if (!this.closing && this.closeError == null) this.closeError = new QemuError('QmpClosed', `QMP ${path} closed by qemu`)
      this.onClosed()
    })
  }

  /** Connects (retrying while qemu has not created the socket yet), reads the
   * greeting and leaves capability negotiation mode. */
  static async connect (path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? QMP_CONNECT_TIMEOUT_MS
    const deadline = Date.now() + timeoutMs
    const sock = await openSocket(path, deadline, opts.signal)
    const c = new QmpClient(path, sock, opts.commandTimeoutMs ?? QMP_COMMAND_TIMEOUT_MS)
    try {
      c.greeting = await new Promise<QmpGreeting>((resolve, reject) => {
        const t = setTimeout(() => { reject(new QemuError('Timeout', `QMP ${path}: no greeting within ${timeoutMs} ms (another client connected?)`)) }, Math.max(1, deadline - Date.now()))
        c.greetingWaiter = (g) => { clearTimeout(t); resolve(g) }
        c.onClose((err) => { clearTimeout(t); reject(err ?? new QemuError('QmpClosed', `QMP ${path} closed before its greeting`)) })
      })
      await c.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, deadline - Date.now()) })
      return c
    } catch (e) {
      await c.close()
      throw e
    }
  }

  get closed (): boolean { return this.isClosed }

  /** Runs a command; resolves with its `return` value, rejects with QmpError, Timeout or QmpClosed. */
  async execute (command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (this.isClosed) throw new QemuError('QmpClosed', `QMP ${this.path} is closed`)
    const id = `blx-${this.nextId++}`
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs
    return await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new QemuError('Timeout', `QMP ${command}: no reply within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
      const msg = args == null ? { execute: command, id } : { execute: command, arguments: args, id }
      // failpoint qemu.qmp (storage/failpoints.ts): qemu never answers; the timer above times it out
      if (failpoint('qemu.qmp') == null) this.sock.write(JSON.stringify(msg) + '\n')
    })
  }

  onEvent (fn: (e: QmpEvent) => void): () => void {
    this.eventListeners.add(fn)
    return () => { this.eventListeners.delete(fn) }
  }

  /** Called once when the connection ends: null after close(), the error otherwise. */
  onClose (fn: (err: Error | null) => void): () => void {
    if (this.isClosed) { queueMicrotask(() => { fn(this.closeError) }); return () => {} }
    this.closeListeners.add(fn)
    return () => { this.closeListeners.delete(fn) }
  }

  /** Resolves with the next event of that name. */
  async waitForEvent (name: string, timeoutMs: number): Promise<QmpEvent> {
    return await new Promise<QmpEvent>((resolve, reject) => {
      const off = this.onEvent((e) => { if (e.event === name) { done(); resolve(e) } })
      const offClose = this.onClose((err) => { done(); reject(err ?? new QemuError('QmpClosed', `QMP closed before ${name}`)) })
      const t = setTimeout(() => { done(); reject(new QemuError('Timeout', `no ${name} event within ${timeoutMs} ms`)) }, timeoutMs)
      function done (): void { off(); offClose(); clearTimeout(t) }
    })
  }

  /** An async iterator over events; it ends when the connection closes. */
  events (): AsyncIterableIterator<QmpEvent> {
    const queue = pushable<QmpEvent>({ objectMode: true, onEnd: () => { off(); offClose() } })
    const off = this.onEvent((e) => { queue.push(e) })
    const offClose = this.onClose(() => { queue.end() })
    return queue
  }

  async close (): Promise<void> {
    if (this.isClosed) return
    this.closing = true
    await new Promise<void>((resolve) => {
      this.sock.once('close', () => { resolve() })
      this.sock.end()
      setTimeout(() => { this.sock.destroy() }, 200).unref()
    })
  }

  private onData (d: string): void {
    this.buf += d
    if (this.buf.length > MAX_LINE && !this.buf.includes('\n')) {
      this.closeError = new QemuError('QmpClosed', `QMP ${this.path}: line longer than ${MAX_LINE} bytes`)
      this.sock.destroy()
      return
    }
    let nl: number
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim()
      this.buf = this.buf.slice(nl + 1)
      if (line === '') continue
      let msg: Reply
      try { msg = JSON.parse(line) as Reply } catch { continue } // not ours to crash on
      this.dispatch(msg)
    }
  }

  private dispatch (msg: Reply): void {
    if ('QMP' in msg) { this.greetingWaiter?.(msg.QMP); this.greetingWaiter = null; return }
    if ('event' in msg) { for (const fn of [...this.eventListeners]) fn(msg); return }
    const id = typeof msg.id === 'string' ? msg.id : null
    const p = id != null ? this.pending.get(id) : undefined
    if (p == null || id == null) return
    this.pending.delete(id)
    clearTimeout(p.timer)
    if ('error' in msg) p.reject(new QemuError('QmpError', `QMP ${msg.error.class}: ${msg.error.desc}`))
    else p.resolve(msg.return)
  }

  private onClosed (): void {
    if (this.isClosed) return
    this.isClosed = true
    const err = this.closeError
    for (const [, p] of this.pending) {
      clearTimeout(p.timer)
      p.reject(err ?? new QemuError('QmpClosed', `QMP ${this.path} closed`))
    }
    this.pending.clear()
    for (const fn of [...this.closeListeners]) fn(err)
    this.closeListeners.clear()
  }
}
