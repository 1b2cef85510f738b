// Leader side of node liveness (rules: node/core/lease-rules.ts). Pure: the caller passes what the
// committed state says and its own monotonic clock; this answers which nodes to mark down now.
import { leaderDownAfterMs } from './lease-rules.ts'
import type { LeaseSettings } from './lease-rules.ts'

export interface NodeLease {
  node: string
  /** the node's current epoch in the committed state */
  epoch: number
  /** already marked down in the committed state (nothing more to do until it re-registers) */
  down: boolean
  /** leader's monotonic ms when it saw this node's latest renewal committed; null if never this term */
  renewedSeenAt: number | null
}

export interface LivenessInput {
  /** leader's monotonic clock now */
  now: number
  /** leader's monotonic ms at which it became leader: every lease counts as renewed then (rule 3) */
  electedAt: number
  leases: readonly NodeLease[]
  settings: LeaseSettings
  /** the leader itself never marks itself down (it renews to itself) */
  self: string
}

export interface MarkDown {
  node: string
  /** the epoch judged expired: MarkNodeDown with this epoch is a no-op if the node renewed since */
  epoch: number
  /** leader's monotonic ms at which the lease ran out by the leader's rule */
  expiredAt: number
  why: string
}

/** The nodes whose lease has run out by the leader's rule, oldest expiry first. */
export function expiredNodes (inp: LivenessInput): MarkDown[] {
  const after = leaderDownAfterMs(inp.settings)
  const out: MarkDown[] = []
  for (const l of inp.leases) {
    if (l.down || l.node === inp.self) continue
    // A renewal seen before this leader's election does not count (the old leader's clock is not
    // ours); the election instant is the earliest moment this leader may count from.
    const from = Math.max(inp.electedAt, l.renewedSeenAt ?? inp.electedAt)
    const expiredAt = from + after
    if (inp.now >= expiredAt) {
      out.push({ node: l.node, epoch: l.epoch, expiredAt, why: `lease expired: no renewal for ${inp.now - from} ms (limit ${after} ms)` })
    }
  }
  return out.sort((a, b) => a.expiredAt - b.expiredAt || (a.node < b.node ? -1 : 1))
}

/** When the next node could expire (for the caller's timer), or null if none is live. */
export function nextExpiry (inp: Omit<LivenessInput, 'now'>): number | null {
  const after = leaderDownAfterMs(inp.settings)
  let next: number | null = null
  for (const l of inp.leases) {
    if (l.down || l.node === inp.self) continue
    const at = Math.max(inp.electedAt, l.renewedSeenAt ?? inp.electedAt) + after
    if (next == null || at < next) next = at
  }
  return next
}
