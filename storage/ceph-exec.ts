// Runs one ceph/rbd CLI call: argument vector (no shell), hard timeout, failures as RbdError.
import { execFile, spawn } from 'node:child_process'
import type { Readable } from 'node:stream'
import { RbdError, classifyFailure, summaryLine } from './ceph-errors.ts'
import { failpoint } from './failpoints.ts'

/** Bound on one call's stdout (JSON listings of a large pool stay well under it). */
export const MAX_CLI_OUTPUT_BYTES = 64 * 1024 * 1024
/** Extra time the process gets past its own connect timeout before we kill it. */
export const KILL_GRACE_MS = 2000

export interface CliRun {
  stdout: string
  stderr: string
}

/** Run `bin args...`; resolve with its output, or reject with a named RbdError carrying stderr. */
export function runCli (bin: string, args: readonly string[], timeoutMs: number): Promise<CliRun> {
  const what = `${bin} ${args.join(' ')}`
  // failpoint ceph.rbd (storage/failpoints.ts): the call hangs until killed, or the client is fenced
  const fp = failpoint('ceph.rbd')
  if (fp != null) return Promise.reject(injectedFailure(fp.action, what, timeoutMs))
  return new Promise((resolve, reject) => {
    execFile(bin, args, {
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: MAX_CLI_OUTPUT_BYTES,
      encoding: 'utf8',
      // untranslated messages: classifyFailure reads them
      env: { ...process.env, LC_ALL: 'C' }
    }, (err, stdout, stderr) => {
      if (err == null) { resolve({ stdout, stderr }); return }
      const e = err as NodeJS.ErrnoException & { killed?: boolean, signal?: NodeJS.Signals | null, code?: number | string | null }
      if (e.code === 'ENOENT') {
        reject(new RbdError('Unavailable', `${bin} is not installed (install ceph-common)`, { stderr }))
        return
      }
      if (e.killed === true || e.signal != null) {
        reject(new RbdError('Unavailable', `${what}: no answer within ${timeoutMs} ms (killed)`, { stderr }))
        return
      }
      const exit = typeof e.code === 'number' ? e.code : null
      const { kind, errno } = classifyFailure(exit, stderr)
      const line = summaryLine(stderr)
      reject(new RbdError(kind, `${what}: ${line !== '' ? line : `exit ${exit ?? '?'}`}\n${stderr.trim()}`, { errno, stderr }))
    })
  })
}

/** Run `bin args...` whose stdout is data for the caller (`rbd export SPEC -`): the stream, and
 * `done`, which settles when the process ended (a named RbdError when it failed or ran past
 * timeoutMs). The caller reads the stream to its end, or destroys it. */
export function spawnCliStream (bin: string, args: readonly string[], timeoutMs: number): { stdout: Readable, done: Promise<void> } {
  const what = `${bin} ${args.join(' ')}`
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d: string) => { if (stderr.length < 64 * 1024) stderr += d })
  let killed = false
  const timer = setTimeout(() => { killed = true; child.kill('SIGKILL') }, timeoutMs)
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' ? new RbdError('Unavailable', `${bin} is not installed (install ceph-common)`, { stderr }) : err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) { resolve(); return }
      if (killed || signal != null) { reject(new RbdError('Unavailable', `${what}: no end within ${timeoutMs} ms (killed)`, { stderr })); return }
      const { kind, errno } = classifyFailure(code, stderr)
      const line = summaryLine(stderr)
      reject(new RbdError(kind, `${what}: ${line !== '' ? line : `exit ${code ?? '?'}`}\n${stderr.trim()}`, { errno, stderr }))
    })
  })
  return { stdout: child.stdout, done }
}

/** What a failpoint makes a call fail with: the same errors the real failures produce (the
 * blocklisted case goes through the same classification as the CLI's real stderr and exit). */
function injectedFailure (action: string, what: string, timeoutMs: number): RbdError {
  if (action === 'timeout') return new RbdError('Unavailable', `${what}: no answer within ${timeoutMs} ms (killed) (failpoint ceph.rbd)`, { stderr: '' })
  const stderr = `${what.split(' ')[0]}: failpoint ceph.rbd: (108) Cannot send after transport endpoint shutdown\n`
  const { kind, errno } = classifyFailure(108, stderr)
  return new RbdError(kind, `${what}: ${summaryLine(stderr)}\n${stderr.trim()}`, { errno, stderr })
}

/** Parse the first JSON value of a CLI's stdout. Some commands print more than one value
 * (`ceph osd blocklist ls` prints the address list, then the range list). */
export function parseFirstJson (stdout: string, what: string): unknown {
  const text = stdout.trim()
  if (text === '') throw new RbdError('Internal', `${what}: empty output where JSON was expected`)
  try {
    return JSON.parse(text)
  } catch {
    const end = endOfFirstValue(text)
    try {
      if (end > 0) return JSON.parse(text.slice(0, end))
    } catch { /* fall through to the named error */ }
    throw new RbdError('Internal', `${what}: output is not JSON: ${text.slice(0, 200)}`)
  }
}

/** Index just past the first top-level array or object in text, or -1. */
function endOfFirstValue (text: string): number {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (inString) {
      if (ch === '\\') i++
      else if (ch === '"') inString = false
      continue
    }
    if (ch === '"') inString = true
    else if (ch === '[' || ch === '{') depth++
    else if (ch === ']' || ch === '}') {
      depth--
      if (depth === 0) return i + 1
    }
  }
  return -1
}
