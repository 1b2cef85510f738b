// High availability in the daemon: the shell around the pure lease cores.
//
// On every node:
//   - every renewEveryMs, ask the leader to renew this node's lease (internal.renewLease; the leader
//     itself renews through its own batcher); each acknowledged renewal moves the fence deadline,
//     which goes to the fence watchdog (node/ha/watchdog.ts), a process apart that SIGKILLs this
//     host's QEMUs when the deadline passes — also when this daemon is dead, stopped or hung;
//   - the daemon itself kills its guests at the same deadline (it may be alive but cut off), and
//     the agent starts no guest unless a lease is held (LeaseHolder.mayRun);
//   - a node marked down (its VMs went elsewhere) stops every guest it still runs before it renews
//     with its new epoch and comes back ready.
// On the leader:
//   - renewals received in one RENEW_BATCH_MS window go into one RenewLeases entry;
//   - every LIVENESS_TICK_MS it marks down the nodes whose lease ran out by its own clock; the
//     MarkNodeDown entry itself puts their VMs back to pending, and the scheduler places them.
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import type { ParamsOf, ResultOf } from '../../protocols/rpc.ts'
import type { MarkDownResult, RenewResult } from '../../storage/apply-ha.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import { LeaseHolder } from '../core/lease-holder.ts'
import { LeaseKeeper } from '../core/lease-keeper.ts'
import { DEFAULT_LEASE, fenceStopBudgetMs, hostFenceAfterMs } from '../core/lease-rules.ts'
import type { LeaseSettings } from '../core/lease-rules.ts'
import { killAllGuests, monotonicMs, WATCHDOG_POLL_MS } from '../fence-watchdog.ts'
import { execSystemctl, stopBudget } from './microvm-fence.ts'
import type { Logger } from '../log.ts'
import { FenceWatchdog } from './watchdog.ts'
import { startSystemdWatchdog } from './systemd-watchdog.ts'
import { BlixardError } from '../../protocols/errors.ts'

/** The leader collects renewals this long before proposing them as one entry. */
export const RENEW_BATCH_MS = 250
/** How often the leader looks for expired leases, and the host at its own deadline. */
export const LIVENESS_TICK_MS = 100
/** Renewals in flight at once: a slow one (a loaded leader, a new connection) must not hold back
 * the next, which may be answered first; each moves the deadline from its own send time. */
export const MAX_RENEWALS_IN_FLIGHT = 3

export interface HaDeps {
  self: () => string
  dataDir: string
  sm: StateMachine
  settings?: Partial<LeaseSettings>
  isLeader: () => boolean
  leaderId: () => string | null
  /** propose a command this node signs (the leader's own decisions) */
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** ask the leader to renew this node's lease */
  callLeader: (leader: string, epoch: number, timeoutMs: number) => Promise<ResultOf<'internal.renewLease'>>
  /** stop every guest on this host now (and see them gone) */
  killGuests?: () => Promise<string[]>
  /** a cluster event (shown by `blixard events` and the dashboard) */
  note: (text: string) => void
  /** the leader marked nodes down: place their VMs now */
  kickScheduler: () => void
  /** this node holds a lease again (first renewal, or after a fence): the agent may start guests */
  kickAgent?: () => void
  log: Logger
}

export class HaService {
  readonly settings: LeaseSettings
  readonly watchdog: FenceWatchdog
  /** how long a fence may take to see this host's guests gone (microvm@ units: SIGKILL half way) */
  readonly stopBudgetMs: number
  private holder: LeaseHolder | null = null
  private keeper: LeaseKeeper
  private readonly waiters = new Map<string, Array<(r: RenewResult | Error) => void>>()
  private timers: NodeJS.Timeout[] = []
  private renewing = 0
  private flushing = false
  private fencedAt: number | null = null
  private stopped = false
  /** mayRun said no since the last acknowledged renewal: tell the agent when it may */
  private refused = false
  private stopSystemdWatchdog: () => void = () => {}

  constructor (private readonly d: HaDeps) {
    this.settings = { ...DEFAULT_LEASE, ...d.settings }
    // the fence of either (the watchdog or this daemon) notices its deadline up to one poll late
    this.stopBudgetMs = Math.max(0, fenceStopBudgetMs(this.settings) - Math.max(WATCHDOG_POLL_MS, LIVENESS_TICK_MS))
    this.watchdog = new FenceWatchdog(d.dataDir, this.stopBudgetMs)
    this.keeper = new LeaseKeeper('', this.settings)
  }

  /** Arm the watchdog before any guest can be started or adopted, then run the loops. */
  async start (): Promise<void> {
    const now = monotonicMs()
    // A previous daemon's deadline stands (its guests may still run): never later than that.
    const prev = await this.watchdog.previousDeadline()
    const initial = Math.min(prev ?? Infinity, now + hostFenceAfterMs(this.settings))
    this.holder = new LeaseHolder(this.settings, initial - hostFenceAfterMs(this.settings))
    await this.watchdog.feed(initial)
    this.keeper = new LeaseKeeper(this.d.self(), this.settings)
    const pid = await this.watchdog.ensure()
    this.d.log.info('fence watchdog armed', { pid, deadlineInMs: initial - now })
    // not this.every(): renewals may overlap (MAX_RENEWALS_IN_FLIGHT)
    this.timers.push(setInterval(() => { void this.renew() }, this.settings.renewEveryMs))
    this.every(LIVENESS_TICK_MS, async () => { await this.fenceTick(); await this.leaderTick() })
    this.every(RENEW_BATCH_MS, async () => await this.flush())
    this.stopSystemdWatchdog = startSystemdWatchdog(process.env, this.d.log)
    void this.renew()
  }

  stop (): void {
    this.stopSystemdWatchdog()
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    // The watchdog stays armed: the guests outlive this daemon only as long as their lease.
  }

  /** For the agent: why no guest may start now, or null. */
  mayRun (): string | null {
    if (this.holder == null) return 'the lease service has not started'
    const why = this.holder.mayRun(monotonicMs(), this.d.sm.getNode(this.d.self()))
    this.refused = this.refused || why != null
    // a guest waits for a lease: ask now rather than at the next renewal tick
    if (why != null && this.renewing === 0) void this.renew()
    return why
  }

  private every (ms: number, fn: () => Promise<void>): void {
    let busy = false
    this.timers.push(setInterval(() => {
      if (busy || this.stopped) return
      busy = true
      fn().catch((err) => { this.d.log.debug('ha loop failed', { err: String(err) }) }).finally(() => { busy = false })
    }, ms))
  }

  private async killGuests (why: string): Promise<void> {
    const killed = await (this.d.killGuests ?? (async () => await killAllGuests(this.d.dataDir, execSystemctl(), stopBudget(this.stopBudgetMs))))()
    // the fence watchdog fires at the same deadline and is often first: say so, the fence still held
    if (killed.length === 0) { this.d.log.info('no guest of this host left to stop (already stopped, or stopped by the fence watchdog)', { why }); return }
    this.d.log.warn('stopped every guest on this host', { why, vms: killed })
    this.d.note(`${this.nameOf(this.d.self())}: stopped ${killed.length} guest(s): ${why}`)
  }

  private nameOf (id: string): string { return this.d.sm.getNode(id)?.name ?? id }

  // ---- this node's own lease ----

  private async renew (): Promise<void> {
    const h = this.holder
    if (h == null || this.renewing >= MAX_RENEWALS_IN_FLIGHT || this.stopped) return
    this.renewing++
    try {
      const plan = h.plan(this.d.sm.getNode(this.d.self()))
      if (plan.kind === 'wait') return
      if (plan.kind === 'cleanup') {
        await this.killGuests(`${plan.why}: no old guest may run when it rejoins`)
        h.cleanedUp(plan.epoch)
      }
      const leader = this.d.leaderId()
      if (leader == null) return
      const sentAt = monotonicMs()
      const r = leader === this.d.self()
        ? await this.receive(this.d.self(), plan.epoch)
        // an answer later than the fence deadline is worth nothing: wait no longer than that
        : await this.d.callLeader(leader, plan.epoch, Math.max(this.settings.renewEveryMs, hostFenceAfterMs(this.settings)))
      if (r.outcome === 'renewed' || r.outcome === 'rejoined') {
        const deadline = h.acked(sentAt, r.epoch)
        await this.watchdog.feed(deadline)
        if (r.outcome === 'rejoined') this.d.note(`${this.nameOf(this.d.self())} rejoined ready (lease epoch ${r.epoch})`)
        this.fencedAt = null
        await this.watchdog.ensure() // it exits after fencing: a fresh one guards the new lease
        if (this.refused) { this.refused = false; this.d.kickAgent?.() }
      } else {
        this.d.log.info('lease renewal refused', { outcome: r.outcome, epoch: plan.epoch, current: r.epoch })
      }
    } catch (err) {
      this.d.log.debug('lease renewal failed', { err: String(err) })
    } finally { this.renewing-- }
  }

  /** The host side of the fence, in the daemon: the watchdog does the same if this loop cannot. */
  private async fenceTick (): Promise<void> {
    const h = this.holder
    if (h == null) return
    const v = h.verdict(monotonicMs())
    if (v.kind !== 'fence' || this.fencedAt === v.deadline) return
    this.fencedAt = v.deadline
    await this.killGuests(`lease lost: ${v.why}`)
  }

  // ---- the leader's side ----

  /** internal.renewLease from `peer` (the stream's authenticated peer id), or this leader itself. */
  async receive (peer: string, epoch: number): Promise<ResultOf<'internal.renewLease'>> {
    if (!this.d.isLeader()) throw new BlixardError('NotLeader', 'this node is not the leader', this.d.leaderId() ?? undefined)
    if (this.d.sm.getNode(peer) == null) throw new BlixardError('Unauthorized', `${peer} is not a registered node: it holds no lease`)
    this.keeper.enqueue(peer, epoch)
    const r = await new Promise<RenewResult | Error>((resolve) => {
      const list = this.waiters.get(peer) ?? []
      list.push(resolve)
      this.waiters.set(peer, list)
    })
    if (r instanceof Error) throw r
    return { outcome: r.outcome, epoch: r.epoch, seq: r.seq }
  }

  /** Handler for the RPC server. */
  handler (): (p: ParamsOf<'internal.renewLease'>, ctx: { peer: string }) => Promise<ResultOf<'internal.renewLease'>> {
    return async (p, ctx) => await this.receive(ctx.peer, p.epoch)
  }

  private async flush (): Promise<void> {
    if (this.flushing) return
    const cmd = this.keeper.takeBatch()
    if (cmd == null) return
    this.flushing = true
    const answer = (node: string, r: RenewResult | Error): void => {
      const list = this.waiters.get(node) ?? []
      this.waiters.delete(node)
      for (const w of list) w(r)
    }
    try {
      const r = await this.d.propose({ cmd, at: Date.now() })
      if (!r.ok) throw new BlixardError(r.error.kind, r.error.message)
      const results = (r.value as { results: RenewResult[] }).results
      for (const x of results) answer(x.node, x)
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      for (const l of cmd.leases) answer(l.node, e)
    } finally { this.flushing = false }
  }

  private async leaderTick (): Promise<void> {
    const now = monotonicMs()
    const leading = this.d.isLeader()
    this.keeper.leadership(leading, now)
    if (!leading) {
      for (const node of [...this.waiters.keys()]) {
        for (const w of this.waiters.get(node) ?? []) w(new BlixardError('NotLeader', 'leadership changed before the renewal committed'))
        this.waiters.delete(node)
      }
      return
    }
    const self = this.d.self()
    const nodes = this.d.sm.listNodes().filter((n) => n.id !== self)
    for (const { cmd, why } of this.keeper.due(nodes, now, Date.now())) void this.markDown(cmd, why.why)
  }

  private async markDown (cmd: Extract<Command, { type: 'MarkNodeDown' }>, why: string): Promise<void> {
    const name = this.nameOf(cmd.node)
    this.d.log.warn('marking a node down', { node: name, epoch: cmd.epoch, why })
    try {
      const r = await this.d.propose({ cmd, at: Date.now() })
      if (!r.ok) throw new Error(`${r.error.kind}: ${r.error.message}`)
      const v = r.value as MarkDownResult
      if (v.outcome === 'down') {
        this.d.note(`node ${name} down: ${why}; ${v.rescheduled.length} VM(s) to reschedule, ${v.stayed.length} left there (restart policy never)`)
        this.d.kickScheduler()
      }
    } catch (err) {
      this.keeper.markFailed(cmd.node)
      this.d.log.info('MarkNodeDown not committed', { node: name, err: String(err) })
    }
  }
}

/** One line for the cluster's events; '' for routine renewals (one every 250 ms would push every
 * other event out of the recent ones); null for a command that is not HA's. */
export function describeHaCommand (cmd: Command, r: ApplyResult, name: (id: string) => string): string | null {
  if (cmd.type === 'RenewLeases') {
    if (!r.ok) return `RenewLeases — rejected: ${r.error.kind}: ${r.error.message}`
    const rejoined = (r.value as { results: RenewResult[] }).results.filter((x) => x.outcome === 'rejoined').map((x) => name(x.node))
    return rejoined.length > 0 ? `node ${rejoined.join(', ')} rejoined ready` : ''
  }
  if (cmd.type === 'MarkNodeDown') {
    if (!r.ok) return `MarkNodeDown ${name(cmd.node)} — rejected: ${r.error.kind}: ${r.error.message}`
    const v = r.value as MarkDownResult
    if (v.outcome === 'stale') return `node ${name(cmd.node)} renewed before it could be marked down (no change)`
    return `node ${name(cmd.node)} down: lease expired at ${new Date(cmd.expiredAt).toISOString()}; VMs to reschedule: ${v.rescheduled.length === 0 ? 'none' : v.rescheduled.map(name).join(', ')}`
  }
  return null
}
