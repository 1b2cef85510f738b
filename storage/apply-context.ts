// What every command handler gets: the open transaction and the proposer's clock.
// A handler rejects by throwing a Rejection (reject()); the state machine then rolls everything back.
import type { BlixError, ErrorKind } from '../protocols/commands.ts'
import type { KvTx } from './kv.ts'

export interface ApplyContext {
  tx: KvTx
  /** envelope.at: the only clock apply may read */
  at: number
  /** the verified signer of the command (protocols/auth.ts), when it carries one */
  signer?: string
}

/** A command's rejection. Not an Error: rejections are ordinary outcomes, and capturing a stack
 * for each one showed in profiles. */
export class Rejection {
  readonly error: BlixError
  constructor (kind: ErrorKind, message: string) {
    this.error = { kind, message }
  }
}

export function reject (kind: ErrorKind, message: string): never {
  throw new Rejection(kind, message)
}
