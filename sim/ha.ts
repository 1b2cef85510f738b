// High availability in the simulator, with the code the daemon runs: each host's lease
// (node/core/lease-holder.ts), the leader's batcher and failure detector (node/core/lease-keeper.ts),
// and RenewLeases / MarkNodeDown applied by the real state machine. What is simulated is what the
// daemon's shell does (node/ha/service.ts): the renewal round trip over the simulated network, the
// agent starting and stopping guests, the fence watchdog (a process apart: it keeps acting while the
// daemon is crashed or paused), and every host's own monotonic clock running at its own rate within
// the drift bound.
//
// Host i is the machine of replica n<i>: its daemon is up while that replica is up and not paused
// (the HA nemesis pauses a daemon whose guests keep running). Ground truth is which guests run where,
// and the NeverTwice checker judges it.
import type { Command } from '../protocols/commands.ts'
import type { NodeRecord, VmRecord } from '../protocols/model.ts'
import { LeaseHolder } from '../node/core/lease-holder.ts'
import { LeaseKeeper } from '../node/core/lease-keeper.ts'
import { hostFenceAfterMs } from '../node/core/lease-rules.ts'
import type { LeaseSettings } from '../node/core/lease-rules.ts'
import type { RenewResult } from '../storage/apply-ha.ts'
import type { Cluster } from './cluster.ts'
import type { Prng } from './prng.ts'
import type { Replica } from './replica.ts'
import type { EventQueue } from './event-queue.ts'
import { HOSTS } from './vm-scheduler.ts'
import { activeMigration } from '../storage/migration-guard.ts'
import type { NeverTwice } from './checkers/never-twice.ts'

/** The lease rules at the simulator's scale (runs last seconds, elections ~100 ms). */
export const SIM_LEASE: LeaseSettings = { leaseMs: 600, renewEveryMs: 150, driftRatio: 0.01, fenceMarginMs: 60, downMarginMs: 60 }
/** virtual ms between rounds of every host's daemon and watchdog */
const HA_TICK_MS = 10
/** the leader proposes the renewals it collected this often */
const RENEW_BATCH_MS = 50
/** one way, a renewal request or its answer */
const LINK_MS = 3

interface Host {
  id: string
  replica: string
  holder: LeaseHolder | null
  /** the replica life the holder belongs to: a new life is a restarted daemon */
  incarnation: number
  /** the watchdog's deadline (host clock); null when it fired and exited */
  watchdog: number | null
  lastRenewAt: number
  pausedUntil: number
  guests: Set<string>
}

export interface HaSimOptions {
  sched: EventQueue
  rng: Prng
  cluster: Cluster
  checker: NeverTwice
  /** planted bug: neither the watchdog nor the daemon stops guests when the lease runs out */
  noSelfFence: boolean
  trace: ((line: string) => void) | null
  /** told of every guest an agent boots, with the VM's record on that host's replica */
  onStart?: (host: string, guest: string, vm: VmRecord | undefined, now: number) => void
}

export class HaSim {
  private readonly hosts: Host[] = []
  private readonly rates = new Map<string, { rate: number, offset: number }>()
  private readonly keepers = new Map<string, LeaseKeeper>()
  private readonly lastFlush = new Map<string, number>()
  private readonly waiters = new Map<string, Array<(r: RenewResult | null) => void>>()
  private running = false
  private faultsOn = false
  private proposals = 0
  readonly stats = { fences: 0, marksDown: 0, pauses: 0, starts: 0 }

  constructor (private readonly o: HaSimOptions) {
    for (let i = 1; i <= HOSTS; i++) this.hosts.push({ id: `host${i}`, replica: `n${i}`, holder: null, incarnation: -1, watchdog: null, lastRenewAt: -Infinity, pausedUntil: 0, guests: new Set() })
  }

  start (): void {
    this.running = true
    this.faultsOn = true
    this.o.sched.after(HA_TICK_MS, () => { this.tick() })
    this.o.sched.after(this.o.rng.range(200, 800), () => { this.pause() })
  }

  /** No more pauses (the heal phase); the daemons keep running. */
  stopFaults (): void { this.faultsOn = false; for (const h of this.hosts) h.pausedUntil = 0 }

  stop (): void { this.running = false }

  /** Each machine's monotonic clock: its own rate within the drift bound, its own origin. */
  private clock (machine: string): number {
    let c = this.rates.get(machine)
    if (c === undefined) {
      const d = SIM_LEASE.driftRatio
      const r = this.o.rng.fork(`clock/${machine}`)
      c = { rate: 1 - d + 2 * d * r.float(), offset: r.range(0, 1_000_000) }
      this.rates.set(machine, c)
    }
    return c.offset + this.o.sched.now() * c.rate
  }

  private trace (line: string): void { this.o.trace?.(`ha ${line}`) }

  private replica (id: string): Replica | undefined { return this.o.cluster.replicas.find((r) => r.id === id) }

  /** The HA nemesis: a host's daemon hangs (SIGSTOP) while its guests run on. */
  private pause (): void {
    if (!this.faultsOn) return
    const h = this.o.rng.pick(this.hosts)
    const hold = this.o.rng.range(100, 1500)
    h.pausedUntil = this.o.sched.now() + hold
    this.stats.pauses++
    this.trace(`pause ${h.id}'s daemon for ${hold} ms (${h.guests.size} guest(s) run on)`)
    this.o.sched.after(this.o.rng.range(300, 1500), () => { this.pause() })
  }

  private kill (h: Host, why: string): void {
    if (h.guests.size === 0) return
    this.trace(`${h.id} stops ${[...h.guests].join(',')}: ${why}`)
    h.guests.clear()
    this.o.checker.observe(this.hosts, this.o.sched.now())
  }

  private tick (): void {
    if (!this.running) return
    this.o.sched.after(HA_TICK_MS, () => { this.tick() })
    for (const h of this.hosts) this.hostTick(h)
    for (const r of this.o.cluster.replicas) this.leaderTick(r)
    this.o.checker.observe(this.hosts, this.o.sched.now())
  }

  private hostTick (h: Host): void {
    const now = this.clock(h.replica)
    // the watchdog: a process apart, whatever the daemon does
    if (!this.o.noSelfFence && h.watchdog !== null && now >= h.watchdog) {
      this.kill(h, 'watchdog: lease deadline passed')
      h.watchdog = null
      this.stats.fences++
    }
    const r = this.replica(h.replica)
    if (r === undefined || !r.up || r.sm === null || this.o.sched.now() < h.pausedUntil) return
    if (r.incarnation !== h.incarnation || h.holder === null) {
      // a (re)started daemon: the previous deadline stands (node/ha/service.ts start())
      const initial = Math.min(h.watchdog ?? Infinity, now + hostFenceAfterMs(SIM_LEASE))
      h.holder = new LeaseHolder(SIM_LEASE, initial - hostFenceAfterMs(SIM_LEASE))
      h.watchdog = initial
      h.incarnation = r.incarnation
      h.lastRenewAt = -Infinity
    }
    const holder = h.holder
    const rec = r.sm.getNode(h.id)
    if (!this.o.noSelfFence && holder.verdict(now).kind === 'fence' && h.guests.size > 0) { this.kill(h, 'daemon: lease lost'); this.stats.fences++ }
    if (now - h.lastRenewAt >= SIM_LEASE.renewEveryMs) { h.lastRenewAt = now; this.renew(h, r, rec) }
    // the agent: desired-running VMs assigned here start only with a lease; others stop. A guest is
    // one VM's: id and creation (the workload reuses ids; a deleted VM's guest left on a host whose
    // daemon is down is not the new VM of the same name, whose ids are UUIDs outside the simulator)
    // (and, as node/agent-decide.ts: not while another host may still run it: storage/release-rules.ts)
    const mine = new Set(r.sm.listVms({ node: h.id }).filter((v) => v.desired === 'running' && (v.releasing === undefined || v.releasing.node === h.id)).map((v) => `${v.id}@${v.createdAt}`))
    // as node/agent.ts: a VM a live migration of this host holds is neither started nor stopped
    // here (node/migration/service.ts holds); the migration hands the guest over (handOver)
    const held = new Set(r.sm.listVms().filter((v) => { const m = activeMigration(v); return m !== null && (m.source === h.id || m.target === h.id) }).map((v) => `${v.id}@${v.createdAt}`))
    for (const g of [...h.guests]) {
      if (!mine.has(g) && !held.has(g)) { h.guests.delete(g); this.trace(`${h.id} stops ${g}: not assigned here (or not to run)`) }
    }
    for (const id of mine) {
      if (held.has(id)) continue
      if (h.guests.has(id) || holder.mayRun(now, rec) !== null) continue
      h.guests.add(id)
      this.stats.starts++
      this.trace(`${h.id} starts ${id}`)
      this.o.onStart?.(h.id, id, r.sm.getVm(id.slice(0, id.lastIndexOf('@'))), now)
    }
  }

  /** guests a live migration handed over, `guest>host` (the guest's state reached that host) */
  readonly handedOver = new Set<string>()

  /** Does host `host` run this guest (`vmId@createdAt`) now? The ground truth its agent observes. */
  runs (host: string, guest: string): boolean {
    return this.hosts.find((x) => x.id === host)?.guests.has(guest) === true
  }

  /** Is host `host`'s daemon running now (its replica up, not paused)? */
  daemonUp (host: string): boolean {
    const h = this.hosts.find((x) => x.id === host)
    if (h === undefined) return false
    const r = this.replica(h.replica)
    return r !== undefined && r.up && this.o.sched.now() >= h.pausedUntil
  }

  /** A live migration's end on the wire: QEMU on `from` finished sending, paused there for good,
   * and the guest runs on `to` from now (the source reports source-completed right after). */
  handOver (guest: string, from: string, to: string): boolean {
    const src = this.hosts.find((x) => x.id === from)
    const dst = this.hosts.find((x) => x.id === to)
    if (src === undefined || dst === undefined || !src.guests.has(guest)) return false
    // the target's QEMU runs only under its daemon's lease, with its watchdog armed (the real
    // target waits for its lease before it takes a guest: node/migration/service.ts); without
    // them the transfer fails and the guest stays on the source
    const r = this.replica(dst.replica)
    const rec = r?.sm?.getNode(dst.id)
    if (dst.watchdog === null || dst.holder === null || r === undefined || !r.up || dst.holder.mayRun(this.clock(dst.replica), rec) !== null) return false
    src.guests.delete(guest)
    dst.guests.add(guest)
    this.handedOver.add(`${guest}>${to}`)
    this.trace(`${from} hands ${guest} over to ${to} (live migration)`)
    this.o.checker.observe(this.hosts, this.o.sched.now())
    return true
  }

  private renew (h: Host, r: Replica, rec: NodeRecord | undefined): void {
    const holder = h.holder as LeaseHolder
    const plan = holder.plan(rec)
    if (plan.kind === 'wait') return
    if (plan.kind === 'cleanup') { this.kill(h, plan.why); holder.cleanedUp(plan.epoch) }
    const leaderId = r.core?.leaderId() ?? null
    if (leaderId === null) return
    const sentAt = this.clock(h.replica)
    const inc = r.incarnation
    const net = this.o.cluster.net
    if (leaderId !== r.id && !net.open(r.id, leaderId)) return
    this.o.sched.after(LINK_MS, () => {
      const l = this.replica(leaderId)
      const k = this.keepers.get(leaderId)
      if (l === undefined || !l.up || k === undefined || !k.isLeading()) return
      k.enqueue(h.id, plan.epoch)
      const key = `${leaderId}/${h.id}`
      const list = this.waiters.get(key) ?? []
      list.push((res) => {
        if (res === null) return
        this.o.sched.after(LINK_MS, () => {
          if (leaderId !== r.id && !net.open(leaderId, r.id)) return
          if (!r.up || r.incarnation !== inc || h.holder !== holder) return // the asking daemon is gone
          if (res.outcome !== 'renewed' && res.outcome !== 'rejoined') return
          h.watchdog = holder.acked(sentAt, res.epoch) // and a fresh watchdog if it had fired
          this.trace(`${h.id} renewed (epoch ${res.epoch}, seq ${res.seq}), fence at ${Math.round(h.watchdog)}`)
          if (res.outcome === 'rejoined') this.trace(`${h.id} rejoined at epoch ${res.epoch}`)
        })
      })
      this.waiters.set(key, list)
    })
  }

  private keeper (r: Replica): LeaseKeeper {
    let k = this.keepers.get(r.id)
    if (k === undefined) {
      const host = this.hosts.find((h) => h.replica === r.id)
      k = new LeaseKeeper(host?.id ?? r.id, SIM_LEASE)
      this.keepers.set(r.id, k)
    }
    return k
  }

  private leaderTick (r: Replica): void {
    const k = this.keeper(r)
    const leading = r.up && r.core !== null && r.sm !== null && r.role === 'leader'
    const now = this.clock(r.id)
    k.leadership(leading, now)
    if (!leading) {
      for (const [key, list] of this.waiters) if (key.startsWith(`${r.id}/`)) { this.waiters.delete(key); for (const w of list) w(null) }
      return
    }
    const core = r.core!
    const sm = r.sm!
    const send = (cmd: Command, done: (value: unknown) => void): void => {
      try {
        core.propose({ cmd, at: this.o.sched.now(), key: `ha/${r.id}/${++this.proposals}` }, (o) => { done(o.ok && o.result.ok ? o.result.value : null) })
      } catch { done(null) }
    }
    if (now - (this.lastFlush.get(r.id) ?? -Infinity) >= RENEW_BATCH_MS) {
      this.lastFlush.set(r.id, now)
      const batch = k.takeBatch()
      if (batch !== null) {
        send(batch, (value) => {
          const results = (value as { results: RenewResult[] } | null)?.results ?? []
          for (const l of batch.leases) {
            const key = `${r.id}/${l.node}`
            const list = this.waiters.get(key) ?? []
            this.waiters.delete(key)
            const res = results.find((x) => x.node === l.node) ?? null
            for (const w of list) w(res)
          }
        })
      }
    }
    const self = k.self
    for (const { cmd } of k.due(sm.listNodes().filter((n) => n.id !== self), now, this.o.sched.now())) {
      this.trace(`${r.id} marks ${cmd.node} down (epoch ${cmd.epoch}, seq ${cmd.seq})`)
      send(cmd, (value) => {
        if (value === null) { k.markFailed(cmd.node); return }
        if ((value as { outcome: string }).outcome === 'down') this.stats.marksDown++
      })
    }
  }
}
