// The host side of node liveness (rules: node/core/lease-rules.ts), as one object both the daemon
// (node/ha/service.ts) and the simulator (sim/ha.ts) drive with their own clock: when to renew, with
// which epoch, whether the host must first stop every guest (it was marked down: it rejoins only
// with no old guest running), where the fence deadline stands after an acknowledged renewal, and
// whether the agent may start a guest now. No timers, no I/O: the caller sends, kills and writes
// the watchdog's heartbeat.
import type { NodeRecord } from '../../protocols/model.ts'
import { ackRenewal, fenceVerdict } from './fence.ts'
import type { FenceVerdict } from './fence.ts'
import { hostFenceAfterMs } from './lease-rules.ts'
import type { LeaseSettings } from './lease-rules.ts'

export type RenewPlan =
  | { kind: 'wait', why: string }
  /** stop every guest on this host first (and see them gone), then renew with `epoch` */
  | { kind: 'cleanup', epoch: number, why: string }
  | { kind: 'renew', epoch: number }

export class LeaseHolder {
  /** monotonic ms at which the newest acknowledged renewal was sent */
  private lastAckedSentAt: number | null = null
  /** the epoch of the newest acknowledged renewal (null: none since this daemon started) */
  private ackedEpoch: number | null = null
  /** the epoch whose guests were cleaned up (see plan) */
  private cleanedEpoch: number | null = null

  constructor (readonly settings: LeaseSettings, private readonly startedAt: number) {}

  /**
   * What to do at a renewal tick, given this node's record in the local replica. A node marked down
   * (or whose epoch moved past the one it renewed with) has had its VMs rescheduled elsewhere: it
   * must stop everything it still runs before it renews with the new epoch and becomes ready again.
   */
  plan (rec: NodeRecord | undefined): RenewPlan {
    if (rec === undefined) return { kind: 'wait', why: 'this node is not registered yet' }
    const epoch = rec.leaseEpoch ?? 0
    const moved = this.ackedEpoch !== null && epoch !== this.ackedEpoch
    if ((rec.liveness === 'down' || moved) && this.cleanedEpoch !== epoch) {
      return { kind: 'cleanup', epoch, why: rec.liveness === 'down' ? `this node was marked down (${rec.downReason ?? 'lease expired'})` : `this node's lease epoch moved from ${this.ackedEpoch ?? '-'} to ${epoch}` }
    }
    return { kind: 'renew', epoch }
  }

  /** Every guest is gone: renewals with `epoch` may go out. */
  cleanedUp (epoch: number): void { this.cleanedEpoch = epoch }

  /** The leader acknowledged (committed) a renewal sent at `sentAt` with `epoch`; returns the new fence deadline. */
  acked (sentAt: number, epoch: number): number {
    if (this.ackedEpoch !== null && epoch !== this.ackedEpoch) this.lastAckedSentAt = null // a new incarnation starts afresh
    this.ackedEpoch = epoch
    this.cleanedEpoch = epoch
    this.lastAckedSentAt = ackRenewal(this.lastAckedSentAt, sentAt)
    return this.deadline()
  }

  /** The fence deadline on this host's monotonic clock: the last acked send plus the host's share of the lease. */
  deadline (): number {
    return (this.lastAckedSentAt ?? this.startedAt) + hostFenceAfterMs(this.settings)
  }

  verdict (now: number): FenceVerdict {
    return fenceVerdict(now, this.lastAckedSentAt, this.startedAt, this.settings)
  }

  /**
   * Why the agent may not start a guest now, or null. Only while a renewal with the record's epoch
   * is acknowledged and its lease has not run out here: a daemon just started (which may hold an
   * old replica), one cut off, or one marked down starts nothing.
   */
  mayRun (now: number, rec: NodeRecord | undefined): string | null {
    if (this.ackedEpoch === null || this.lastAckedSentAt === null) return 'no lease yet: waiting for the first acknowledged renewal'
    if (rec === undefined) return 'this node is not registered'
    if (rec.liveness === 'down') return 'this node is marked down: it rejoins first'
    if ((rec.leaseEpoch ?? 0) !== this.ackedEpoch) return `lease epoch ${rec.leaseEpoch ?? 0} not renewed yet`
    const v = this.verdict(now)
    return v.kind === 'fence' ? `lease lost: ${v.why}` : null
  }
}
