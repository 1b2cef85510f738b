// The volume reconciler: on the one node that carries out volume changes (the lowest-id node with
// Ceph that is up: protocols/volume-phases.ts), it makes each RBD image match its volume record —
// created or cloned, grown, snapshotted (protected, so clonable), or removed — and reports the
// outcome through Raft (ReportVolume, signed by this node: node/own-commands.ts), as the agent does
// for VMs. What to do comes from node/volumes/plan.ts; this file does the Ceph I/O.
//
// Idempotent, so a crash mid-change converges when the next pass (here or on the next reconciler)
// runs it again: an image that exists and is ours is kept (grown if smaller), snapshots that exist
// are kept, an image already gone counts as removed. "Ours" is an owner tag in the image's
// metadata (OWNER_KEY = the volume's name and creation time), so an image someone else made under
// the same name is never adopted or removed; an untagged image made after the record (a crash
// between `rbd create` and the tag) is ours.
import type { ApplyResult, CommandEnvelope, VolumeReport } from '../../protocols/commands.ts'
import type { VolumeRecord } from '../../protocols/model.ts'
import { generationOf, imageMade } from '../../protocols/volume-phases.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { RbdClient, RbdImageInfo } from '../../storage/rbd.ts'
import { RbdError } from '../../storage/ceph-errors.ts'
import type { Logger } from '../log.ts'
import { volumeTasks } from './plan.ts'
import type { VolumeTask } from './plan.ts'

/** The Ceph calls the reconciler makes (an RbdClient). */
export type VolumeCeph = Pick<RbdClient, 'info' | 'createImage' | 'clone' | 'resize' | 'remove' | 'fence' |
'snapshotList' | 'snapshotCreate' | 'snapshotProtect' | 'snapshotUnprotect' | 'snapshotRemove' | 'metaGet' | 'metaSet'>

/** The image metadata key naming the volume an image was made for. */
export const OWNER_KEY = 'blixard.volume'
/** An untagged image counts as ours only if Ceph says it was made at most this long before the
 * volume was recorded: the record's time is the proposer's clock, the image's the reconciler's. */
export const OWNER_CLOCK_SKEW_MS = 10_000
/** A pass also runs this often without a kick: it retries transient failures and takes over the
 * work of a reconciler that went down. */
export const VOLUME_PASS_INTERVAL_MS = 5_000
/** Ceph unreachable (Unavailable) is retried this many passes for one change before it is
 * reported failed, so a monitor blip does not fail a volume but a dead cluster does. */
export const MAX_TRANSIENT_ATTEMPTS = 3
/** Removing an image a stale client still holds open: fenced, then retried this often. */
const REMOVE_RETRIES = 20
const REMOVE_RETRY_MS = 500

const GIB = 1024 ** 3

export interface VolumeReconcilerDeps {
  self: () => string
  sm: StateMachine
  rbd: VolumeCeph
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

export function ownerTag (v: VolumeRecord): string { return `${v.name}@${v.createdAt}` }

export class VolumeReconciler {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private again = false
  private stopped = false
  /** transient failures per volume change (`name#generation`) */
  private readonly attempts = new Map<string, number>()

  constructor (private readonly d: VolumeReconcilerDeps, private readonly everyMs = VOLUME_PASS_INTERVAL_MS) {}

  start (): void {
    this.timer = setInterval(() => { this.kick() }, this.everyMs)
    this.kick()
  }

  /** Run a pass now; passes never overlap, and a kick during one runs another right after it. */
  kick (): void {
    if (this.stopped) return
    if (this.running != null) { this.again = true; return }
    this.running = (async () => {
      do {
        this.again = false
        try { await this.pass() } catch (err) { this.d.log.warn('volume pass failed', { err }) }
      } while (this.again && !this.stopped)
    })().finally(() => { this.running = null })
  }

  /** Resolves when no pass is running (tests). */
  async idle (): Promise<void> { while (this.running != null) await this.running }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    await this.idle()
  }

  /** One pass over every volume waiting for this node; each carried out and reported in turn. */
  async pass (): Promise<void> {
    const tasks = volumeTasks(this.d.self(), this.d.sm.listNodes(), this.d.sm.listVolumes())
    for (const t of tasks) {
      if (this.stopped) return
      if (t.kind === 'wait') continue
      if (t.kind === 'fail') { await this.report(t.volume, 'failed', t.reason); continue }
      const key = `${t.volume.name}#${generationOf(t.volume)}`
      // the Ceph side decides the outcome; a report that fails to commit is not a Ceph failure:
      // it ends the pass, and the next one carries the change out again (idempotent) and reports
      let outcome: { report: VolumeReport, reason?: string }
      try {
        if (t.kind === 'remove') {
          const note = await this.remove(t.volume)
          outcome = note === undefined ? { report: 'gone' } : { report: 'gone', reason: note }
        } else {
          await this.ensure(t)
          outcome = { report: 'ready' }
        }
        this.attempts.delete(key)
      } catch (e) {
        const n = (this.attempts.get(key) ?? 0) + 1
        const transient = e instanceof RbdError && e.kind === 'Unavailable'
        if (transient && n < MAX_TRANSIENT_ATTEMPTS) {
          this.attempts.set(key, n)
          this.d.log.warn('volume change not carried out yet: Ceph unreachable, retrying', { volume: t.volume.name, attempt: n, err: e })
          continue
        }
        this.attempts.delete(key)
        const what = t.kind === 'remove' ? 'removing its RBD image failed' : imageMade(t.volume) ? 'changing its RBD image failed' : 'making its RBD image failed'
        outcome = { report: 'failed', reason: `${what}: ${e instanceof Error ? e.message : String(e)}` }
      }
      await this.report(t.volume, outcome.report, outcome.reason)
    }
  }

  private async report (v: VolumeRecord, outcome: VolumeReport, reason?: string): Promise<void> {
    const cmd = { type: 'ReportVolume' as const, name: v.name, node: this.d.self(), generation: generationOf(v), outcome, ...(reason !== undefined ? { reason: reason.slice(0, 1000) } : {}) }
    const r = await this.d.propose({ cmd, at: (this.d.now ?? Date.now)() })
    if (!r.ok) this.d.log.warn('volume report refused', { volume: v.name, outcome, error: r.error })
    else this.d.log.info('volume reported', { volume: v.name, outcome, generation: cmd.generation })
  }

  /** The image's info, or null when there is no such image. */
  private async infoOrNull (v: VolumeRecord): Promise<RbdImageInfo | null> {
    try { return await this.d.rbd.info(v.pool, v.name) } catch (e) {
      if (e instanceof RbdError && e.kind === 'NotFound') return null
      throw e
    }
  }

  /** Is the existing image `v`'s? Tagged for it, or untagged and made after it was recorded. */
  private async ours (v: VolumeRecord, info: RbdImageInfo): Promise<{ ours: boolean, owner: string | null }> {
    const owner = await this.d.rbd.metaGet(v.pool, v.name, OWNER_KEY)
    if (owner !== null) return { ours: owner === ownerTag(v), owner }
    const made = Date.parse(info.createdAt)
    return { ours: Number.isFinite(made) && made >= v.createdAt - OWNER_CLOCK_SKEW_MS, owner }
  }

  /** Makes the image match the record: exists (created or cloned, tagged), at least the recorded
   * size, every recorded snapshot present and protected. Each step skips what is done already
   * (a fresh image takes 4 rbd calls: each costs a monitor connection, ~0.3-1 s). */
  private async ensure (t: Extract<VolumeTask, { kind: 'ensure' }>): Promise<void> {
    const { rbd } = this.d
    const v = t.volume
    let info = await this.infoOrNull(v)
    if (info === null) {
      if (t.parent != null && v.parent != null) {
        await rbd.snapshotProtect(t.parent.pool, t.parent.name, v.parent.snapshot)
        info = await rbd.clone({ pool: t.parent.pool, image: t.parent.name, snapshot: v.parent.snapshot }, { pool: v.pool, image: v.name })
      } else {
        info = await rbd.createImage(v.pool, v.name, v.sizeGiB)
      }
      await rbd.metaSet(v.pool, v.name, OWNER_KEY, ownerTag(v))
    } else {
      const { ours, owner } = await this.ours(v, info)
      if (!ours) {
        throw new Error(`pool ${v.pool} already has an RBD image ${v.name} that this volume did not make (${owner === null ? 'it has no blixard owner tag' : `it was made for ${owner}`}); ` +
          `it was left alone. Delete this volume (the image stays), then remove or rename that image (rbd rm ${v.pool}/${v.name}) or pick another name`)
      }
      if (owner === null) await rbd.metaSet(v.pool, v.name, OWNER_KEY, ownerTag(v))
    }
    if (info.sizeBytes < v.sizeGiB * GIB) await rbd.resize(v.pool, v.name, v.sizeGiB)
    if (v.snapshots.length === 0) return
    const have = new Map((await rbd.snapshotList(v.pool, v.name)).map((s) => [s.name, s]))
    for (const s of v.snapshots) {
      if (!have.has(s)) await rbd.snapshotCreate(v.pool, v.name, s)
      if (have.get(s)?.protected !== true) await rbd.snapshotProtect(v.pool, v.name, s) // clonable right away
    }
  }

  /** Removes the image (its snapshots first) if it is ours; answers with a note when it left one
   * alone. An image already gone is removed. */
  private async remove (v: VolumeRecord): Promise<string | undefined> {
    const { rbd } = this.d
    const info = await this.infoOrNull(v)
    if (info === null) return undefined
    const { ours, owner } = await this.ours(v, info)
    if (!ours) return `the RBD image ${v.pool}/${v.name} was not made by this volume (${owner === null ? 'no blixard owner tag' : `made for ${owner}`}) and was left alone`
    for (const s of await rbd.snapshotList(v.pool, v.name)) {
      if (s.protected) await rbd.snapshotUnprotect(v.pool, v.name, s.name)
      await rbd.snapshotRemove(v.pool, v.name, s.name)
    }
    await this.removeFencingStale(v.pool, v.name)
    return undefined
  }

  /**
   * Removes an image that Raft says no VM holds. Whoever still has it open is stale: a guest killed
   * a moment ago (Ceph drops its watch only after ~30 s) or a host cut off from the cluster. They
   * are fenced as a failover does (blocklisted, lock broken), then the removal is retried while
   * the OSDs drop their watches.
   */
  private async removeFencingStale (pool: string, name: string): Promise<void> {
    const { rbd } = this.d
    const sleep = this.d.sleep ?? (async (ms: number) => { await new Promise((resolve) => setTimeout(resolve, ms)) })
    const stale = (e: unknown): boolean => e instanceof RbdError && e.kind === 'InUse' && e.message.includes(' is open by ')
    try {
      await rbd.remove(pool, name)
      return
    } catch (e) {
      if (!stale(e)) throw e
    }
    await rbd.fence(pool, name)
    for (let attempt = 0; ; attempt++) {
      try {
        await rbd.remove(pool, name)
        return
      } catch (e) {
        if (!stale(e) || attempt >= REMOVE_RETRIES) throw e
        await sleep(REMOVE_RETRY_MS)
      }
    }
  }
}
