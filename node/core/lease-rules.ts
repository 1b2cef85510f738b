// Node liveness lease rules, shared by the leader (node/core/liveness.ts: who is down) and the host
// (node/core/fence.ts: when to stop its own guests). Pure: no clocks are read here, every time is a
// monotonic millisecond count the caller passes in (each side its OWN monotonic clock — no wall clock
// and no comparison of two hosts' clocks anywhere).
//
// The rules (README "When a node dies" states the same):
// 1. A node renews by asking the leader; the leader batches the renewals it got in one interval into
//    ONE Raft entry (a RenewLeases listing {node, epoch}), so a 100-node cluster costs one entry per
//    renew interval, not 100. The renewal is authenticated by the libp2p stream it came over (the
//    peer id is the node's key), the entry is bound to the leader.
// 2. The host's lease runs from the moment it SENT the renewal request that was later acknowledged
//    (committed), measured on its own monotonic clock: that instant precedes the leader's receipt and
//    commit in real time, so the host's deadline always falls before any leader's.
// 3. The leader's lease for a node runs from when it saw that node's renewal committed, on the
//    leader's monotonic clock. A newly elected leader knows nothing of the old leader's clock, so it
//    treats every lease as renewed at its own election (its first moment as leader) — later in real
//    time than any renewal the old leader committed, so never earlier than the truth.
// 4. Every host's monotonic clock runs at a rate within 1 ± `driftRatio` of real time (default 1%; NTP-disciplined or free-running quartz is far better,
//    ~0.01%). Offsets do not matter, only rates, because each side measures an interval on itself.
// 5. Host fences (kills its guests) at   sent + leaseMs × (1 − drift) − fenceMarginMs   (its clock).
//    Leader marks down at                seen + leaseMs × (1 + drift) + downMarginMs    (its clock).
//    A local interval x on a clock whose rate is r ∈ [1 − d, 1 + d] of real time lasts x / r real
//    time, so the host fences no later than sent + leaseMs − fenceMargin (slowest clock) and the
//    leader marks down no earlier than sent + leaseMs + downMargin / (1 + d) (fastest clock) of real
//    time. The margins (≥ the time to SIGKILL the QEMUs and see them gone; a MarkNodeDown commit)
//    keep the two apart: the guests are dead before the VM can be placed elsewhere.
//    So the host's fence has a STOP BUDGET, measured from its deadline on its own clock: the real
//    gap fenceMargin + downMargin / (1 + d), on a clock that may run as slow as 1 − d (fenceStopBudgetMs).
//    A guest the fence cannot see gone within it (a microvm@ unit whose graceful stop takes longer)
//    is SIGKILLed part way through (node/ha/microvm-fence.ts), not waited for.
// 6. Marking down bumps the node's epoch. A renewal carrying an older epoch is refused; a node that
//    sees itself down (or its epoch stale) stops every guest it still runs BEFORE it re-registers
//    with the new epoch and goes back to `ready` — an old guest never resumes.
// 7. Only the leader marks down, through Raft: a deposed leader's MarkNodeDown never commits, and the
//    entry names the epoch it judged, so a stale one (the node renewed with a new epoch since) is a
//    no-op when applied.

export interface LeaseSettings {
  /** how long a renewal keeps a node alive */
  leaseMs: number
  /** how often a node renews (a few renewals fit in one lease, so one lost RPC does not fence) */
  renewEveryMs: number
  /** bound on the relative rate difference of any two hosts' monotonic clocks */
  driftRatio: number
  /** the host fences this long before its lease could end: time to SIGKILL its QEMUs and see them gone */
  fenceMarginMs: number
  /** the leader waits this long past the lease: a MarkNodeDown commit plus scheduling latency */
  downMarginMs: number
}

/**
 * Defaults aimed at ≤ 15 s from a host's death to the reschedule decision: the leader marks down at
 * most leaseMs × 1.01 + downMargin + renewEvery after the host's last renewal = 9.09 + 1 + 3 ≈ 13 s
 * (the worst case: the host died just before its next renewal).
 */
export const DEFAULT_LEASE: LeaseSettings = {
  leaseMs: 9_000,
  renewEveryMs: 3_000,
  driftRatio: 0.01,
  fenceMarginMs: 1_000,
  downMarginMs: 1_000
}

/** Drift above this is a configuration mistake (a clock that slow is broken, not drifting). */
export const MAX_DRIFT_RATIO = 0.1

/** Check lease settings from config; returns the problems, each naming the setting. */
export function leaseSettingsProblems (s: LeaseSettings): string[] {
  const out: string[] = []
  for (const k of ['leaseMs', 'renewEveryMs', 'fenceMarginMs', 'downMarginMs'] as const) {
    if (!Number.isFinite(s[k]) || s[k] < 0) out.push(`${k} must be a non-negative number of ms, got ${String(s[k])}`)
  }
  if (!(s.driftRatio >= 0 && s.driftRatio <= MAX_DRIFT_RATIO)) out.push(`driftRatio must be within 0..${MAX_DRIFT_RATIO}, got ${String(s.driftRatio)}`)
  if (out.length > 0) return out
  if (s.renewEveryMs <= 0) out.push('renewEveryMs must be > 0')
  if (hostFenceAfterMs(s) <= s.renewEveryMs) {
    out.push(`leaseMs ${s.leaseMs} leaves the host ${hostFenceAfterMs(s)} ms before fencing, not more than one renewEveryMs (${s.renewEveryMs}): one late renewal would fence a healthy host`)
  }
  return out
}

/** ms after sending an acked renewal at which the host fences (its own clock). */
export function hostFenceAfterMs (s: LeaseSettings): number {
  return Math.floor(s.leaseMs * (1 - s.driftRatio)) - s.fenceMarginMs
}

/** ms after seeing a renewal (or its election) at which the leader may mark the node down (its clock). */
export function leaderDownAfterMs (s: LeaseSettings): number {
  return Math.ceil(s.leaseMs * (1 + s.driftRatio)) + s.downMarginMs
}

/**
 * How long the host's fence may take, on the host's own clock, from its fence deadline to its guests
 * gone: the real time between the latest the host fences (sent + leaseMs − fenceMargin, rule 5) and
 * the earliest a leader may mark it down (sent + leaseMs + downMargin / (1 + drift)), as measured by a
 * clock that may run as slow as 1 − drift. The fence's own lateness (a poll interval) comes out of it.
 */
export function fenceStopBudgetMs (s: LeaseSettings): number {
  return Math.floor((s.fenceMarginMs + s.downMarginMs / (1 + s.driftRatio)) * (1 - s.driftRatio))
}
