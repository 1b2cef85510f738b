// What every command handler gets: the open transaction and the proposer's clock.
// A handler rejects by throwing BlixardError; the state machine then rolls everything back.
import type { ErrorKind } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'
import type { KvTx } from './kv.ts'

export interface ApplyContext {
  tx: KvTx
  /** envelope.at: the only clock apply may read */
  at: number
}

export function reject (kind: ErrorKind, message: string): never {
  throw new BlixardError(kind, message)
}
