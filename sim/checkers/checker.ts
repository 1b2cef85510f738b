// What every checker looks like: it may watch events as they happen (hooks
// called by the cluster) and it judges at the end; each returns violations.
import type { Entry } from '../../protocols/raft/types.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import type { Replica } from '../replica.ts'
import type { History } from '../history.ts'
import type { Cluster } from '../cluster.ts'

export interface Violation {
  checker: string
  /** virtual ms when it was seen */
  at: number
  message: string
}

/** What the final judgement gets to look at. */
export interface FinalView {
  cluster: Cluster
  history: History
  now: number
  /** virtual ms when the last fault healed */
  healedAt: number
}

export interface Checker {
  readonly name: string
  readonly violations: Violation[]
  /** r became leader of `term`; its log (store) already holds the Ready's entries. */
  onLeader?: (r: Replica, term: number, now: number) => void
  /** r saved these entries (not yet necessarily synced). */
  onPersist?: (r: Replica, entries: readonly Entry[], now: number) => void
  /** r applied a committed entry (its state machine reflects it now); `env` and `result` are the
   * decoded command and its outcome (null for a no-op or a conf entry). */
  onApply?: (r: Replica, e: Entry, now: number, env?: CommandEnvelope | null, result?: ApplyResult | null) => void
  /** r took a state-machine snapshot at `index` whose stateHash is `hash`. */
  onSnapshot?: (r: Replica, index: number, hash: string, now: number) => void
  /** Every so often during the run, with the whole cluster in view. */
  onCheckpoint?: (c: Cluster, now: number) => void
  finish?: (v: FinalView) => void
}

/** Base with the bookkeeping every checker shares. */
export abstract class BaseChecker implements Checker {
  abstract readonly name: string
  readonly violations: Violation[] = []
  /** A broken invariant usually breaks many times over; keep the first few. */
  protected static readonly MAX = 5

  protected fail (at: number, message: string): void {
    if (this.violations.length < BaseChecker.MAX) this.violations.push({ checker: this.name, at, message })
  }
}

/** Byte equality of two entry payloads. */
export function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
