// The host side of VM memory snapshots: what this node does for each snapshot record
// (storage/apply-snapshots.ts) it holds, driven by the record, never by a message from another
// node. So a restarted daemon finds the same work to do.
//
//   taking              — pause the guest, save memory + devices through QEMU's migration stream
//                         into <dataDir>/snapshots/<vmId>/<name>.state (node/qemu/snapshot.ts), take
//                         the RBD snapshot of each disk the record names while it is still paused,
//                         resume it; on a host with Ceph move the state into its RBD image in the
//                         cluster's pool (blixard-state.<vm>.<name>: any host can restore it) and
//                         drop the file, else keep the file with the launch spec beside it
//                         (<name>.json); report taken (size, pause, where) or failed
//   restore requested   — on the VM's host of the moment (restore.node): stop the guest's QEMU, roll
//                         each disk back to its RBD snapshot (its dead holder fenced first), start a
//                         QEMU with the same devices and `-incoming unix:…`, stream the state (the
//                         file, or the RBD image's export) into it, `cont`; report restored (the
//                         time from the old QEMU's stop to the guest running) or restore-failed (the
//                         agent then boots the guest afresh, by its restart policy)
//   deleting            — remove the state (file or image) and the disks' RBD snapshots, report
//                         removed (the record goes)
//
// And a clone's first start (resumeClone, asked by the agent of the clone's host): a QEMU with the
// clone's own devices (its TAPs, MAC, disks cloned from the snapshot's) and `-incoming`, the state
// streamed in as a restore does, `cont`, then the tiny guest is told its identity on its serial
// console (identityLine: name, address, MAC), so it answers as itself without a reboot.
//
// The state image is written after the guest resumed (`rbd import` of the file): the pause is the
// local save and the disk snapshots, not the trip through Ceph. The agent leaves a VM alone while
// `holds` says so (a save or a restore runs), as it does for a live migration. A daemon that
// restarts mid-step does the step again: a save is taken afresh (a disk snapshot or state image
// of the same name that the first attempt left is replaced); a restore whose report did not commit rolls the guest back once more to the same point.
import { mkdir, readFile, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import type { VmRecord } from '../../protocols/model.ts'
import type { SnapshotDisk, SnapshotLocation, SnapshotReport, VmSnapshotRecord } from '../../protocols/snapshots.ts'
import { snapshotKey, stateImageName } from '../../protocols/snapshots.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { RbdClient } from '../../storage/rbd.ts'
import { RbdError } from '../../storage/ceph-errors.ts'
import type { LaunchRecord, QemuDriver, QemuLaunchSpec } from '../qemu/driver.ts'
import type { HostBindings } from '../qemu/launch-spec.ts'
import { launchSpecFromVm } from '../qemu/launch-spec.ts'
import { identityLine, loadTinyGuest, type TinyGuest } from '../qemu/tiny-guest.ts'
import { imageCapabilities } from '../../protocols/images.ts'
import { writeSerial } from '../console-proxy.ts'
import { QemuError } from '../qemu/errors.ts'
import { checkVmId, runtimePaths } from '../qemu/paths.ts'
import { loadState, saveState } from '../qemu/snapshot.ts'
import type { QmpClient } from '../qemu/qmp.ts'
import type { Logger } from '../log.ts'

/** How often records are looked at besides the kicks on every applied snapshot command. */
export const SNAPSHOT_LOOP_MS = 1_000
/** A report that did not commit (no leader) is tried again after this… */
const REPORT_RETRY_MS = 500
/** …for this long, then given up (the record stays; a restarted daemon does the step again). */
const REPORT_GIVE_UP_MS = 60_000

export interface SnapshotServiceDeps {
  self: () => string
  sm: StateMachine
  driver: QemuDriver
  dataDir: string
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** why this host cannot snapshot its guests at all (they run through microvm.nix), or null */
  unsupported?: () => string | null
  /** this host's Ceph client and the cluster's pool for state images; null: no Ceph here (the
   * state stays a local file, and VMs with volumes cannot be snapshotted here) */
  ceph?: { rbd: SnapshotCeph, pool: string } | null
  /** TAPs, addresses and drives for a guest restored here from an RBD image (the host-resources
   * bindings, as a migration target's): the saved launch spec is another host's */
  bindings?: (vm: VmRecord, opts: { fence: boolean }) => Promise<Omit<HostBindings, 'tinyGuest'>>
  /** where build-tiny-guest.sh left the tiny guest (default the checkout's .guest) */
  guestDir?: string
  log: Logger
  now?: () => number
}

/** The Ceph calls snapshots make (an RbdClient). */
export type SnapshotCeph = Pick<RbdClient, 'snapshotCreate' | 'snapshotRemove' | 'snapshotUnprotect' | 'snapshotRollback' | 'fence' | 'importFile' | 'exportStream' | 'remove' | 'exists'>

/** Ceph's NotFound is the outcome a removal wants. */
async function gone (p: Promise<unknown>): Promise<void> {
  try { await p } catch (e) { if (!(e instanceof RbdError && e.kind === 'NotFound')) throw e }
}

/** Runs `make`; when Ceph says what it makes exists already (left by an attempt a restart cut
 * short), runs `clear` and `make` once more. */
async function again (make: () => Promise<unknown>, clear: () => Promise<void>): Promise<void> {
  try { await make() } catch (e) {
    if (!(e instanceof RbdError && e.kind === 'AlreadyExists')) throw e
    await clear()
    await make()
  }
}

/** Where a VM's snapshots live on its host. */
export function snapshotDir (dataDir: string, vmId: string): string {
  return join(dataDir, 'snapshots', checkVmId(vmId))
}

export function snapshotFiles (dataDir: string, vmId: string, name: string): { dir: string, state: string, spec: string, sock: string } {
  const dir = snapshotDir(dataDir, vmId)
  return { dir, state: join(dir, `${name}.state`), spec: join(dir, `${name}.json`), sock: join(dir, 'save.sock') }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export class SnapshotService {
  /** VMs with a step running here: one at a time per VM (apply allows no more either) */
  private readonly busy = new Set<string>()
  /** record steps already carried out here (key → step), so a report that failed is not redone in a loop */
  private readonly done = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null
  private stopped = false

  constructor (private readonly d: SnapshotServiceDeps) {}

  private now (): number { return (this.d.now ?? Date.now)() }

  start (): void {
    this.timer = setInterval(() => { this.kick() }, SNAPSHOT_LOOP_MS)
    this.timer.unref()
    this.kick()
  }

  stop (): void {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
  }

  /** The agent must leave this VM's guest alone: a save or a restore of it runs here. */
  holds (vmId: string): boolean { return this.busy.has(vmId) }

  /** Looks at every snapshot this host holds (on a timer, and on every applied snapshot command). */
  kick (): void {
    if (this.stopped) return
    const me = this.d.self()
    const live = new Set<string>()
    for (const s of this.d.sm.listVmSnapshots()) {
      // a restore is the VM's host's of the moment; saving and removing are the holder's
      const restoring = s.phase === 'ready' && s.restore?.phase === 'requested'
      if ((restoring ? (s.restore?.node ?? s.node) : s.node) !== me) continue
      const key = snapshotKey(s.vm, s.name)
      live.add(key)
      const step = this.stepOf(s)
      if (step == null || this.busy.has(s.vm) || this.done.get(key) === step) continue
      this.busy.add(s.vm)
      const run = step === 'take' ? this.take(s) : step === 'delete' ? this.remove(s) : this.restore(s)
      run.catch((err: unknown) => { this.d.log.warn('snapshot step failed', { vmId: s.vm, name: s.name, step, err }) })
        .finally(() => { this.busy.delete(s.vm); this.done.set(key, step); this.kick() })
    }
    for (const k of this.done.keys()) if (!live.has(k)) this.done.delete(k)
  }

  private stepOf (s: VmSnapshotRecord): string | null {
    if (s.phase === 'taking') return 'take'
    if (s.phase === 'deleting') return 'delete'
    if (s.phase === 'ready' && s.restore?.phase === 'requested') return `restore@${s.restore.requestedAt}`
    return null
  }

  /** Why this host cannot act on the VM's guest now, or null. */
  private refusal (s: VmSnapshotRecord): string | null {
    const why = this.d.unsupported?.() ?? null
    if (why != null) return why
    const vm = this.d.sm.getVm(s.vm)
    if (vm == null) return 'the VM is gone'
    if (vm.assignedNode !== this.d.self()) return 'the VM is no longer assigned to this host'
    if (vm.generation !== s.generation) return `the VM's spec changed (generation ${s.generation} → ${vm.generation})`
    return null
  }

  private async take (s: VmSnapshotRecord): Promise<void> {
    const f = snapshotFiles(this.d.dataDir, s.vm, s.name)
    const why = this.refusal(s)
    if (why != null) { await this.report(s, 'failed', { reason: why }); return }
    const disks = s.disks === 'none' ? [] : s.disks
    const ceph = this.d.ceph ?? null
    const image = stateImageName(s.vm, s.name)
    let disksTaken = false
    try {
      if (disks.length > 0 && ceph == null) throw new QemuError('NotFound', 'the VM has volumes and this host has no Ceph client to snapshot them')
      const launched = JSON.parse(await readFile(runtimePaths(this.d.dataDir, s.vm).specFile, 'utf8')) as LaunchRecord
      if (launched.spec.generation !== s.generation) throw new QemuError('InvalidSpec', `the guest runs generation ${launched.spec.generation}, the snapshot is of ${s.generation}`)
      await mkdir(f.dir, { recursive: true })
      const { incoming: _incoming, ...spec } = launched.spec
      // the disks are snapshotted while the guest stands still, after its memory is saved: they
      // match. One left by an attempt a restart cut short is replaced (only then: each rbd call
      // lengthens the pause)
      const whilePaused = ceph == null || disks.length === 0
        ? undefined
        : async () => {
          disksTaken = true
          for (const d of disks) {
            await again(async () => await ceph.rbd.snapshotCreate(d.pool, d.image, d.snapshot), async () => { await this.removeDiskSnapshot(ceph.rbd, d) })
          }
        }
      const r = await saveState(await this.d.driver.qmp(s.vm), f.state, f.sock, whilePaused != null ? { whilePaused } : {})
      if (ceph != null) {
        // the guest runs again: the state goes to the cluster's pool, where any host reads it
        await again(async () => await ceph.rbd.importFile(f.state, ceph.pool, image), async () => { await gone(ceph.rbd.remove(ceph.pool, image)) })
        await rm(f.state, { force: true })
        this.d.log.info('snapshot taken', { vmId: s.vm, name: s.name, sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, image: `${ceph.pool}/${image}`, disks: disks.length })
        await this.report(s, 'taken', { sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, pool: ceph.pool, image })
        return
      }
      await writeFile(f.spec, JSON.stringify({ spec, sizeBytes: r.sizeBytes, savedAt: this.now() }, null, 2) + '\n')
      this.d.log.info('snapshot taken', { vmId: s.vm, name: s.name, sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, file: f.state })
      await this.report(s, 'taken', { sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, path: f.state })
    } catch (err) {
      await rm(f.state, { force: true })
      await rm(f.spec, { force: true })
      if (ceph != null) {
        const left = async (): Promise<void> => {
          if (disksTaken) for (const d of disks) await this.removeDiskSnapshot(ceph.rbd, d)
          await gone(ceph.rbd.remove(ceph.pool, image))
        }
        await left().catch((e: unknown) => { this.d.log.warn('a failed save left Ceph objects; the delete removes them', { vmId: s.vm, name: s.name, err: e }) })
      }
      await this.report(s, 'failed', { reason: (err as Error).message })
    }
  }

  /** Removes one disk's RBD snapshot (unprotected first); already gone, or its image gone, is done. */
  private async removeDiskSnapshot (rbd: SnapshotCeph, d: SnapshotDisk): Promise<void> {
    await gone(rbd.snapshotUnprotect(d.pool, d.image, d.snapshot))
    await gone(rbd.snapshotRemove(d.pool, d.image, d.snapshot))
  }

  /** The launch spec of a guest restored from an RBD image here: this host's bindings for the VM
   * (as a migration target builds them). The restore fenced the disks' dead holder already. */
  private async specHere (vm: VmRecord): Promise<QemuLaunchSpec> {
    if (this.d.bindings == null) throw new QemuError('NotFound', 'this host cannot build a guest\'s devices for a restore (no host resources)')
    let tiny: TinyGuest | undefined
    if (vm.spec.image.kind === 'tiny') tiny = await loadTinyGuest(this.d.guestDir)
    const host = await this.d.bindings(vm, { fence: false })
    return launchSpecFromVm(vm, { ...(tiny != null ? { tinyGuest: tiny } : {}), ...host })
  }

  private async restore (s: VmSnapshotRecord): Promise<void> {
    const f = snapshotFiles(this.d.dataDir, s.vm, s.name)
    const why = this.refusal(s)
    if (why != null) { await this.report(s, 'restore-failed', { reason: why }); return }
    const vm = this.d.sm.getVm(s.vm)
    const t0 = this.now()
    let started = false
    const loc = s.location
    const disks = s.disks === 'none' ? [] : s.disks
    const ceph = this.d.ceph ?? null
    try {
      if (vm == null) throw new QemuError('NotFound', 'the VM is gone')
      if ((loc?.kind === 'rbd' || disks.length > 0) && ceph == null) throw new QemuError('NotFound', 'the snapshot lives in Ceph and this host has no Ceph client')
      let saved: { spec: QemuLaunchSpec } | null = null
      if (loc?.kind === 'rbd') {
        // a missing state image fails here, before the running guest is touched
        if (!(await ceph!.rbd.exists(loc.pool, loc.image))) throw new QemuError('NotFound', `the state image ${loc.pool}/${loc.image} is gone`)
      } else {
        saved = JSON.parse(await readFile(f.spec, 'utf8')) as { spec: QemuLaunchSpec }
        await stat(f.state) // a missing state file fails here, before the running guest is touched
      }
      const sock = join(runtimePaths(this.d.dataDir, s.vm).dir, 'restore.sock')
      await this.d.driver.kill(s.vm).catch((e: unknown) => { if (!(e instanceof QemuError && e.kind === 'NotRunning')) throw e })
      started = true
      // the disks go back to the snapshot's point before any QEMU opens them again; the killed
      // QEMU still holds their locks: fenced (blocklisted, lock broken), as a dead holder is
      for (const d of disks) {
        await ceph!.rbd.fence(d.pool, d.image)
        await ceph!.rbd.snapshotRollback(d.pool, d.image, d.snapshot)
      }
      const spec = saved != null ? saved.spec : await this.specHere(vm)
      await rm(sock, { force: true }) // a stale socket file would look like the new QEMU's
      // readiness 'qmp': the restored guest prints no ready marker again; it runs once resumed, with
      // the address it has now (the same VM: the same address as at the snapshot's point), which
      // its status would otherwise lose, as a live migration's target would without resumedIp
      await this.d.driver.start({ ...spec, generation: vm.generation, readiness: 'qmp', incoming: sock, ...(vm.status.ip != null ? { resumedIp: vm.status.ip } : {}) })
      await this.loadInto(s.vm, loc ?? null, f.state, sock)
      const ms = this.now() - t0
      this.d.log.info('snapshot restored', { vmId: s.vm, name: s.name, ms })
      await this.report(s, 'restored', { ms })
    } catch (err) {
      // a QEMU left waiting for state that never came would hold the VM: the agent boots it afresh.
      // Before the old QEMU was stopped (no saved spec or state here) the guest runs on untouched.
      if (started) await this.d.driver.kill(s.vm).catch(() => {})
      await this.report(s, 'restore-failed', { reason: (err as Error).message })
    }
  }

  /**
   * A clone's first start here (vm create --from-snapshot): resumes the snapshot's state in a QEMU
   * with the clone's devices (`host`: this host's bindings for it), then types its identity into
   * its console. Throws on failure with no QEMU left: the agent reports the clone failed and its
   * restart policy boots it from its disks.
   */
  async resumeClone (vm: VmRecord, host: Omit<HostBindings, 'tinyGuest'>): Promise<void> {
    const c = vm.clonedFrom
    if (c == null) throw new QemuError('InvalidSpec', `VM ${vm.spec.name} is not a clone`)
    const why = this.d.unsupported?.() ?? null
    if (why != null) throw new QemuError('InvalidSpec', why)
    const s = this.d.sm.listVmSnapshots(c.vm).find((x) => x.name === c.name)
    if (s?.phase !== 'ready' || s.location == null) throw new QemuError('NotFound', `snapshot ${c.name} of VM ${c.vm} is ${s == null ? 'gone' : s.phase}: clone ${vm.spec.name} cannot resume it`)
    const loc = s.location
    const ceph = this.d.ceph ?? null
    if (loc.kind === 'rbd' && ceph == null) throw new QemuError('NotFound', `snapshot ${c.name} lives in Ceph and this host has no Ceph client`)
    if (loc.kind === 'local-file' && s.node !== this.d.self()) throw new QemuError('NotFound', `snapshot ${c.name} is a local file on another host`)
    const tiny = vm.spec.image.kind === 'tiny' ? await loadTinyGuest(this.d.guestDir) : undefined
    const spec = launchSpecFromVm(vm, { ...host, ...(tiny != null ? { tinyGuest: tiny } : {}) })
    const paths = runtimePaths(this.d.dataDir, vm.id)
    const sock = join(paths.dir, 'restore.sock')
    const t0 = this.now()
    await rm(sock, { force: true })
    // no ready marker follows a resume: it runs once QEMU says so, with its own address
    const ip = host.ip?.split('/')[0]
    await this.d.driver.start({ ...spec, readiness: 'qmp', incoming: sock, ...(ip != null ? { resumedIp: ip } : {}) })
    try {
      await this.loadInto(vm.id, loc, snapshotFiles(this.d.dataDir, c.vm, c.name).state, sock)
      const resumedMs = this.now() - t0
      // its memory still says it is the source: an image that reads the identity line takes its
      // own name, address and MAC (apply refuses a clone with networks of any other image)
      if (imageCapabilities(vm.spec.image).identity) {
        const id = identityLine({ hostname: vm.spec.name, ip: host.ip ?? null, gw: host.gw ?? null, mac: host.nics?.[0]?.mac ?? null })
        await writeSerial(paths.serialSock, Buffer.from(id), vm.spec.name)
      }
      this.d.log.info('clone resumed from a snapshot', { vmId: vm.id, from: c.vm, snapshot: c.name, resumedMs, ms: this.now() - t0 })
    } catch (err) {
      await this.d.driver.kill(vm.id).catch(() => {})
      throw err
    }
  }

  /** Streams a snapshot's state into the QEMU of `vmId` waiting on `sock`: from its RBD image, or
   * from the local file `file` when it has no image. */
  private async loadInto (vmId: string, loc: SnapshotLocation | null, file: string, sock: string): Promise<void> {
    const qmp = async (): Promise<QmpClient> => await this.d.driver.qmp(vmId)
    if (loc?.kind !== 'rbd') { await loadState(qmp, file, sock); return }
    const ceph = this.d.ceph
    if (ceph == null) throw new QemuError('NotFound', `the state of this snapshot is in Ceph (${loc.pool}/${loc.image}) and this host has no Ceph client`)
    let exported: Promise<void> = Promise.resolve()
    await loadState(qmp, () => {
      const x = ceph.rbd.exportStream(loc.pool, loc.image)
      exported = x.done
      return x.stream
    }, sock)
    // QEMU stops reading at the state's end: rbd may then fail on a closed pipe, which is fine
    await exported.catch(() => {})
  }

  private async remove (s: VmSnapshotRecord): Promise<void> {
    const f = snapshotFiles(this.d.dataDir, s.vm, s.name)
    const disks = s.disks === 'none' ? [] : s.disks
    const ceph = this.d.ceph ?? null
    if (ceph == null && (disks.length > 0 || s.location?.kind === 'rbd')) {
      this.d.log.warn('a snapshot in Ceph cannot be removed from this host (no Ceph client)', { vmId: s.vm, name: s.name })
      return
    }
    if (ceph != null) {
      for (const d of disks) await this.removeDiskSnapshot(ceph.rbd, d)
      if (s.location?.kind === 'rbd') await gone(ceph.rbd.remove(s.location.pool, s.location.image))
    }
    for (const p of [f.state, `${f.state}.partial`, f.spec]) await rm(p, { force: true })
    // the VM's snapshot dir goes with its last snapshot
    if ((await readdir(f.dir).catch(() => null))?.length === 0) await rmdir(f.dir).catch(() => {})
    await this.report(s, 'removed', {})
  }

  private async report (s: VmSnapshotRecord, event: SnapshotReport, extra: { sizeBytes?: number, pausedMs?: number, ms?: number, path?: string, pool?: string, image?: string, reason?: string }): Promise<void> {
    const cmd = { type: 'ReportVmSnapshot' as const, vm: s.vm, name: s.name, node: this.d.self(), event, ...extra }
    if (cmd.reason != null && cmd.reason.length > 1000) cmd.reason = cmd.reason.slice(0, 1000)
    const giveUp = this.now() + REPORT_GIVE_UP_MS
    for (;;) {
      try {
        const r = await this.d.propose({ cmd, at: this.now() })
        if (!r.ok) this.d.log.warn('snapshot report refused', { vmId: s.vm, name: s.name, event, error: r.error })
        return
      } catch (err) {
        if (this.stopped || this.now() > giveUp) { this.d.log.warn('snapshot report not committed; giving up', { vmId: s.vm, name: s.name, event, err }); return }
        await sleep(REPORT_RETRY_MS)
      }
    }
  }
}
