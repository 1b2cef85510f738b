// The host side of warm pools (the record and the decisions are protocols/pools.ts): this
// node keeps, for every declared pool, `size` guests of the pool's image (the tiny image, the one
// image a host can hold warm: protocols/images.ts) and shape booted and paused
// (QMP `stop` once the ready marker showed), under runtime ids `warm.<pool>.<seq>` that no VM id
// ever takes. A create of a matching VM assigned here is handed one (claim(): the agent asks
// before it would boot): the guest's runtime is renamed to the VM's id and resumed, with no boot;
// the next pass boots a replacement in the background. Guests of a deleted or reshaped pool, dead
// ones and any surplus are removed. Nothing per guest goes through Raft: a pool guest is no VM until
// it is claimed, and a restarted daemon finds them by their runtime dirs (the driver re-adopts).
//
// Pool guests reserve nothing in Raft: placement counts the room they hold as free (reclaimable),
// and this host keeps them within what the VMs placed on it leave (warmRoom): a guest boots only
// into room no VM here needs, and guests are stopped, the newest first, when a VM placed here needs
// theirs — in the background pass, and before the agent cold-boots a VM (makeRoom). The counts go
// out in the load report (report()), where the scheduler's warm scorer reads them.
//
// Not here yet: a claimed guest keeps the pool's hostname (it learns no new identity after resume).
import type { VmRecord } from '../../protocols/model.ts'
import type { PendingStart, WarmGuest, WarmPoolRecord, WarmRoom } from '../../protocols/pools.ts'
import { MAX_WARM_POOL_SIZE, parseWarmGuestId, pickWarmGuest, planWarmPools, poolFor, poolImage, warmGuestId, warmRoom } from '../../protocols/pools.ts'
import { constraintHolds } from '../../placement/filters.ts'
import { clusterFromModel } from '../../placement/from-model.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { LaunchRecord, QemuDriver, QemuLaunchSpec } from '../qemu/driver.ts'
import { runtimePaths } from '../qemu/paths.ts'
import { loadTinyGuest, tinyGuestBoot } from '../qemu/tiny-guest.ts'
import { readFile } from 'node:fs/promises'
import type { Logger } from '../log.ts'

/** How often the pools are looked at besides the kicks (pool commands, claims, guests' events). */
export const POOL_LOOP_MS = 1_000

export interface WarmPoolServiceDeps {
  /** this node's id: its labels pick the pools it keeps, its capacity bounds their guests */
  nodeId: string
  sm: StateMachine
  driver: QemuDriver
  /** why this host runs no pool guests at all (microvm.nix host), or null */
  unsupported?: () => string | null
  /** why no guest may start now (no liveness lease, fenced), or null: then nothing boots */
  mayRun?: () => string | null
  /** the tiny guest's files (default: .guest/ of the checkout) */
  guestDir?: string
  log: Logger
}

export class WarmPoolService {
  /** guest ids with an action running (boot, pause, remove, claim): planned around, never twice */
  private readonly busy = new Set<string>()
  private seq = 0
  /** guests this service saw paused in its last look (or paused since): a claim picks from these
   * without asking every guest's QMP again, in the create's latency */
  private paused: WarmGuest[] = []
  private timer: NodeJS.Timeout | null = null
  private passing: Promise<void> | null = null
  private again = false
  private stopped = false
  private offDriver: (() => void) | null = null
  /** what the last pass saw, for the load report */
  private seen: WarmGuest[] = []
  /** VMs placed here whose first start asked for a guest (claimed or not): they no longer count
   * on one (warmRoom); forgotten once they left 'scheduled' */
  private readonly asked = new Set<string>()

  constructor (private readonly d: WarmPoolServiceDeps) {}

  start (): void {
    this.timer = setInterval(() => { this.kick() }, POOL_LOOP_MS)
    this.timer.unref()
    // a pool guest that just booted is paused (and a dead one replaced) without waiting for the timer
    this.offDriver = this.d.driver.onEvent((e) => { if (parseWarmGuestId(e.vmId) != null) this.kick() })
    this.kick()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
    this.offDriver?.()
    await this.passing
  }

  /** One pass now, or right after the running one. */
  kick (): void {
    if (this.stopped) return
    if (this.passing != null) { this.again = true; return }
    this.passing = this.pass()
      .catch((err: unknown) => { this.d.log.warn('warm pool pass failed', { err }) })
      .finally(() => {
        this.passing = null
        if (this.again) { this.again = false; this.kick() }
      })
  }

  /** The pool guests this host has, as planWarmPools sees them. */
  async guests (): Promise<WarmGuest[]> {
    const out: WarmGuest[] = []
    for (const st of await this.d.driver.list()) {
      const parsed = parseWarmGuestId(st.vmId)
      if (parsed == null) continue
      this.seq = Math.max(this.seq, parsed.seq)
      const rec = await readFile(runtimePaths(this.d.driver.dataDir, st.vmId).specFile, 'utf8').then((t) => JSON.parse(t) as LaunchRecord).catch(() => null)
      const shape = { vcpus: rec?.spec.vcpus ?? 0, memoryMiB: rec?.spec.memoryMiB ?? 0 }
      if (st.state !== 'running') { out.push({ id: st.vmId, state: 'gone', ...shape }); continue }
      if (!st.ready) { out.push({ id: st.vmId, state: 'booting', ...shape }); continue }
      const q = await this.d.driver.qmp(st.vmId).then(async (c) => await c.execute('query-status') as { status?: string }).catch(() => null)
      // no answer (its QEMU just ended, or QMP is busy): not claimable, not to be paused; the next pass looks again
      out.push({ id: st.vmId, state: q == null ? 'booting' : q.status === 'paused' ? 'paused' : 'ready', ...shape })
    }
    return out
  }

  /** The pools this host keeps guests of: every pool whose constraints its labels meet. */
  private pools (): WarmPoolRecord[] {
    // a host that cannot run pool guests keeps none: every guest it has is removed
    if (this.d.unsupported?.() != null) return []
    const labels = this.d.sm.getNode(this.d.nodeId)?.labels ?? {}
    return this.d.sm.listWarmPools().filter((p) => (p.constraints ?? []).every((c) => constraintHolds(labels, c)))
  }

  /** What pool guests may hold here now (protocols/pools.ts warmRoom): this node's capacity ×
   * overcommit less what the VMs placed here (and live migrations coming in) reserve, as placement
   * counts it, plus the VMs about to be handed a guest. Nothing before the node is registered. */
  private room (seen: readonly WarmGuest[]): WarmRoom {
    const node = this.d.sm.getNode(this.d.nodeId)
    if (node == null) return { cpu: 0, memoryMiB: 0 }
    const vms = this.d.sm.listVms()
    const here = clusterFromModel([node], vms, new Map()).nodes[0]
    const free = { cpu: here.capacity.cpu * here.overcommit.cpu - here.reserved.cpu, memoryMiB: here.capacity.memoryMiB * here.overcommit.memory - here.reserved.memoryMiB }
    const pending: PendingStart[] = []
    const waiting = new Set<string>()
    for (const v of vms) {
      if (v.assignedNode !== this.d.nodeId || v.desired !== 'running' || v.status.phase !== 'scheduled') continue
      waiting.add(v.id)
      // a clone's first start resumes its snapshot, never a pool guest: it counts on none
      pending.push({ spec: v.spec, asked: this.asked.has(v.id) || (v.clonedFrom != null && v.clonedFrom.resumedAt == null) })
    }
    for (const id of this.asked) if (!waiting.has(id)) this.asked.delete(id)
    return warmRoom(free, pending, this.pools(), seen)
  }

  /** This host's pool guests per pool, for the load report (counts capped as its schema caps them). */
  report (): Array<{ pool: string, guests: number, paused: number }> {
    const out = new Map<string, { pool: string, guests: number, paused: number }>()
    for (const g of this.seen) {
      const pool = parseWarmGuestId(g.id)?.pool
      if (pool == null || g.state === 'gone') continue
      const r = out.get(pool) ?? { pool, guests: 0, paused: 0 }
      r.guests = Math.min(MAX_WARM_POOL_SIZE, r.guests + 1)
      if (g.state === 'paused') r.paused = Math.min(MAX_WARM_POOL_SIZE, r.paused + 1)
      out.set(pool, r)
    }
    return [...out.values()].sort((a, b) => a.pool < b.pool ? -1 : 1)
  }

  /** Before the agent boots `vm` here (no guest was handed to it): a pass now, which stops pool
   * guests until those left fit beside the VMs placed here, this one included. */
  async makeRoom (vm: VmRecord): Promise<void> {
    if (this.stopped) return
    // no pool here and no guest left of one: nothing holds room, and no pass is worth waiting for
    if (this.seen.length === 0 && this.pools().length === 0) return
    this.asked.add(vm.id)
    while (this.passing != null) await this.passing
    this.kick()
    await this.passing
  }

  private async pass (): Promise<void> {
    const seen = await this.guests()
    this.paused = seen.filter((g) => g.state === 'paused')
    this.seen = seen
    const pools = this.pools()
    // the room is a read of every VM: only worth it on a host that keeps (or still holds) pool guests,
    // not once a second on every node of a cluster without pools
    const actions = pools.length === 0 && seen.length === 0 ? [] : planWarmPools(pools, seen, this.busy, this.room(seen))
    const held = this.d.mayRun?.() ?? null
    for (const a of actions) {
      if (this.stopped) return
      if (a.kind === 'boot') {
        if (held != null) { this.d.log.debug('warm pool: not booting', { pool: a.pool, why: held }); continue }
        const p = this.d.sm.listWarmPools().find((x) => x.name === a.pool)
        if (p == null) continue
        const id = warmGuestId(p.name, ++this.seq)
        await this.act(id, 'boot', a.reason, async () => { await this.d.driver.start(await this.launchSpec(id, p)) })
      } else if (a.kind === 'pause') {
        await this.act(a.id, 'pause', a.reason, async () => {
          await (await this.d.driver.qmp(a.id)).execute('stop')
          const g = seen.find((x) => x.id === a.id)
          if (g != null) {
            this.paused = [...this.paused.filter((x) => x.id !== a.id), { ...g, state: 'paused' }]
            this.seen = this.seen.map((x) => x.id === a.id ? { ...x, state: 'paused' } : x)
          }
        })
      } else {
        await this.act(a.id, 'remove', a.reason, async () => {
          await this.d.driver.cleanup(a.id)
          // not reported (nor claimed) as paused until the next pass looks
          this.seen = this.seen.filter((x) => x.id !== a.id)
          this.paused = this.paused.filter((x) => x.id !== a.id)
        })
      }
    }
  }

  private async act (id: string, what: string, reason: string, fn: () => Promise<void>): Promise<void> {
    this.busy.add(id)
    try {
      await fn()
      this.d.log.info(`warm pool guest: ${what}`, { id, why: reason })
    } catch (err) {
      this.d.log.warn(`warm pool guest: ${what} failed`, { id, why: reason, err })
    } finally { this.busy.delete(id) }
  }

  private async launchSpec (id: string, p: WarmPoolRecord): Promise<QemuLaunchSpec> {
    // apply refuses a pool of any image that cannot be held warm
    const image = poolImage(p)
    if (image.kind !== 'tiny') throw new Error(`warm pool ${p.name}: image ${image.kind} cannot be held warm`)
    const guest = await loadTinyGuest(this.d.guestDir)
    // generation 0: no VM has it yet; claim() sets the claiming VM's
    return { vmId: id, generation: 0, vcpus: p.vcpus, memoryMiB: p.memoryMiB, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: p.name }) }
  }

  /** Hands a paused guest of the pool matching `vm`'s spec over to it, resumed: what the agent asks
   * before it would boot the VM. The guest claimed, or null (no pool of its image and shape, none paused here,
   * or the hand-over failed: then the agent boots the VM as ever). */
  async claim (vm: VmRecord): Promise<{ guest: string, pool: string } | null> {
    if (this.stopped || this.d.unsupported?.() != null) return null
    this.asked.add(vm.id)
    const pool = poolFor(vm.spec, this.pools())
    if (pool == null) return null
    // from what the last pass saw paused: a guest that died since fails the hand-over (NotRunning)
    // and the VM boots as ever
    const id = pickWarmGuest(pool.name, this.paused.filter((g) => g.vcpus === pool.vcpus && g.memoryMiB === pool.memoryMiB), this.busy)
    if (id == null) return null
    this.paused = this.paused.filter((g) => g.id !== id)
    this.seen = this.seen.filter((g) => g.id !== id)
    this.busy.add(id)
    try {
      await this.d.driver.claim(id, vm.id, vm.generation)
      this.d.log.info('warm pool guest claimed', { id, vmId: vm.id, pool: pool.name })
      return { guest: id, pool: pool.name }
    } catch (err) {
      this.d.log.warn('warm pool claim failed; the VM boots', { id, vmId: vm.id, err })
      return null
    } finally {
      this.busy.delete(id)
      this.kick() // refill
    }
  }
}
