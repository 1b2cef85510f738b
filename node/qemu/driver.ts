// The QEMU driver: runs microVMs as detached qemu processes, one runtime dir
// each (<dataDir>/vms/<vmId>/), and reports what happens to them as events.
// Guests outlive the daemon: a new driver on the same dataDir re-adopts every
// live qemu it finds (pid file, else a /proc scan) and never starts one twice.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { silentLogger, type Logger } from '../log.ts'
import { buildQemuArgv, tscKhzFromCpuinfo, type Accel, type BootSpec, type DriveSpec, type NicSpec } from './cmdline.ts'
import { QemuError } from './errors.ts'
import { classifyExit, type ExitRecord, type StopRequest } from './exit.ts'
import { followConsole, readConsole, readTail, sizeOf } from './console-log.ts'
import { tailFile, type FileTail } from './file-tail.ts'
import { probeKvm } from './kvm-probe.ts'
import { runtimePaths, vmsDir, VM_ID, type RuntimePaths } from './paths.ts'
import { findQemuPids, isOurQemu, signalPid } from './proc.ts'
import { QmpClient, type QmpEvent } from './qmp.ts'
import { loadTinyGuest, parseReadyMarker } from './tiny-guest.ts'
import { incomingArgs } from './migrate.ts'
import { failpoint } from '../../storage/failpoints.ts'

/** what qemu.spawn's failpoint runs instead of qemu: a path that cannot exist */
const SPAWN_FAILPOINT_BINARY = '/nonexistent/blixard-failpoint-qemu.spawn'

export interface QemuLaunchSpec {
  vmId: string
  /** the VM record's generation; the agent restarts a guest whose generation changed */
  generation: number
  vcpus: number
  memoryMiB: number
  boot: BootSpec
  drives?: DriveSpec[]
  nics?: NicSpec[]
  /** marker: running once the tiny guest prints its ready marker; qmp: once QMP reports running
   * (or resumes: an incoming migration's guest booted elsewhere and prints no marker here) */
  readiness: 'marker' | 'qmp'
  /** a live migration's target (node/migration/service.ts): QEMU waits with `-incoming unix:PATH`
   * for the source's state instead of booting; 'defer': with `-incoming defer`, until QMP says
   * where (migrate-incoming, once its TLS credentials are in: node/migration/tls.ts) */
  incoming?: string
  /** readiness 'qmp' of a guest that booted elsewhere (a live migration's target): the address it
   * reported there, reported again once it runs here (it prints no ready marker here, and the
   * running report replaces the VM's status) */
  resumedIp?: string
}

/** Host networking the driver does not own; cleanup() calls it for the VM's TAPs. */
export interface NetworkHook {
  removeTap (tap: string, vmId: string): Promise<void>
}

export interface QemuDriverOptions {
  dataDir: string
  /** auto: probe KVM with a test boot (once per process), else TCG */
  accel?: Accel | 'auto'
  /** the guest the KVM probe boots; default: the tiny guest in .guest/ */
  probeGuest?: { kernel: string, initrd: string }
  /** default: from /proc/cpuinfo */
  tscKhz?: number | null
  qemuBinary?: string
  /** a command that execs qemu in place (same pid), e.g. ['ip', 'netns', 'exec', 'NS'] to run guests in a network namespace */
  spawnPrefix?: string[]
  network?: NetworkHook
  log?: Logger
  stopTimeoutMs?: number
  /** a guest not ready by then is killed and reported failed */
  bootTimeoutMs?: number
  /** how often an adopted qemu (not our child) is checked for life */
  livenessPollMs?: number
  now?: () => number
}

export type VmEvent =
  | { type: 'starting', vmId: string, generation: number, pid: number }
  | { type: 'running', vmId: string, generation: number, pid: number, ip: string | null, adopted: boolean }
  | { type: 'stopping', vmId: string, generation: number }
  | { type: 'stopped', vmId: string, generation: number, exit: ExitRecord }
  | { type: 'failed', vmId: string, generation: number, reason: string, exit: ExitRecord }

export type VmRuntimeStatus =
  | { state: 'running', vmId: string, generation: number, pid: number, ready: boolean, ip: string | null, accel: Accel, startedAt: number }
  | { state: 'stopped', vmId: string, generation: number, exit: ExitRecord | null }
  | { state: 'crashed', vmId: string, generation: number, exit: ExitRecord }

/** What spec.json holds. */
export interface LaunchRecord {
  spec: QemuLaunchSpec
  argv: string[]
  accel: Accel
  startedAt: number
  /** the id the QEMU was launched under when it was handed to another since (claim(): a warm pool
   * guest taken by a VM). Its command line still names that id and its QMP socket's old path, so
   * re-adoption after a daemon restart matches the process by it. */
  launchedAs?: string
}

export interface StartResult {
  pid: number
  accel: Accel
}

export interface LogOptions {
  /** keep yielding new output until the qemu exits or signal aborts */
  follow?: boolean
  /** start this many bytes before the end (default: the whole log) */
  tailBytes?: number
  /** false: only this host's console, without what the guest printed before a live move here */
  history?: boolean
  signal?: AbortSignal
}

export const STOP_TIMEOUT_MS = 10_000
export const BOOT_TIMEOUT_MS = 120_000
export const LIVENESS_POLL_MS = 500
const POWERDOWN_REPEAT_MS = 2_000
const QMP_CONNECT_MS = 5_000
/** how much of the console's end is searched for the ready marker (a verbose boot may print a lot first) */
const MARKER_WINDOW = 8 * 1024

/** One qemu process the driver is watching. */
interface Live {
  vmId: string
  generation: number
  pid: number
  paths: RuntimePaths
  record: LaunchRecord
  child: ChildProcess | null
  qmp: QmpClient | null
  qmpConnecting: Promise<QmpClient> | null
  ready: boolean
  ip: string | null
  requested: StopRequest
  forced: boolean
  shutdownReason: string | null
  guestPanicked: boolean
  bootFailure: string | null
  exit: ExitRecord | null
  exited: Promise<ExitRecord>
  resolveExited: (r: ExitRecord) => void
  tail: FileTail | null
  timers: NodeJS.Timeout[]
  /** aborted when watching ends (exit or close): stops QMP connect retries */
  watching: AbortController
}

async function readJson<T> (path: string): Promise<T | null> {
  try { return JSON.parse(await readFile(path, 'utf8')) as T } catch { return null }
}

async function writeJsonAtomic (path: string, v: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(v, null, 2) + '\n')
  await rename(`${path}.tmp`, path)
}

/** The id and QMP socket path a QEMU's command line names: its own, or those it was launched under
 * before claim() handed it on. */
function launchedAs (dataDir: string, vmId: string, record: LaunchRecord): { id: string, qmpSock: string } {
  const id = record.launchedAs ?? vmId
  return { id, qmpSock: runtimePaths(dataDir, id).qmpSock }
}

async function exists (path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}

async function lastLines (path: string, n: number): Promise<string> {
  try {
    const fh = await open(path, 'r')
    try {
      const { size } = await fh.stat()
      const len = Math.min(size, 4096)
      const buf = Buffer.alloc(len)
      await fh.read(buf, 0, len, size - len)
      return buf.toString('utf8').trim().split('\n').filter((l) => l !== '').slice(-n).join(' / ')
    } finally { await fh.close() }
  } catch { return '' }
}

export class QemuDriver {
  readonly dataDir: string
  private readonly opts: QemuDriverOptions
  private readonly log: Logger
  private readonly now: () => number
  private readonly tscKhz: number | null
  private readonly live = new Map<string, Live>()
  private readonly listeners = new Set<(e: VmEvent) => void>()
  private readonly locks = new Map<string, Promise<unknown>>()
  /** starts between their spawn and their tracking: find() must not adopt those */
  private readonly spawning = new Map<string, Promise<unknown>>()
  private accel: Promise<Accel> | null = null
  private closed = false

  constructor (opts: QemuDriverOptions) {
    this.opts = opts
    this.dataDir = opts.dataDir
    this.log = (opts.log ?? silentLogger).child({ component: 'qemu' })
    this.now = opts.now ?? Date.now
    this.tscKhz = opts.tscKhz !== undefined ? opts.tscKhz : tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'))
  }

  /** KVM or TCG for every guest of this driver (the probe runs once per process). */
  async resolveAccel (): Promise<Accel> {
    this.accel ??= (async () => {
      const a = this.opts.accel ?? 'auto'
      if (a !== 'auto') return a
      const guest = this.opts.probeGuest ?? await loadTinyGuest()
      const r = await probeKvm({ ...guest, qemuBinary: this.opts.qemuBinary, log: this.log, dir: join(this.opts.dataDir, 'kvm-probe') })
      return r.accel
    })()
    return await this.accel
  }

  onEvent (fn: (e: VmEvent) => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Resolves with the first event for vmId that matches. */
  async waitForEvent (vmId: string, match: (e: VmEvent) => boolean, timeoutMs: number): Promise<VmEvent> {
    return await new Promise<VmEvent>((resolve, reject) => {
      const off = this.onEvent((e) => { if (e.vmId === vmId && match(e)) { off(); clearTimeout(t); resolve(e) } })
      const t = setTimeout(() => { off(); reject(new QemuError('Timeout', `no matching event for ${vmId} within ${timeoutMs} ms`)) }, timeoutMs)
    })
  }

  /** Launches the guest; resolves once qemu runs (readiness arrives as a 'running' event). */
  async start (spec: QemuLaunchSpec): Promise<StartResult> {
    this.assertOpen()
    const paths = runtimePaths(this.dataDir, spec.vmId)
    const accel = await this.resolveAccel()
    const { binary, args } = buildQemuArgv(spec, { accel, tscKhz: this.tscKhz, qemuBinary: this.opts.qemuBinary }, paths)
    if (spec.incoming != null) args.push(...incomingArgs(spec.incoming === 'defer' ? 'defer' : `unix:${spec.incoming}`))
    return await this.locked(spec.vmId, async () => {
      const running = await this.find(spec.vmId)
      if (running != null) throw new QemuError('AlreadyRunning', `${spec.vmId} already runs as pid ${running.pid}`)
      // until the new qemu is tracked, status()/list() wait instead of reading half-replaced files
      let settle: () => void = () => {}
      this.spawning.set(spec.vmId, new Promise<void>((resolve) => { settle = resolve }))
      try { return await this.launch(spec, paths, binary, args, accel) } finally {
        this.spawning.delete(spec.vmId)
        settle()
      }
    })
  }

  private async launch (spec: QemuLaunchSpec, paths: RuntimePaths, binary: string, args: string[], accel: Accel): Promise<StartResult> {
    await mkdir(paths.dir, { recursive: true })
    if (await exists(paths.serialLog)) await rename(paths.serialLog, `${paths.serialLog}.1`) // keep the previous boot's console
    // an earlier boot's history is not this one's: a live move's target writes its own after the switchover
    for (const p of [paths.exitFile, paths.pidFile, paths.qmpSock, paths.serialSock, paths.consoleHistory]) await rm(p, { force: true })
    const record: LaunchRecord = { spec, argv: [binary, ...args], accel, startedAt: this.now() }
    await writeJsonAtomic(paths.specFile, record)
    const out = openSync(paths.qemuLog, 'a')
    // own session and no pipes: qemu must survive the daemon and never block on a dead reader
    // failpoint qemu.spawn (storage/failpoints.ts): a binary that does not exist, so the spawn fails
    // through the same path as a missing or unrunnable qemu
    const [cmd, ...pre] = failpoint('qemu.spawn') != null ? [SPAWN_FAILPOINT_BINARY] : [...(this.opts.spawnPrefix ?? []), binary]
    const child = spawn(cmd, [...pre, ...args], { detached: true, stdio: ['ignore', out, out] })
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', (e) => { reject(new QemuError('SpawnFailed', `cannot run ${cmd}: ${e.message}`)) })
    })
    try {
      await spawned
    } catch (e) {
      const exit = classifyExit({ code: null, signal: null, requested: null, forced: false, shutdownReason: null, guestPanicked: false, ready: false, bootFailure: (e as Error).message, stderrTail: '' }, this.now())
      await writeJsonAtomic(paths.exitFile, exit)
      throw e
    } finally {
      closeSync(out)
    }
    child.on('error', (e) => { this.log.warn('qemu child process error', { vmId: spec.vmId, err: e }) })
    const pid = child.pid as number
    child.unref()
    const l = this.track(spec.vmId, pid, paths, record, child)
    await writeFile(paths.pidFile, `${pid}\n`)
    this.log.info('qemu started', { vmId: spec.vmId, generation: spec.generation, pid, accel })
    this.emit({ type: 'starting', vmId: spec.vmId, generation: spec.generation, pid })
    this.watch(l, false)
    return { pid, accel }
  }

  /** Hands the running, booted guest `from` over to id `to` at `generation` and resumes it (a warm
   * pool guest claimed by a VM, node/pools/service.ts): its runtime dir is renamed (QEMU keeps its
   * open files and sockets, which move with the dir), the launch record rewritten under the new id
   * (naming the old one for re-adoption), and `cont` sent. No 'running' event: the caller reports.
   * NotRunning when `from` has no booted QEMU; AlreadyRunning when `to` has one. */
  async claim (from: string, to: string, generation: number): Promise<{ pid: number, ip: string | null }> {
    this.assertOpen()
    return await this.locked(from, async () => await this.locked(to, async () => {
      const l = await this.find(from)
      if (l == null || l.exit != null || !l.ready) throw new QemuError('NotRunning', `${from} has no booted qemu to hand over`)
      const there = await this.find(to)
      if (there != null) throw new QemuError('AlreadyRunning', `${to} already runs as pid ${there.pid}`)
      const target = runtimePaths(this.dataDir, to)
      await rm(target.dir, { recursive: true, force: true }) // what an earlier, ended guest of `to` left
      await rename(l.paths.dir, target.dir)
      this.live.delete(from)
      l.vmId = to
      l.paths = target
      l.generation = generation
      l.record = { ...l.record, spec: { ...l.record.spec, vmId: to, generation }, launchedAs: l.record.launchedAs ?? from }
      this.live.set(to, l)
      await writeJsonAtomic(target.specFile, l.record)
      const qmp = await this.connectQmp(l, QMP_CONNECT_MS)
      await qmp.execute('cont')
      this.log.info('guest handed over', { from, vmId: to, pid: l.pid, generation })
      return { pid: l.pid, ip: l.ip }
    }))
  }

  /** Graceful stop: ACPI power button through QMP, then SIGKILL after the timeout. */
  async stop (vmId: string, opts: { timeoutMs?: number } = {}): Promise<ExitRecord> {
    this.assertOpen()
    return await this.locked(vmId, async () => {
      const l = await this.find(vmId)
      if (l == null) throw new QemuError('NotRunning', `${vmId} has no running qemu`)
      if (l.exit != null) return l.exit
      l.requested = 'stop'
      this.emit({ type: 'stopping', vmId, generation: l.generation })
      const timeoutMs = opts.timeoutMs ?? this.opts.stopTimeoutMs ?? STOP_TIMEOUT_MS
      const deadline = this.now() + timeoutMs
      // the press is an edge: a guest still booting has nobody listening yet, so press again
      for (;;) {
        try {
          const qmp = l.qmp ?? await this.connectQmp(l, Math.min(QMP_CONNECT_MS, Math.max(1, deadline - this.now())))
          await qmp.execute('system_powerdown', undefined, { timeoutMs: Math.max(1, deadline - this.now()) })
        } catch (e) {
          if (l.exit != null) return l.exit
          this.log.warn('system_powerdown failed', { vmId, err: e })
        }
        const left = deadline - this.now()
        const exit = await this.waitExit(l, Math.max(0, Math.min(left, POWERDOWN_REPEAT_MS)))
        if (exit != null) return exit
        if (left <= POWERDOWN_REPEAT_MS) break
      }
      this.log.warn('guest did not power off in time; SIGKILL', { vmId, timeoutMs })
      l.forced = true
      signalPid(l.pid, 'SIGKILL')
      return await this.waitExit(l, null) as ExitRecord
    })
  }

  /** SIGKILL now. */
  async kill (vmId: string): Promise<ExitRecord> {
    this.assertOpen()
    return await this.locked(vmId, async () => {
      const l = await this.find(vmId)
      if (l == null) throw new QemuError('NotRunning', `${vmId} has no running qemu`)
      if (l.exit != null) return l.exit
      l.requested = 'kill'
      this.emit({ type: 'stopping', vmId, generation: l.generation })
      signalPid(l.pid, 'SIGKILL')
      return await this.waitExit(l, null) as ExitRecord
    })
  }

  /** The live VM's QMP connection (QEMU serves one client per socket, so a live migration goes
   * through the driver's own); NotRunning when it has no live qemu. */
  async qmp (vmId: string, timeoutMs = QMP_CONNECT_MS): Promise<QmpClient> {
    this.assertOpen()
    const l = await this.find(vmId)
    if (l == null || l.exit != null) throw new QemuError('NotRunning', `${vmId} has no running qemu`)
    return await this.connectQmp(l, timeoutMs)
  }

  /** What the VM is doing now; NotFound when the driver has no runtime dir for it. */
  async status (vmId: string): Promise<VmRuntimeStatus> {
    this.assertOpen()
    const l = await this.find(vmId)
    if (l != null && l.exit == null) return this.runningStatus(l)
    const paths = runtimePaths(this.dataDir, vmId)
    const record = await readJson<LaunchRecord>(paths.specFile)
    if (record == null) throw new QemuError('NotFound', `no runtime dir for ${vmId}`)
    const exit = l?.exit ?? await readJson<ExitRecord>(paths.exitFile)
    const generation = record.spec.generation
    if (exit != null && exit.outcome === 'crashed') return { state: 'crashed', vmId, generation, exit }
    return { state: 'stopped', vmId, generation, exit }
  }

  /** Every VM with a runtime dir; live qemus not yet watched are re-adopted. */
  async list (): Promise<VmRuntimeStatus[]> {
    this.assertOpen()
    let names: string[]
    try { names = await readdir(vmsDir(this.dataDir)) } catch { return [] }
    const out: VmRuntimeStatus[] = []
    for (const vmId of names.sort()) {
      if (!VM_ID.test(vmId)) continue // not ours
      try { out.push(await this.status(vmId)) } catch (e) {
        if (!(e instanceof QemuError && e.kind === 'NotFound')) throw e
      }
    }
    return out
  }

  /** The guest's console: the whole log (or its last tailBytes), then with follow
   * what comes next until the qemu exits or opts.signal aborts. */
  async * logs (vmId: string, opts: LogOptions = {}): AsyncGenerator<string> {
    const paths = runtimePaths(this.dataDir, vmId)
    if (!await exists(paths.specFile)) throw new QemuError('NotFound', `no runtime dir for ${vmId}`)
    const l = opts.follow === true ? await this.find(vmId) : null
    // a guest that moved here live: what it printed before, then this host's log, as one console
    // (a tail takes from the history only what this host's log does not cover)
    const fromHistory = opts.tailBytes == null ? undefined : Math.max(0, opts.tailBytes - await sizeOf(paths.serialLog))
    if (fromHistory !== 0 && opts.history !== false) {
      const { text } = await readConsole(paths.consoleHistory, fromHistory == null ? {} : { tailBytes: fromHistory })
      if (text !== '') yield text
    }
    if (l == null || l.exit != null) {
      const { text } = await readConsole(paths.serialLog, opts)
      if (text !== '') yield text
      return
    }
    yield * followConsole(paths.serialLog, { ...opts, until: l.exited })
  }

  /** The console to hand to a live move's target: the last `maxBytes` of this guest's history
   * (from the moves before) and this host's log, as bytes. NotFound without a runtime dir. */
  async consoleHistory (vmId: string, maxBytes: number): Promise<Buffer> {
    const paths = runtimePaths(this.dataDir, vmId)
    if (!await exists(paths.specFile)) throw new QemuError('NotFound', `no runtime dir for ${vmId}`)
    const here = await readTail(paths.serialLog, maxBytes)
    const before = here.length < maxBytes ? await readTail(paths.consoleHistory, maxBytes - here.length) : Buffer.alloc(0)
    return Buffer.concat([before, here])
  }

  /** Stores what the guest printed before its live move here (read first by logs()). */
  async writeConsoleHistory (vmId: string, text: string): Promise<void> {
    const paths = runtimePaths(this.dataDir, vmId)
    if (!await exists(paths.specFile)) throw new QemuError('NotFound', `no runtime dir for ${vmId}`)
    const tmp = `${paths.consoleHistory}.tmp`
    await writeFile(tmp, text)
    await rename(tmp, paths.consoleHistory)
  }

  /** Removes everything start() created: kills a live qemu, asks the network hook to
   * remove the VM's TAPs, deletes the runtime dir. Idempotent. */
  async cleanup (vmId: string): Promise<void> {
    this.assertOpen()
    await this.locked(vmId, async () => {
      const paths = runtimePaths(this.dataDir, vmId)
      const l = await this.find(vmId)
      if (l != null && l.exit == null) {
        l.requested ??= 'kill'
        signalPid(l.pid, 'SIGKILL')
        await this.waitExit(l, null)
      }
      const record = await readJson<LaunchRecord>(paths.specFile)
      for (const nic of record?.spec.nics ?? []) {
        if (this.opts.network != null) await this.opts.network.removeTap(nic.tap, vmId)
      }
      this.live.delete(vmId)
      await rm(paths.dir, { recursive: true, force: true })
      this.log.info('vm cleaned up', { vmId })
    })
  }

  /** Stops watching (QMP connections, tails, timers) without touching any guest:
   * what a daemon shutdown does. A new driver re-adopts the guests. */
  async close (): Promise<void> {
    this.closed = true
    for (const l of this.live.values()) {
      this.unwatch(l)
      l.child?.removeAllListeners('exit')
      await l.qmp?.close()
    }
    this.live.clear()
    this.listeners.clear()
  }

  // ---- internals ----

  private assertOpen (): void {
    if (this.closed) throw new QemuError('Closed', 'the QEMU driver is closed')
  }

  private emit (e: VmEvent): void {
    if (this.closed) return
    for (const fn of [...this.listeners]) {
      try { fn(e) } catch (err) { this.log.error('event listener threw', { err }) }
    }
  }

  private async locked<T> (vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(vmId, tail)
    try { return await run } finally {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId)
    }
  }

  private runningStatus (l: Live): VmRuntimeStatus {
    return { state: 'running', vmId: l.vmId, generation: l.generation, pid: l.pid, ready: l.ready, ip: l.ip, accel: l.record.accel, startedAt: l.record.startedAt }
  }

  /** The live qemu of vmId: watched already, or found on disk and adopted. Also
   * records an exit that happened while nobody watched. */
  private async find (vmId: string): Promise<Live | null> {
    await this.spawning.get(vmId)
    const known = this.live.get(vmId)
    if (known != null && known.exit == null) return known
    const paths = runtimePaths(this.dataDir, vmId)
    const record = await readJson<LaunchRecord>(paths.specFile)
    if (record == null) return null
    let pid: number | null = null
    const fromFile = Number((await readFile(paths.pidFile, 'utf8').catch(() => '')).trim())
    const as = launchedAs(this.dataDir, vmId, record)
    if (fromFile > 0 && await isOurQemu(fromFile, as.id, as.qmpSock)) pid = fromFile
    else if (fromFile === 0 && !await exists(paths.exitFile)) {
      // a daemon that died between spawn and writing the pid file left no pid: scan
      const found = await findQemuPids(as.id, as.qmpSock)
      if (found.length > 1) this.log.error('several qemu processes for one VM', { vmId, pids: found })
      pid = found[0] ?? null
    }
    if (pid == null) {
      if (fromFile > 0 && !await exists(paths.exitFile)) {
        // it ended while no driver watched: exit status unknown
        const exit = classifyExit({ code: null, signal: null, requested: null, forced: false, shutdownReason: null, guestPanicked: false, ready: true, bootFailure: null, stderrTail: await lastLines(paths.qemuLog, 2) }, this.now())
        exit.reason = 'qemu ended while blixard-node was not watching (exit status unknown)'
        await writeJsonAtomic(paths.exitFile, exit)
        await rm(paths.pidFile, { force: true })
        this.emit({ type: 'failed', vmId, generation: record.spec.generation, reason: exit.reason, exit })
      }
      return null
    }
    if (fromFile !== pid) await writeFile(paths.pidFile, `${pid}\n`)
    const l = this.track(vmId, pid, paths, record, null)
    this.log.info('re-adopted running qemu', { vmId, pid, generation: l.generation })
    this.watch(l, true)
    return l
  }

  private track (vmId: string, pid: number, paths: RuntimePaths, record: LaunchRecord, child: ChildProcess | null): Live {
    let resolveExited: (r: ExitRecord) => void = () => {}
    const exited = new Promise<ExitRecord>((resolve) => { resolveExited = resolve })
    const l: Live = {
      vmId, pid, paths, record, child, generation: record.spec.generation,
      qmp: null, qmpConnecting: null, ready: false, ip: null, requested: null, forced: false, shutdownReason: null,
      guestPanicked: false, bootFailure: null, exit: null, exited, resolveExited, tail: null, timers: [], watching: new AbortController()
    }
    this.live.set(vmId, l)
    child?.once('exit', (code, signal) => { void this.onExit(l, code, signal) })
    return l
  }

  /** Readiness, QMP events, boot timeout and (for adopted qemus) liveness polling. */
  private watch (l: Live, adopted: boolean): void {
    const markReady = (ip: string | null): void => {
      if (l.ready || l.exit != null) return
      l.ready = true
      l.ip = ip
      l.tail?.stop()
      l.tail = null
      this.log.info('guest running', { vmId: l.vmId, pid: l.pid, ip })
      this.emit({ type: 'running', vmId: l.vmId, generation: l.generation, pid: l.pid, ip, adopted })
    }
    if (l.record.spec.readiness === 'marker') {
      let text = ''
      l.tail = tailFile(l.paths.serialLog, (s) => {
        const joined = text + s
        text = joined.slice(-MARKER_WINDOW) // the marker line is short: a window of the end suffices
        const m = parseReadyMarker(joined)
        if (m != null) markReady(m.ip)
      })
    }
    void this.connectQmp(l, QMP_CONNECT_MS).then(async (qmp) => {
      if (l.record.spec.readiness === 'qmp') {
        // an incoming migration's guest runs once QEMU resumes it: listen before asking, so a
        // resume between the two is not missed
        const ip = l.record.spec.resumedIp ?? null
        qmp.onEvent((e) => { if (e.event === 'RESUME') markReady(ip) })
        const st = await qmp.execute('query-status') as { status?: string }
        if (st.status === 'running') markReady(ip)
      }
    }).catch((e: unknown) => {
      if (l.exit == null) this.log.warn('no QMP connection; relying on process exit', { vmId: l.vmId, err: e })
    })
    const bootMs = this.opts.bootTimeoutMs ?? BOOT_TIMEOUT_MS
    // an incoming migration's QEMU is not booting: it runs when the source's memory has arrived,
    // which for a large guest takes longer than a boot; its migration record ends it otherwise
    if (l.record.spec.incoming != null) return this.watchLiveness(l)
    const boot = setTimeout(() => {
      if (l.ready || l.exit != null) return
      l.bootFailure = `guest not ready within ${bootMs} ms (${l.record.spec.readiness === 'marker' ? 'no ready marker on the console' : 'QMP never reported running'})`
      this.log.warn('boot timeout; SIGKILL', { vmId: l.vmId })
      signalPid(l.pid, 'SIGKILL')
    }, bootMs)
    boot.unref()
    l.timers.push(boot)
    this.watchLiveness(l)
  }

  private watchLiveness (l: Live): void {
    if (l.child == null) {
      // not our child: no exit event, so look
      const poll = setInterval(() => { void this.checkAdopted(l) }, this.opts.livenessPollMs ?? LIVENESS_POLL_MS)
      poll.unref()
      l.timers.push(poll)
    }
  }

  private unwatch (l: Live): void {
    l.watching.abort()
    for (const t of l.timers) clearInterval(t)
    l.timers = []
    l.tail?.stop()
    l.tail = null
  }

  /** The VM's one QMP connection (QEMU serves one client per socket): shared by
   * the watcher and stop(), opened once even when both ask at the same time. */
  private async connectQmp (l: Live, timeoutMs: number): Promise<QmpClient> {
    if (l.qmp != null && !l.qmp.closed) return l.qmp
    l.qmpConnecting ??= (async () => {
      const qmp = await QmpClient.connect(l.paths.qmpSock, { timeoutMs: Math.max(timeoutMs, QMP_CONNECT_MS), signal: l.watching.signal })
      if (l.exit != null || this.closed) { await qmp.close(); throw new QemuError('QmpClosed', `${l.vmId} ended`) }
      l.qmp = qmp
      qmp.onEvent((e) => { this.onQmpEvent(l, e) })
      // qemu closes QMP as it exits: look now rather than at the next poll
      qmp.onClose(() => { if (l.child == null) void this.checkAdopted(l) })
      return qmp
    })().finally(() => { l.qmpConnecting = null })
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      t = setTimeout(() => { reject(new QemuError('Timeout', `QMP ${l.paths.qmpSock}: not connected within ${timeoutMs} ms`)) }, timeoutMs)
    })
    try { return await Promise.race([l.qmpConnecting, timeout]) } finally { clearTimeout(t) }
  }

  private onQmpEvent (l: Live, e: QmpEvent): void {
    if (e.event === 'SHUTDOWN') l.shutdownReason = typeof e.data?.reason === 'string' ? e.data.reason : 'unknown'
    if (e.event === 'GUEST_PANICKED') l.guestPanicked = true
    if (e.event === 'SHUTDOWN' || e.event === 'GUEST_PANICKED' || e.event === 'RESET') {
      this.log.info('qmp event', { vmId: l.vmId, event: e.event, data: e.data })
    }
  }

  private async checkAdopted (l: Live): Promise<void> {
    if (l.exit != null || this.closed) return
    const as = launchedAs(this.dataDir, l.vmId, l.record)
    if (await isOurQemu(l.pid, as.id, as.qmpSock)) return
    await this.onExit(l, null, null)
  }

  /** The exit, or null after ms (null ms: no limit). The timer is ref'd on purpose:
   * the driver's watchers are not, and a caller waiting here must keep the process alive. */
  private async waitExit (l: Live, ms: number | null): Promise<ExitRecord | null> {
    let t: NodeJS.Timeout | undefined
    const timeout = new Promise<null>((resolve) => {
      t = ms == null ? setInterval(() => {}, 60_000) : setTimeout(() => { resolve(null) }, ms)
    })
    try { return await Promise.race([l.exited, timeout]) } finally { clearInterval(t) }
  }

  private async onExit (l: Live, code: number | null, signal: string | null): Promise<void> {
    if (l.exit != null || this.closed) return
    const exit = classifyExit({
      code, signal, requested: l.requested, forced: l.forced, shutdownReason: l.shutdownReason,
      guestPanicked: l.guestPanicked, ready: l.ready, bootFailure: l.bootFailure,
      stderrTail: await lastLines(l.paths.qemuLog, 2)
    }, this.now())
    if (l.exit != null) return
    l.exit = exit
    this.unwatch(l)
    await l.qmp?.close()
    try {
      await writeJsonAtomic(l.paths.exitFile, exit)
      await rm(l.paths.pidFile, { force: true })
      // a killed qemu leaves its sockets behind
      for (const p of [l.paths.qmpSock, l.paths.serialSock]) await unlink(p).catch(() => {})
    } catch (e) {
      this.log.warn('could not record the exit', { vmId: l.vmId, err: e }) // dir removed by cleanup
    }
    this.log[exit.outcome === 'crashed' ? 'warn' : 'info']('qemu exited', { vmId: l.vmId, pid: l.pid, ...exit })
    l.resolveExited(exit)
    if (exit.outcome === 'crashed') this.emit({ type: 'failed', vmId: l.vmId, generation: l.generation, reason: exit.reason, exit })
    else this.emit({ type: 'stopped', vmId: l.vmId, generation: l.generation, exit })
  }
}
