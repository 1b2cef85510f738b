// The host side of VM memory snapshots (issue 18): what this node does for each snapshot record
// (storage/apply-snapshots.ts) it holds, driven by the record, never by a message from another
// node. So a restarted daemon finds the same work to do.
//
//   taking              — pause the guest, save memory + devices through QEMU's migration stream
//                         into <dataDir>/snapshots/<vmId>/<name>.state (node/qemu/snapshot.ts), resume
//                         it, keep the launch spec beside it (<name>.json: a restore needs the same
//                         devices), report taken (size, pause) or failed
//   restore requested   — stop the guest's QEMU, start one with the saved launch spec and
//                         `-incoming unix:…`, stream the file into it, `cont`; report restored (with
//                         the time from the old QEMU's stop to the guest running) or restore-failed
//                         (the agent then boots the guest afresh, by its restart policy)
//   deleting            — remove the files, report removed (the record goes)
//
// The state is a local file: no RBD image, no copy elsewhere (the record says so). The agent leaves
// a VM alone while `holds` says so (a save or a restore runs), as it does for a live migration.
// A daemon that restarts mid-step does the step again: a save is taken afresh; a restore whose
// report did not commit rolls the guest back once more to the same point.
import { mkdir, readFile, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import type { SnapshotReport, VmSnapshotRecord } from '../../protocols/snapshots.ts'
import { snapshotKey } from '../../protocols/snapshots.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { LaunchRecord, QemuDriver, QemuLaunchSpec } from '../qemu/driver.ts'
import { QemuError } from '../qemu/errors.ts'
import { checkVmId, runtimePaths } from '../qemu/paths.ts'
import { loadState, saveState } from '../qemu/snapshot.ts'
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
  log: Logger
  now?: () => number
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
      if (s.node !== me) continue
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
    try {
      const launched = JSON.parse(await readFile(runtimePaths(this.d.dataDir, s.vm).specFile, 'utf8')) as LaunchRecord
      if (launched.spec.generation !== s.generation) throw new QemuError('InvalidSpec', `the guest runs generation ${launched.spec.generation}, the snapshot is of ${s.generation}`)
      await mkdir(f.dir, { recursive: true })
      const { incoming: _incoming, ...spec } = launched.spec
      const r = await saveState(await this.d.driver.qmp(s.vm), f.state, f.sock)
      await writeFile(f.spec, JSON.stringify({ spec, sizeBytes: r.sizeBytes, savedAt: this.now() }, null, 2) + '\n')
      this.d.log.info('snapshot taken', { vmId: s.vm, name: s.name, sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, file: f.state })
      await this.report(s, 'taken', { sizeBytes: r.sizeBytes, pausedMs: r.pausedMs, path: f.state })
    } catch (err) {
      await rm(f.state, { force: true })
      await rm(f.spec, { force: true })
      await this.report(s, 'failed', { reason: (err as Error).message })
    }
  }

  private async restore (s: VmSnapshotRecord): Promise<void> {
    const f = snapshotFiles(this.d.dataDir, s.vm, s.name)
    const why = this.refusal(s)
    if (why != null) { await this.report(s, 'restore-failed', { reason: why }); return }
    const vm = this.d.sm.getVm(s.vm)
    const t0 = this.now()
    let started = false
    try {
      const saved = JSON.parse(await readFile(f.spec, 'utf8')) as { spec: QemuLaunchSpec }
      await stat(f.state) // a missing state file fails here, before the running guest is touched
      const sock = join(runtimePaths(this.d.dataDir, s.vm).dir, 'restore.sock')
      await this.d.driver.kill(s.vm).catch((e: unknown) => { if (!(e instanceof QemuError && e.kind === 'NotRunning')) throw e })
      await rm(sock, { force: true }) // a stale socket file would look like the new QEMU's
      // readiness 'qmp': the restored guest prints no ready marker again; it runs once resumed
      started = true
      await this.d.driver.start({ ...saved.spec, generation: vm?.generation ?? s.generation, readiness: 'qmp', incoming: sock })
      await loadState(async () => await this.d.driver.qmp(s.vm), f.state, sock)
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

  private async remove (s: VmSnapshotRecord): Promise<void> {
    const f = snapshotFiles(this.d.dataDir, s.vm, s.name)
    for (const p of [f.state, `${f.state}.partial`, f.spec]) await rm(p, { force: true })
    // the VM's snapshot dir goes with its last snapshot
    if ((await readdir(f.dir).catch(() => null))?.length === 0) await rmdir(f.dir).catch(() => {})
    await this.report(s, 'removed', {})
  }

  private async report (s: VmSnapshotRecord, event: SnapshotReport, extra: { sizeBytes?: number, pausedMs?: number, ms?: number, path?: string, reason?: string }): Promise<void> {
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
