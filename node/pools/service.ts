// The host side of warm pools (issue 18; the record and the decisions are protocols/pools.ts): this
// node keeps, for every declared pool, `size` tiny guests of the pool's shape booted and paused
// (QMP `stop` once the ready marker showed), under runtime ids `warm.<pool>.<seq>` that no VM id
// ever takes. A create of a matching VM assigned here is handed one (claim(): the agent asks
// before it would boot): the guest's runtime is renamed to the VM's id and resumed, with no boot;
// the next pass boots a replacement in the background. Guests of a deleted or reshaped pool, dead
// ones and any surplus are removed. Nothing per guest goes through Raft: a pool guest is no VM until
// it is claimed, and a restarted daemon finds them by their runtime dirs (the driver re-adopts).
//
// Not here yet: pool guests are not counted against the node's capacity in placement, the scheduler
// does not prefer nodes with a warm guest, and a claimed guest keeps the pool's hostname (it learns
// no new identity after resume). See the README's warm-pool section.
import type { VmRecord } from '../../protocols/model.ts'
import type { WarmGuest, WarmPoolRecord } from '../../protocols/pools.ts'
import { parseWarmGuestId, pickWarmGuest, planWarmPools, poolFor, warmGuestId } from '../../protocols/pools.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { LaunchRecord, QemuDriver, QemuLaunchSpec } from '../qemu/driver.ts'
import { runtimePaths } from '../qemu/paths.ts'
import { loadTinyGuest, tinyGuestBoot } from '../qemu/tiny-guest.ts'
import { readFile } from 'node:fs/promises'
import type { Logger } from '../log.ts'

/** How often the pools are looked at besides the kicks (pool commands, claims, guests' events). */
export const POOL_LOOP_MS = 1_000

export interface WarmPoolServiceDeps {
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

  private pools (): WarmPoolRecord[] {
    // a host that cannot run pool guests keeps none: every guest it has is removed
    return this.d.unsupported?.() != null ? [] : this.d.sm.listWarmPools()
  }

  private async pass (): Promise<void> {
    const seen = await this.guests()
    this.paused = seen.filter((g) => g.state === 'paused')
    const actions = planWarmPools(this.pools(), seen, this.busy)
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
          if (g != null) this.paused = [...this.paused.filter((x) => x.id !== a.id), { ...g, state: 'paused' }]
        })
      } else {
        await this.act(a.id, 'remove', a.reason, async () => { await this.d.driver.cleanup(a.id) })
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
    const guest = await loadTinyGuest(this.d.guestDir)
    // generation 0: no VM has it yet; claim() sets the claiming VM's
    return { vmId: id, generation: 0, vcpus: p.vcpus, memoryMiB: p.memoryMiB, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: p.name }) }
  }

  /** Hands a paused guest of the pool matching `vm`'s spec over to it, resumed: what the agent asks
   * before it would boot the VM. The guest claimed, or null (no pool of its shape, none paused here,
   * or the hand-over failed: then the agent boots the VM as ever). */
  async claim (vm: VmRecord): Promise<{ guest: string, pool: string } | null> {
    if (this.stopped || this.d.unsupported?.() != null) return null
    const pool = poolFor(vm.spec, this.d.sm.listWarmPools())
    if (pool == null) return null
    // from what the last pass saw paused: a guest that died since fails the hand-over (NotRunning)
    // and the VM boots as ever
    const id = pickWarmGuest(pool.name, this.paused.filter((g) => g.vcpus === pool.vcpus && g.memoryMiB === pool.memoryMiB), this.busy)
    if (id == null) return null
    this.paused = this.paused.filter((g) => g.id !== id)
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
