// The one logger of the tree: one JSON object per line on stderr, so journald and log shippers can
// index fields. The daemon takes its level from the config key `logLevel` (node/config.ts, env
// BLIXARD_LOG_LEVEL); a logger made without a level (tests, tools, a service started alone) reads
// the same variable.

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type Level = typeof LOG_LEVELS[number]
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

/** The one variable that sets the level; the config key `logLevel` reads it too. */
export const LOG_LEVEL_ENV = 'BLIXARD_LOG_LEVEL'
/** Variables that once set a level (the structured logger's and the network layer's): now ignored. */
const RETIRED_LEVEL_ENVS = ['BLIXARD_LOG', 'BLIXARD_DEBUG'] as const
let retiredWarned = false

function levelFromEnv (write: (line: string) => void): Level {
  if (!retiredWarned) {
    const set = RETIRED_LEVEL_ENVS.filter((k) => process.env[k] !== undefined)
    if (set.length > 0) {
      retiredWarned = true
      write(JSON.stringify({ ts: new Date().toISOString(), level: 'warn', msg: 'log.env.ignored', ignored: set, use: LOG_LEVEL_ENV }))
    }
  }
  const v = process.env[LOG_LEVEL_ENV]
  return (LOG_LEVELS as readonly string[]).includes(v ?? '') ? v as Level : 'info'
}

function serializable (v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message, ...(('kind' in v) ? { kind: (v as { kind: unknown }).kind } : {}) }
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Uint8Array) return `<${v.length} bytes>`
  return v
}

export function createLogger (base: Fields = {}, opts: LoggerOptions = {}): Logger {
  const write = opts.write ?? ((line: string) => { process.stderr.write(line + '\n') })
  const min = ORDER[opts.level ?? levelFromEnv(write)]
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

/** An error as log fields: its kind when it has one, else its name. */
export function errFields (err: unknown): Fields {
  const e = err as { kind?: unknown, name?: unknown, message?: unknown } | null
  return { error: e?.kind ?? e?.name ?? 'Error', message: String(e?.message ?? err) }
}

export interface LogRecord { level: Level, msg: string, fields: Fields }

/** A logger at debug level that keeps what it was given (tests that assert on what was logged). */
export function recordingLogger (records: LogRecord[] = []): { log: Logger, records: LogRecord[] } {
  const log = createLogger({}, {
    level: 'debug',
    write: (line) => {
      const { level, msg, ...fields } = JSON.parse(line) as { level: Level, msg: string } & Fields
      records.push({ level, msg, fields })
    }
  })
  return { log, records }
}
