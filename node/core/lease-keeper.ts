// The leader side of node liveness (rules: node/core/lease-rules.ts), driven by the daemon
// (node/ha/service.ts) and the simulator (sim/ha.ts) with their own clocks: it collects the
// renewals nodes send in one interval into one RenewLeases command, notes when it saw each node's
// lease renewed in the committed state, and names the nodes to mark down (MarkNodeDown with the
// epoch and renewal seq it judged). No timers, no I/O: the caller proposes and answers.
import type { Command } from '../../protocols/commands.ts'
import type { NodeRecord } from '../../protocols/model.ts'
import { expiredNodes } from './liveness.ts'
import type { MarkDown } from './liveness.ts'
import type { LeaseSettings } from './lease-rules.ts'

/** Renewals one RenewLeases entry carries at most (more wait for the next flush). */
export const MAX_RENEWALS_PER_ENTRY = 1_024

interface Seen { epoch: number, seq: number, at: number }

export class LeaseKeeper {
  private electedAt: number | null = null
  /** the committed nodes were looked at since the election: one first seen later registered since */
  private looked = false
  /** per node: the (epoch, seq) this leader last saw committed, and when (its monotonic clock) */
  private readonly seen = new Map<string, Seen>()
  private queue = new Map<string, number>()
  /** MarkNodeDown proposed and not yet seen applied: not proposed again for the same judgement */
  private readonly marking = new Set<string>()

  constructor (readonly self: string, readonly settings: LeaseSettings) {}

  /** Leadership changed: a new term of leadership counts every lease from its first moment (rule 3). */
  leadership (isLeader: boolean, now: number): void {
    if (isLeader && this.electedAt === null) this.electedAt = now
    if (!isLeader) { this.electedAt = null; this.looked = false; this.seen.clear(); this.queue.clear(); this.marking.clear() }
  }

  isLeading (): boolean { return this.electedAt !== null }

  /** A node's renewal request (its identity checked by the caller). The latest epoch per node wins. */
  enqueue (node: string, epoch: number): void { this.queue.set(node, epoch) }

  /** The batch to propose now, or null if nobody asked. */
  takeBatch (): Extract<Command, { type: 'RenewLeases' }> | null {
    if (this.queue.size === 0) return null
    const leases: Array<{ node: string, epoch: number }> = []
    for (const [node, epoch] of this.queue) {
      if (leases.length >= MAX_RENEWALS_PER_ENTRY) break
      leases.push({ node, epoch })
      this.queue.delete(node)
    }
    return { type: 'RenewLeases', leases, leaseMs: this.settings.leaseMs }
  }

  /**
   * Note what the committed state says now. A node whose (epoch, seq) changed since last look was
   * renewed (or marked down) in between: counted as seen now — never earlier than the commit, so
   * never earlier than the truth. The nodes of the first look after the election count from the
   * election (rule 3); a node that appears later (registered since) counts from when it appeared:
   * counting it from the election marked it down before its first renewal could commit (seen at
   * cluster start on a loaded host: both joiners down within 1 s of registering). Called often (each
   * liveness tick) and after each batch commits.
   */
  observe (nodes: readonly NodeRecord[], now: number): void {
    if (this.electedAt === null) return
    for (const n of nodes) {
      const epoch = n.leaseEpoch ?? 0
      const seq = n.leaseSeq ?? 0
      const s = this.seen.get(n.id)
      if (s === undefined) this.seen.set(n.id, { epoch, seq, at: this.looked ? now : this.electedAt })
      else if (s.epoch !== epoch || s.seq !== seq) { this.seen.set(n.id, { epoch, seq, at: now }); this.marking.delete(n.id) }
    }
    this.looked = true
  }

  /** The MarkNodeDown commands due now (each node once per judgement), with the leader's reasons. */
  due (nodes: readonly NodeRecord[], now: number, wallNow: number): Array<{ cmd: Extract<Command, { type: 'MarkNodeDown' }>, why: MarkDown }> {
    if (this.electedAt === null) return []
    this.observe(nodes, now)
    const leases = nodes.map((n) => {
      const s = this.seen.get(n.id)
      return { node: n.id, epoch: n.leaseEpoch ?? 0, down: n.liveness === 'down', renewedSeenAt: s?.at ?? null }
    })
    const out: Array<{ cmd: Extract<Command, { type: 'MarkNodeDown' }>, why: MarkDown }> = []
    for (const m of expiredNodes({ now, electedAt: this.electedAt, leases, settings: this.settings, self: this.self })) {
      if (this.marking.has(m.node)) continue
      const s = this.seen.get(m.node)
      if (s === undefined) continue
      this.marking.add(m.node)
      out.push({ cmd: { type: 'MarkNodeDown', node: m.node, epoch: s.epoch, seq: s.seq, expiredAt: Math.max(0, Math.round(wallNow - (now - m.expiredAt))), reason: m.why }, why: m })
    }
    return out
  }

  /** A MarkNodeDown did not commit (lost leadership, refused): it may be judged again. */
  markFailed (node: string): void { this.marking.delete(node) }
}
