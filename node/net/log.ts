// The network layer's log sink: one structured line per event. Injected so that the daemon can
// route it into its own logger and tests can assert on named errors.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type NetLog = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void

/** JSON lines on stderr, debug suppressed unless BLIXARD_DEBUG is set. */
export const stderrLog: NetLog = (level, event, fields) => {
  if (level === 'debug' && process.env.BLIXARD_DEBUG == null) return
  process.stderr.write(JSON.stringify({ t: new Date().toISOString(), level, event, ...fields }) + '\n')
}

/** An error as log fields: its kind when it has one, else its name. */
export function errFields (err: unknown): Record<string, unknown> {
  const e = err as { kind?: unknown, name?: unknown, message?: unknown } | null
  return { error: e?.kind ?? e?.name ?? 'Error', message: String(e?.message ?? err) }
}
