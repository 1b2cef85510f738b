// A thrown form of BlixError: the named error kinds that travel over RPC
// unchanged (protocols/commands.ts) and that the CLI turns into a sentence.
import type { BlixError, ErrorKind } from './commands.ts'

export class BlixardError extends Error {
  readonly kind: ErrorKind
  readonly leader?: string
  constructor (kind: ErrorKind, message: string, leader?: string) {
    super(message)
    this.name = 'BlixardError'
    this.kind = kind
    if (leader != null) this.leader = leader
  }

  toJSON (): BlixError {
    return this.leader != null ? { kind: this.kind, message: this.message, leader: this.leader } : { kind: this.kind, message: this.message }
  }

  static from (e: BlixError): BlixardError {
    return new BlixardError(e.kind, e.message, e.leader)
  }
}

/** Any thrown value as a BlixError (unknown exceptions become Internal). */
export function toBlixError (e: unknown): BlixError {
  if (e instanceof BlixardError) return e.toJSON()
  if (e != null && typeof e === 'object' && 'kind' in e && 'message' in e && typeof (e as { message: unknown }).message === 'string') {
    const kind = (e as { kind: unknown }).kind
    if (kind === 'NotLeader') {
      const hint = (e as { leaderHint?: unknown }).leaderHint
      return typeof hint === 'string' ? { kind, message: (e as { message: string }).message, leader: hint } : { kind, message: (e as { message: string }).message }
    }
  }
  return { kind: 'Internal', message: e instanceof Error ? e.message : String(e) }
}
