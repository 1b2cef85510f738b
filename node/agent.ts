// The node agent: makes this host's guests match the replicated state. Each round it observes the
// guests through the Hypervisor (node/hypervisor/types.ts: QEMU or microvm.nix), asks the pure
// decision (node/agent-decide.ts) what to do about the VMs assigned here, and does it: starts,
// stops, restarts (new spec generation, restart policy with backoff) and cleans up, and reports
// observed status through Raft in batches. Hypervisor events report at once, between rounds.
import { WARM_GUEST_PREFIX } from '../protocols/pools.ts'
import type { VmRecord, VmPhase } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { GuestEvent, Hypervisor } from './hypervisor/types.ts'
import { decide, decideEvent, DEFAULT_BACKOFF, START_WAIT, type AgentAction, type Attempts, type Backoff } from './agent-decide.ts'
import type { HostBindings } from './qemu/launch-spec.ts'
import type { Logger } from './log.ts'
import type { NodeMetrics } from './metrics.ts'

export interface AgentDeps {
  nodeId: string
  sm: StateMachine
  hypervisor: Hypervisor
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  metrics?: NodeMetrics
  now?: () => number
  reconcileEveryMs?: number
  /** restart backoff: first delay and cap */
  backoffMs?: Backoff
  /** the host side of VMs: addresses, TAPs on network bridges, rbd drives (node/host-resources.ts) */
  resources?: { bindings: (vm: VmRecord) => Promise<Omit<HostBindings, 'tinyGuest'>>, reconcile: () => Promise<void> }
  /** why no guest may start on this host now (no liveness lease held: node/ha/service.ts), or null */
  mayRun?: () => string | null
  /** a live migration this host takes part in holds the VM (node/migration/service.ts): the agent
   * neither restarts nor stops the source's guest, nor removes the target's waiting QEMU */
  migrating?: (vmId: string) => boolean
  /** a warm pool guest of the VM's shape handed over to it, resumed (node/pools/service.ts), or
   * null: asked before a first start, so a matching create runs without a boot */
  claimWarm?: (vm: VmRecord) => Promise<{ guest: string, pool: string } | null>
  /** before a boot: warm pool guests here give back the room the VMs placed here need (they
   * reserve none: node/pools/service.ts), so the boot does not overfill the host */
  makeRoom?: (vm: VmRecord) => Promise<void>
  /** a clone's first start (vm create --from-snapshot): resumes the snapshot's state with the
   * clone's devices and identity instead of a boot (node/snapshots/service.ts) */
  resumeClone?: (vm: VmRecord, host: Omit<HostBindings, 'tinyGuest'>) => Promise<void>
}

interface Observed { phase: VmPhase, reason: string, generation: number, ip?: string, released?: number }

export class Agent {
  private timer: NodeJS.Timeout | null = null
  private running = false
  private again = false
  private readonly reported = new Map<string, Observed>()
  private readonly pending = new Map<string, Observed>()
  /** the batch a ReportVmStatus carries now: neither pending nor committed yet, but reported (a
   * round that missed it would report the same phase again, with its own reason over the one sent) */
  private readonly inflight = new Map<string, Observed>()
  private readonly attempts = new Map<string, Attempts>()
  private readonly busy = new Set<string>()
  /** VMs this agent saw with desired 'stopped': a later desired 'running' is a start, whatever the policy */
  private readonly stopSeen = new Set<string>()
  /** the start wait last said for each VM held from starting, so that a wait is logged once at info
   * (with its reason) and not on every pass */
  private readonly waitSaid = new Map<string, string>()
  private flushTimer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null
  private offEvents: (() => void) | null = null
  private stopped = false

  constructor (private readonly d: AgentDeps) {}

  private now (): number { return (this.d.now ?? Date.now)() }

  async start (): Promise<void> {
    await this.d.hypervisor.prepare()
    this.offEvents = this.d.hypervisor.onEvent((e) => { this.onEvent(e) })
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

  /** One round: observe, decide, act (each VM's actions in order, VMs side by side). */
  private async reconcile (): Promise<void> {
    await this.d.resources?.reconcile().catch((err: unknown) => { this.d.log.warn('host networks not reconciled', { err }) })
    const hv = this.d.hypervisor
    // the host first, the replicated state after it: both are then read in the same turn as the
    // migrating() checks below (a move that ended while list() ran had its new guest here cleaned up)
    // warm pool guests are the pool service's (node/pools/service.ts) until one is claimed
    const guests = new Map((await hv.list()).filter((s) => !s.vmId.startsWith(WARM_GUEST_PREFIX)).map((s) => [s.vmId, s]))
    const vms = this.d.sm.listVms({ node: this.d.nodeId })
    const mine = new Map(vms.map((v) => [v.id, v]))
    const elsewhere = new Map<string, string | null>()
    for (const id of guests.keys()) if (!mine.has(id)) elsewhere.set(id, this.d.sm.getVm(id)?.assignedNode ?? null)
    const cannotLaunch = new Map<string, string>()
    for (const vm of vms) { const why = hv.cannotLaunch(vm); if (why != null) cannotLaunch.set(vm.id, why) }
    const lastReported = new Map<string, VmPhase>()
    for (const [id, o] of this.reported) lastReported.set(id, o.phase)
    for (const [id, o] of this.inflight) lastReported.set(id, o.phase)
    for (const [id, o] of this.pending) lastReported.set(id, o.phase)
    const migrating = new Set([...mine.keys(), ...guests.keys()].filter((id) => this.d.migrating?.(id) === true))
    // VMs taken off this host, waiting for it to say their guest is gone (storage/release-rules.ts)
    const releasing = this.d.sm.listVmsReleasing(this.d.nodeId).flatMap((v) => v.releasing === undefined ? [] : [{ vmId: v.id, since: v.releasing.since }])
    const actions = decide(
      { self: this.d.nodeId, vms, assignedElsewhere: elsewhere, backoff: this.d.backoffMs ?? DEFAULT_BACKOFF, releasing },
      { guests, held: this.d.mayRun?.() ?? null, migrating, cannotLaunch },
      { attempts: this.attempts, stopSeen: this.stopSeen, lastReported, unsent: new Set(this.pending.keys()), busy: this.busy },
      this.now())
    const perVm = new Map<string, AgentAction[]>()
    for (const a of actions) perVm.set(a.vmId, [...(perVm.get(a.vmId) ?? []), a])
    const work: Array<Promise<void>> = []
    for (const id of [...this.waitSaid.keys()]) {
      if (!(perVm.get(id) ?? []).some((a) => a.kind === 'hold' && a.reason.startsWith(START_WAIT))) this.waitSaid.delete(id)
    }
    for (const [id, list] of perVm) {
      if (list.every((a) => a.kind === 'hold')) { for (const a of list) this.held(id, a.reason); continue }
      work.push(this.guard(id, async () => { for (const a of list) await this.act(a, mine.get(id) ?? null) }))
    }
    await Promise.all(work)
  }

  private held (vmId: string, why: string): void {
    if (why.startsWith(START_WAIT) && this.waitSaid.get(vmId) !== why) {
      this.waitSaid.set(vmId, why)
      this.d.log.info('VM waits to start here', { vmId, why })
      return
    }
    this.d.log.debug('leaving a VM as it is', { vmId, why })
  }

  /** Does one action; vm is the record assigned here (null for a guest that is not ours). */
  private async act (a: AgentAction, vm: VmRecord | null): Promise<void> {
    const hv = this.d.hypervisor
    switch (a.kind) {
      case 'hold': this.held(a.vmId, a.reason); return
      case 'note-stop': this.stopSeen.add(a.vmId); return
      case 'reset-backoff': this.attempts.delete(a.vmId); return
      case 'cleanup':
        this.d.log.info('removing a guest', { vmId: a.vmId, why: a.reason })
        await hv.cleanup(a.vmId)
        this.attempts.delete(a.vmId)
        this.reported.delete(a.vmId)
        this.stopSeen.delete(a.vmId)
        return
      case 'release': {
        const rec = this.d.sm.getVm(a.vmId)
        if (rec?.releasing?.node !== this.d.nodeId) return // released already, or deleted
        this.d.log.info('guest gone: releasing a VM taken off this host', { vmId: a.vmId, why: a.reason })
        this.report(rec, 'stopped', a.reason, undefined, a.since)
        return
      }
      default: break
    }
    if (vm == null) return // decide() acts only on records assigned here beyond this point
    switch (a.kind) {
      case 'report': this.report(vm, a.phase, a.reason, a.ip); return
      case 'stop': {
        if (a.reportExit) this.d.log.info('stopping a guest', { vmId: vm.id, why: a.reason })
        else this.d.log.info('VM spec changed: restarting with the new spec', { vmId: vm.id, why: a.reason })
        this.report(vm, 'stopping', a.reason)
        const exit = await hv.stop(vm.id)
        if (a.reportExit) this.report(vm, 'stopped', exit.reason)
        return
      }
      case 'start': {
        this.attempts.set(vm.id, a.attempt)
        this.stopSeen.delete(vm.id)
        // a first start of a VM a warm pool can serve: no boot, the guest runs once resumed (first,
        // before the host side: a VM a pool serves has no networks or volumes to bind)
        // a clone's first start resumes its snapshot (a later one, after a failure, boots its disks)
        const resume = a.attempt.count <= 1 && vm.clonedFrom != null && vm.clonedFrom.resumedAt == null && vm.generation === 1 ? this.d.resumeClone : undefined
        const warm = a.attempt.count <= 1 && resume == null ? await this.d.claimWarm?.(vm) ?? null : null
        if (warm != null) { this.report(vm, 'running', `claimed warm guest ${warm.guest} of pool ${warm.pool}: no boot`); return }
        await this.d.makeRoom?.(vm)
        const host = await this.d.resources?.bindings(vm) ?? {}
        // a name that is not one plain word stays out of the kernel command line (the guest says unknown)
        const name = this.d.sm.getNode(this.d.nodeId)?.name
        const hostName = name != null && /^[\w.-]{1,64}$/.test(name) ? name : undefined
        if (resume != null) {
          this.report(vm, 'starting', `resuming snapshot ${vm.clonedFrom?.name ?? ''}: no boot`)
          await resume(vm, { ...host, ...(hostName != null ? { hostName } : {}) })
          return
        }
        this.report(vm, 'starting', a.reason)
        await hv.start({ vm, host: { ...host, ...(hostName != null ? { hostName } : {}) } })
      }
    }
  }

  private async guard (id: string, fn: () => Promise<void>): Promise<void> {
    this.busy.add(id)
    try { await fn() } catch (err) {
      this.d.log.warn('VM action failed', { vmId: id, err })
      const vm = this.d.sm.getVm(id)
      if (vm != null && vm.assignedNode === this.d.nodeId) this.report(vm, 'failed', (err as Error).message)
    } finally { this.busy.delete(id) }
  }

  private onEvent (e: GuestEvent): void {
    const vm = this.d.sm.getVm(e.vmId) ?? null
    const d = decideEvent(e, vm, this.d.nodeId)
    if (d.report != null && vm != null) this.report(vm, d.report.phase, d.report.reason, d.report.ip)
    if (d.kick) this.kick()
  }

  /** Queue an observed status; reports are sent in batches (one ReportVmStatus per flush). */
  private report (vm: VmRecord, phase: VmPhase, reason: string, ip?: string, released?: number): void {
    const prev = this.pending.get(vm.id) ?? this.inflight.get(vm.id) ?? this.reported.get(vm.id)
    if (prev != null && prev.phase === phase && prev.reason === reason && prev.generation === vm.generation && prev.released === released) return
    this.pending.set(vm.id, { phase, reason, generation: vm.generation, ...(ip != null ? { ip } : {}), ...(released != null ? { released } : {}) })
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
    for (const [id, o] of batch) this.inflight.set(id, o)
    const at = this.now()
    const reports = batch.map(([id, o]) => ({ id, node: this.d.nodeId, generation: o.generation, status: { phase: o.phase, reason: o.reason, at, ...(o.ip != null ? { ip: o.ip } : {}) }, ...(o.released != null ? { released: o.released } : {}) }))
    try {
      const r = await this.d.propose({ cmd: { type: 'ReportVmStatus', reports }, at })
      if (!r.ok) this.d.log.warn('status report rejected', { error: r.error })
      for (const [id, o] of batch) this.reported.set(id, o)
    } catch (err) {
      // Not committed (no leader?): keep the newest observation and retry with the next flush.
      for (const [id, o] of batch) if (!this.pending.has(id)) this.pending.set(id, o)
      this.d.log.debug('status report not committed; will retry', { err })
      return 500
    } finally {
      for (const [id, o] of batch) if (this.inflight.get(id) === o) this.inflight.delete(id)
    }
    return 0
  }
}
