// Every error the CLI prints says what went wrong and what to do next
// (nomad/kubectl style), and maps to a documented exit code.
import type { BlixError, ErrorKind } from '../../protocols/commands.ts'

/** Exit codes, documented in `blixard help exit-codes` and the README. */
export const EXIT = {
  ok: 0,
  error: 1, // an error not listed below
  usage: 2, // bad flags or arguments
  notFound: 3,
  conflict: 4, // already exists, in use, conflict, no capacity
  unavailable: 5, // no node reachable, no leader, timeout
  unauthorized: 6,
  // the command may or may not have applied (Indeterminate), or the same key is still being
  // processed (InFlight): run it again with --idempotency-key KEY (the key is in the message)
  indeterminate: 7
} as const

export function exitCodeFor (kind: ErrorKind): number {
  switch (kind) {
    case 'NotFound': return EXIT.notFound
    case 'AlreadyExists': case 'InUse': case 'Conflict': case 'GenerationMismatch': case 'NoCapacity': case 'QuotaExceeded': return EXIT.conflict
    case 'Indeterminate': case 'InFlight': return EXIT.indeterminate
    case 'NotLeader': case 'Unavailable': case 'Timeout': return EXIT.unavailable
    case 'Unauthorized': return EXIT.unauthorized
    case 'InvalidSpec': case 'InvalidCommand': case 'InvalidParams': case 'BadMessage': case 'UnknownMethod': case 'TooLarge': return EXIT.usage
    default: return EXIT.error
  }
}

const NEXT: Record<ErrorKind, string> = {
  NotLeader: 'The cluster is electing a leader; retry in a few seconds.',
  NotFound: 'Check the name with `blixard vm list`, `blixard nodes` or `blixard volume list`.',
  AlreadyExists: 'Pick another name, or delete the existing object first.',
  InvalidSpec: 'Fix the value named above; `blixard help` shows the accepted forms.',
  InvalidCommand: 'Fix the value named above; `blixard help` shows the accepted forms.',
  InUse: 'Delete or detach what uses it first.',
  NoCapacity: 'Add a node, free resources, or relax the constraints; `blixard vm explain NAME` shows why each node was rejected.',
  Conflict: 'Wait for the operation in progress to finish, then retry.',
  GenerationMismatch: 'Nothing was changed: the object changed since you read it. Read it again (`blixard vm show NAME`) and retry.',
  InFlight: 'The same request is still being processed: wait a few seconds, then run the command again with the --idempotency-key shown above.',
  Indeterminate: 'The change may or may not have been made: run the same command again with the --idempotency-key shown above; it is applied at most once.',
  Unauthorized: 'Ask an admin to run `blixard admin add <your peer id>` (see `blixard whoami`).',
  Unavailable: 'Check that a quorum of nodes is up (`blixard status --stale`), then retry.',
  Timeout: 'The cluster may be overloaded or without quorum; retry, or check `blixard status --stale`.',
  TooLarge: 'Send a smaller request.',
  QuotaExceeded: 'Nothing was created or changed. Free room in the project (delete or shrink its VMs), or ask an admin to raise it: `blixard quota show PROJECT`, `blixard quota set PROJECT ...`.',
  BadMessage: 'The node and the CLI may be different versions; upgrade both.',
  Internal: 'This is a bug in Blixard; please report it with the node logs.',
  UnknownMethod: 'The node and the CLI may be different versions; upgrade both.',
  InvalidParams: 'Fix the value named above; `blixard help` shows the accepted forms.'
}

/** An error the CLI raises itself, with its own next step instead of the kind's generic one. */
export class CliError extends Error {
  constructor (readonly kind: ErrorKind, message: string, readonly next: string) {
    super(message)
    this.name = 'CliError'
  }
}

/** What `--json` prints on stdout for an error: the kind, the message, the next step, the exit code. */
/** `key`: with Indeterminate and InFlight, the idempotency key to run the same command again with. */
export interface JsonError { error: { kind: ErrorKind | 'Usage', message: string, next: string, exitCode: number, key?: string } }

export function nextStep (e: BlixError): string { return NEXT[e.kind] }

export function describe (e: BlixError, next = NEXT[e.kind]): string {
  return `Error: ${e.message}\n${next}`
}
