// Structured logs: one JSON object per line on stderr, so journald and log
// shippers can index fields. `BLIXARD_LOG=debug|info|warn|error` sets the level.

export type Level = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export type Fields = Record<string, unknown>

export interface Logger {
  debug (msg: string, fields?: Fields): void
  info (msg: string, fields?: Fields): void
  warn (msg: string, fields?: Fields): void
  error (msg: string, fields?: Fields): void
  child (fields: Fields): Logger
}

export interface LoggerOptions {
  level?: Level
  write?: (line: string) => void
  now?: () => Date
}

function levelFromEnv (): Level {
  const v = process.env.BLIXARD_LOG
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : 'info'
}

function serializable (v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message, ...(('kind' in v) ? { kind: (v as { kind: unknown }).kind } : {}) }
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Uint8Array) return `<${v.length} bytes>`
  return v
}

export function createLogger (base: Fields = {}, opts: LoggerOptions = {}): Logger {
  const min = ORDER[opts.level ?? levelFromEnv()]
  const write = opts.write ?? ((line: string) => { process.stderr.write(line + '\n') })
  const now = opts.now ?? (() => new Date())
  const emit = (level: Level, msg: string, fields?: Fields): void => {
    if (ORDER[level] < min) return
    const rec: Record<string, unknown> = { ts: now().toISOString(), level, msg, ...base }
    if (fields != null) for (const [k, v] of Object.entries(fields)) rec[k] = serializable(v)
    let line: string
    try { line = JSON.stringify(rec) } catch { line = JSON.stringify({ ts: rec.ts, level, msg, note: 'unserializable fields' }) }
    write(line)
  }
  return {
    debug: (m, f) => { emit('debug', m, f) },
    info: (m, f) => { emit('info', m, f) },
    warn: (m, f) => { emit('warn', m, f) },
    error: (m, f) => { emit('error', m, f) },
    child: (fields) => createLogger({ ...base, ...fields }, opts)
  }
}

/** A logger that drops everything (tests that assert on behaviour, not logs). */
export const silentLogger: Logger = createLogger({}, { write: () => {} })
