// What every command handler gets: the open transaction and the proposer's clock.
// A handler rejects by throwing (reject()); the state machine then rolls everything back.
import type { ErrorKind } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'
import type { KvTx } from './kv.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'

export interface ApplyContext {
  tx: KvTx
  /** envelope.at: the only clock apply may read */
  at: number
  /** the verified signer of the command (protocols/auth.ts), when it carries one */
  signer?: string
  /** planted bugs, the simulator's only (StateMachineOptions.bugs) */
  bugs?: ReadonlySet<PreemptBug>
}

/** A command's rejection: stackless (BlixardError.quiet), since rejections are ordinary outcomes
 * and capturing a stack for each one showed in profiles. */
export function reject (kind: ErrorKind, message: string): never {
  throw BlixardError.quiet(kind, message)
}
