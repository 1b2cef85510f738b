// Commands replicated through Raft and applied by the state machine (storage/state-machine.ts).
// Each is validated and applied atomically, or rejected with a named error that changes nothing.
import type { Infer } from './schema.ts'
import type { COMMAND, ENVELOPE } from './command-schema.ts'

/** Every command, derived from its declaration in protocols/command-schema.ts (where each one's
 * fields, bounds and meaning are written down): the checker and this type cannot drift apart. */
export type Command = Infer<typeof COMMAND>

export type CommandType = Command['type']

/** What the volume reconciler reports on one generation of a volume (storage/apply-volumes.ts). */
export type VolumeReport = 'ready' | 'failed' | 'gone'
export const VOLUME_REPORTS: readonly VolumeReport[] = ['ready', 'failed', 'gone']

/** What a migration's source or target reports (storage/apply-migration.ts says who may report what):
 * target-ready (target: its QEMU listens with -incoming), progress (source: query-migrate figures),
 * source-completed (source: QEMU completed, the source is paused for good: the switchover),
 * target-running (target: its QEMU runs the guest), failed (either: the move cannot go on). */
export const MIGRATION_REPORTS = ['target-ready', 'progress', 'source-completed', 'target-running', 'failed'] as const
export type MigrationReport = typeof MIGRATION_REPORTS[number]

export const JOIN_POLICIES = ['open', 'approve'] as const
export type JoinPolicy = typeof JOIN_POLICIES[number]
/** The join policy of a cluster that never set one: see README "Security model". */
export const DEFAULT_JOIN_POLICY: JoinPolicy = 'open'

/** What goes into a Raft entry's data (protocols/command-schema.ts ENVELOPE): the command, when it
 * was proposed, an optional idempotency key and the signed authority it needs. */
export type CommandEnvelope = Infer<typeof ENVELOPE>

import type { BlixError } from './errors.ts'
export type { BlixError, ErrorKind } from './errors.ts'

/** The message of an Indeterminate answer names the key to retry with in this form. */
export function indeterminateMessage (key: string, why: string): string {
  return `the outcome is unknown (${why}); retry with idempotency key ${key}: it applies at most once`
}

export type ApplyResult =
  | { ok: true, value?: unknown }
  | { ok: false, error: BlixError }
