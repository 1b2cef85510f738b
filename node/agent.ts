// The node agent: makes this host's guests match the replicated state. It
// compares the VMs assigned here with what the QEMU driver reports, starts,
// stops, restarts (new spec generation, restart policy with backoff) and
// deletes to match, and reports observed status through Raft in batches.
import type { VmRecord, VmPhase } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { QemuDriver, VmEvent, VmRuntimeStatus } from './qemu/driver.ts'
import { launchSpecFromVm } from './qemu/launch-spec.ts'
import { loadTinyGuest } from './qemu/tiny-guest.ts'
import type { TinyGuest } from './qemu/tiny-guest.ts'
import type { HostBindings } from './qemu/launch-spec.ts'
import type { Logger } from './log.ts'
import type { NodeMetrics } from './metrics.ts'

export interface AgentDeps {
  nodeId: string
  sm: StateMachine
  driver: QemuDriver
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  metrics?: NodeMetrics
  /** where the tiny guest lives (default .guest/ of the checkout) */
  guestDir?: string
  now?: () => number
  reconcileEveryMs?: number
  /** restart backoff: first delay and cap */
  backoffMs?: { first: number, max: number }
  /** the host side of VMs: addresses, TAPs on network bridges, rbd drives (node/host-resources.ts) */
  resources?: { bindings: (vm: VmRecord) => Promise<Omit<HostBindings, 'tinyGuest'>>, reconcile: () => Promise<void> }
  /** why no guest may start on this host now (no liveness lease held: node/ha/service.ts), or null */
  mayRun?: () => string | null
  /** a live migration this host takes part in holds the VM (node/migration/service.ts): the agent
   * neither restarts nor stops the source's guest, nor removes the target's waiting QEMU */
  migrating?: (vmId: string) => boolean
}

interface Observed { phase: VmPhase, reason: string, generation: number, ip?: string }

interface Attempts { count: number, nextAt: number, lastStart: number }

/** Phases the agent owns once a VM is assigned here (pending/scheduled are the scheduler's). */
const STABLE_AFTER_MS = 60_000

export class Agent {
  private timer: NodeJS.Timeout | null = null
  private running = false
  private again = false
  private readonly reported = new Map<string, Observed>()
  private readonly pending = new Map<string, Observed>()
  private readonly attempts = new Map<string, Attempts>()
  private readonly busy = new Set<string>()
  /** VMs this agent saw with desired 'stopped': a later desired 'running' is a start, whatever the policy */
  private readonly stopSeen = new Set<string>()
  private flushTimer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null
  private tiny: TinyGuest | null = null
  private tinyError: string | null = null
  private offEvents: (() => void) | null = null
  private stopped = false

  constructor (private readonly d: AgentDeps) {}

  private now (): number { return (this.d.now ?? Date.now)() }

  async start (): Promise<void> {
    try { this.tiny = await loadTinyGuest(this.d.guestDir) } catch (err) {
      this.tinyError = `no tiny guest on this host (${(err as Error).message}); run scripts/build-tiny-guest.sh`
      this.d.log.warn('tiny guest unavailable', { err })
    }
    // KVM or TCG is probed with a test boot: do it now, not inside the first create's latency
    if (this.tiny != null) void this.d.driver.resolveAccel().catch((err: unknown) => { this.d.log.warn('accelerator probe failed', { err }) })
    this.offEvents = this.d.driver.onEvent((e) => { this.onEvent(e) })
    this.timer = setInterval(() => { this.kick() }, this.d.reconcileEveryMs ?? 1_000)
    this.kick()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
    this.offEvents?.()
    if (this.flushTimer != null) clearTimeout(this.flushTimer)
    this.flushTimer = null
    await this.flush() // the report in flight, if any
    await this.flush() // what was queued meanwhile
  }

  /** Reconcile soon (on a timer, and whenever the replicated state changes). */
  kick (): void {
    if (this.stopped) return
    if (this.running) { this.again = true; return }
    this.running = true
    const t0 = process.hrtime.bigint()
    this.reconcile().catch((err) => { this.d.log.warn('reconcile failed', { err }) }).finally(() => {
      this.d.metrics?.agentReconcileSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9)
      this.running = false
      if (this.again) { this.again = false; this.kick() }
    })
  }

  private async reconcile (): Promise<void> {
    await this.d.resources?.reconcile().catch((err: unknown) => { this.d.log.warn('host networks not reconciled', { err }) })
    // the host first, the replicated state after it: both are then read in the same turn as the
    // migrating() checks below (a move that ended while list() ran had its new guest here cleaned up)
    const actual = new Map((await this.d.driver.list()).map((s) => [s.vmId, s]))
    const mine = new Map(this.d.sm.listVms({ node: this.d.nodeId }).map((v) => [v.id, v]))
    const work: Array<Promise<void>> = []
    for (const vm of mine.values()) {
      if (this.busy.has(vm.id) || this.d.migrating?.(vm.id) === true) continue
      work.push(this.guard(vm.id, async () => await this.converge(vm, actual.get(vm.id) ?? null)))
    }
    // Guests of VMs deleted or moved away: stop them and remove everything they had here.
    for (const [id, st] of actual) {
      if (mine.has(id) || this.busy.has(id) || this.d.migrating?.(id) === true) continue
      const rec = this.d.sm.getVm(id)
      work.push(this.guard(id, async () => {
        if (st.state === 'running') this.d.log.info('VM no longer assigned here: stopping', { vmId: id, now: rec?.assignedNode ?? 'deleted' })
        await this.d.driver.cleanup(id)
        this.attempts.delete(id)
        this.reported.delete(id)
        this.stopSeen.delete(id)
      }))
    }
    await Promise.all(work)
  }

  private async guard (id: string, fn: () => Promise<void>): Promise<void> {
    this.busy.add(id)
    try { await fn() } catch (err) {
      this.d.log.warn('VM action failed', { vmId: id, err })
      const vm = this.d.sm.getVm(id)
      if (vm != null && vm.assignedNode === this.d.nodeId) this.report(vm, 'failed', (err as Error).message)
    } finally { this.busy.delete(id) }
  }

  private async converge (vm: VmRecord, st: VmRuntimeStatus | null): Promise<void> {
    if (vm.desired === 'stopped') {
      this.stopSeen.add(vm.id)
      if (st?.state === 'running') {
        this.report(vm, 'stopping', 'stop requested')
        const exit = await this.d.driver.stop(vm.id)
        this.report(vm, 'stopped', exit.reason)
      } else if (this.lastPhase(vm) !== 'stopped' || (vm.status.node !== this.d.nodeId && !this.pending.has(vm.id))) {
        // lastPhase, not the record: the stop just reported may not be committed yet
        this.report(vm, 'stopped', st == null ? 'never started' : 'stopped')
      }
      this.attempts.delete(vm.id)
      return
    }
    // desired running
    if (st?.state === 'running') {
      if (st.generation !== vm.generation) {
        this.d.log.info('VM spec changed: restarting with the new spec', { vmId: vm.id, from: st.generation, to: vm.generation })
        this.report(vm, 'stopping', `spec changed (generation ${st.generation} → ${vm.generation})`)
        await this.d.driver.stop(vm.id)
        await this.launch(vm, 'new spec')
        return
      }
      if (st.ready && this.lastPhase(vm) !== 'running') this.report(vm, 'running', '', st.ip ?? undefined)
      const a = this.attempts.get(vm.id)
      if (a != null && st.ready && this.now() - a.lastStart > STABLE_AFTER_MS) this.attempts.delete(vm.id)
      return
    }
    if (st == null) { await this.launch(vm, 'first start'); return }
    // The guest is gone: the restart policy decides.
    const exit = st.exit
    const crashed = st.state === 'crashed'
    const policy = vm.spec.restartPolicy
    const restart = policy === 'always' || (policy === 'on-failure' && crashed)
    // A generation change or an explicit start after a stop always starts again. The stop is
    // known from this agent's own view, or (after a daemon restart) from the exit the stop caused.
    // Not from the record's phase: a guest that powered itself off is 'stopped' too, and the
    // policy alone decides about it (on-failure and never restarted it on the next round).
    const startedOver = st.generation !== vm.generation || this.stopSeen.has(vm.id) || exit?.requested === 'stop'
    if (startedOver) {
      // asked for, not a crash loop: no backoff, no 'failed' in between
      this.attempts.delete(vm.id)
      await this.launch(vm, st.generation !== vm.generation ? 'new spec' : 'start requested')
      return
    }
    if (!restart) {
      const phase: VmPhase = crashed ? 'failed' : 'stopped'
      const reason = `${exit?.reason ?? 'exited'}; restart policy ${policy}`
      if (this.lastPhase(vm) !== phase) this.report(vm, phase, reason)
      return
    }
    const a = this.attempts.get(vm.id) ?? { count: 0, nextAt: 0, lastStart: 0 }
    if (this.now() < a.nextAt) {
      const reason = `${exit?.reason ?? 'exited'}; restarting in ${Math.ceil((a.nextAt - this.now()) / 1000)}s (attempt ${a.count + 1}, policy ${policy})`
      if (this.lastPhase(vm) !== 'failed') this.report(vm, 'failed', reason)
      return
    }
    await this.launch(vm, `restart after: ${exit?.reason ?? 'exit'} (policy ${policy})`)
  }

  private lastPhase (vm: VmRecord): VmPhase {
    return this.pending.get(vm.id)?.phase ?? this.reported.get(vm.id)?.phase ?? vm.status.phase
  }

  private async launch (vm: VmRecord, why: string): Promise<void> {
    if (vm.spec.image.kind === 'tiny' && this.tiny == null) {
      this.report(vm, 'failed', this.tinyError ?? 'no tiny guest on this host')
      return
    }
    const held = this.d.mayRun?.()
    if (held != null) { this.d.log.debug('not starting a guest', { vmId: vm.id, why: held }); return }
    const a = this.attempts.get(vm.id) ?? { count: 0, nextAt: 0, lastStart: 0 }
    const { first, max } = this.d.backoffMs ?? { first: 1_000, max: 60_000 }
    a.count += 1
    a.lastStart = this.now()
    a.nextAt = this.now() + Math.min(max, first * 2 ** Math.min(a.count - 1, 16))
    this.attempts.set(vm.id, a)
    this.stopSeen.delete(vm.id)
    const host = await this.d.resources?.bindings(vm) ?? {}
    // a name that is not one plain word stays out of the kernel command line (the guest says unknown)
    const name = this.d.sm.getNode(this.d.nodeId)?.name
    const hostName = name != null && /^[\w.-]{1,64}$/.test(name) ? name : undefined
    const spec = launchSpecFromVm(vm, { tinyGuest: this.tiny ?? undefined, hostName, ...host })
    this.report(vm, 'starting', why)
    await this.d.driver.start(spec)
  }

  private onEvent (e: VmEvent): void {
    const vm = this.d.sm.getVm(e.vmId)
    if (vm == null || vm.assignedNode !== this.d.nodeId) return
    if (e.generation !== vm.generation) return
    switch (e.type) {
      case 'running': this.report(vm, 'running', e.adopted ? 're-adopted after a daemon restart' : '', e.ip ?? undefined); break
      case 'failed': this.report(vm, 'failed', e.reason); this.kick(); break
      case 'stopped': if (vm.desired === 'running') this.kick(); else this.report(vm, 'stopped', e.exit.reason); break
      default: break
    }
  }

  /** Queue an observed status; reports are sent in batches (one ReportVmStatus per flush). */
  private report (vm: VmRecord, phase: VmPhase, reason: string, ip?: string): void {
    const prev = this.pending.get(vm.id) ?? this.reported.get(vm.id)
    if (prev != null && prev.phase === phase && prev.reason === reason && prev.generation === vm.generation) return
    this.pending.set(vm.id, { phase, reason, generation: vm.generation, ...(ip != null ? { ip } : {}) })
    this.d.log.info('vm status', { vmId: vm.id, name: vm.spec.name, phase, reason })
    this.scheduleFlush(0)
  }

  /** Batching without a fixed delay: reports queued while a ReportVmStatus is in flight go
   * together in the next one; a lone report goes at once (a 50 ms timer here was a third of
   * the control plane's create-to-running time). */
  private scheduleFlush (ms: number): void {
    if (this.flushTimer != null || this.flushing != null || this.stopped) return
    this.flushTimer = setTimeout(() => { this.flushTimer = null; void this.flush() }, ms)
  }

  /** Sends what is pending, or waits for the report in flight. */
  private async flush (): Promise<void> {
    if (this.flushing != null) { await this.flushing; return }
    if (this.pending.size === 0) return
    this.flushing = (async () => {
      const retryMs = await this.flushOnce()
      this.flushing = null
      if (this.pending.size > 0) this.scheduleFlush(retryMs)
    })()
    await this.flushing
  }

  /** one ReportVmStatus with everything pending; returns the delay before the next try */
  private async flushOnce (): Promise<number> {
    const batch = [...this.pending]
    this.pending.clear()
    const at = this.now()
    const reports = batch.map(([id, o]) => ({ id, node: this.d.nodeId, generation: o.generation, status: { phase: o.phase, reason: o.reason, at, ...(o.ip != null ? { ip: o.ip } : {}) } }))
    try {
      const r = await this.d.propose({ cmd: { type: 'ReportVmStatus', reports }, at })
      if (!r.ok) this.d.log.warn('status report rejected', { error: r.error })
      for (const [id, o] of batch) this.reported.set(id, o)
    } catch (err) {
      // Not committed (no leader?): keep the newest observation and retry with the next flush.
      for (const [id, o] of batch) if (!this.pending.has(id)) this.pending.set(id, o)
      this.d.log.debug('status report not committed; will retry', { err })
      return 500
    }
    return 0
  }
}
