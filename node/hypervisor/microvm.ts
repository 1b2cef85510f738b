// The Hypervisor of NixOS hosts with microvm.nix's host module (nixos/README.md, "A guest's life on
// the NixOS path"): each guest's flake is rendered (nixos/render.ts) into <dataDir>/guests/NAME, its
// runner built with `nix build` and installed under /var/lib/microvms/NAME, and run by systemd as
// `microvm@NAME` (nixos/microvm-host.ts builds every argv). Under systemd, not directly: the fence
// (node/ha/microvm-fence.ts, node/fence-watchdog.ts) stops this host's guests with systemctl, and a
// unit outlives a daemon restart, so a guest started any other way would escape both.
//
// Every command and file write goes through an injected HostExecutor: `nix build` and systemd do not
// run where the tests do, so the tests drive this class against a recording executor
// (test/nixos/microvm-hypervisor.test.ts), as test/net-host/ does for host networking.
//
// What the agent needs beyond systemd's view is kept in <dataDir>/guests/NAME/blixard-guest.json:
// which VM (id, generation) the unit runs, whether this host asked it to stop (systemd cannot tell
// a requested stop from a guest powering off: the restart policy needs to), and why the last start
// failed before the unit ran (a failed `nix build`).
import { execFile, spawn } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { VmRecord } from '../../protocols/model.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { renderGuestFlake, type GuestInterface, type RbdAttachment } from '../../nixos/render.ts'
import { attachTapArgv, consoleLogArgv, installSteps, MICROVM_STATE_DIR, parseSystemctlShow, removeSteps, systemctlArgv, systemctlShowArgv, unitName, type Argv, type HostStep } from '../../nixos/microvm-host.ts'
import { GUESTS_SUBDIR } from '../ha/microvm-fence.ts'
import { bridgeName } from '../net-host/names.ts'
import { silentLogger, type Logger } from '../log.ts'
import type { ConsoleOptions, GuestEvent, GuestExit, GuestStart, GuestStatus, Hypervisor } from './types.ts'

/** The agent's own record of a guest, beside its flake. */
export const GUEST_META_FILE = 'blixard-guest.json'
/** A guest build fetches nothing (the host's pinned inputs) but may compile: generous. */
export const NIX_BUILD_TIMEOUT_MS = 30 * 60_000
/** Any other command (systemctl waits for the guest's shutdown, ip is instant). */
export const COMMAND_TIMEOUT_MS = 60_000
/** journalctl counts lines, the console API bytes: a tail of N bytes asks for N/this lines. */
export const CONSOLE_LINE_BYTES = 80
/** The whole console when no tail is asked for (the journal keeps what it keeps). */
export const CONSOLE_MAX_LINES = 100_000
/** Bound on one command's captured output (systemctl show and ip print little). */
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024

/** Runs host commands and file writes for the microvm.nix path; a test records them instead. */
export interface HostExecutor {
  /** runs argv; resolves with its stdout; rejects with an Error naming the command and its stderr */
  run: (argv: Argv) => Promise<string>
  /** writes a file, making its directory */
  write: (path: string, content: string) => Promise<void>
  /** a file's text, or null when it does not exist */
  read: (path: string) => Promise<string | null>
  /** the names in a directory, [] when it does not exist */
  list: (dir: string) => Promise<string[]>
  /** argv's stdout as it comes, until it exits or signal aborts */
  stream: (argv: Argv, signal?: AbortSignal) => AsyncGenerator<string>
}

interface GuestMeta {
  vmId: string
  generation: number
  /** ms, when this host last started it */
  startedAt: number | null
  stopRequested: boolean
  /** why the last start failed before the unit ran (render, build, install), or null */
  startError: string | null
}

export interface MicrovmHypervisorOptions {
  dataDir: string
  exec: HostExecutor
  /** microvm.nix's state directory (default /var/lib/microvms) */
  stateDir?: string
  /** flake URLs of nixpkgs and microvm.nix the guests build with; hosts should pin the ones they run */
  inputs?: { nixpkgs?: string, microvm?: string }
  /** an RBD image's size (cloud-hypervisor and firecracker take it with the mapped device); null: unknown */
  volumeSizeGiB?: (pool: string, image: string) => number | null
  log?: Logger
  now?: () => number
}

export class MicrovmHypervisor implements Hypervisor {
  readonly kind = 'microvm' as const
  private readonly log: Logger
  private readonly stateDir: string
  private readonly guestsDir: string

  constructor (private readonly o: MicrovmHypervisorOptions) {
    this.log = (o.log ?? silentLogger).child({ component: 'microvm' })
    this.stateDir = o.stateDir ?? MICROVM_STATE_DIR
    this.guestsDir = join(o.dataDir, GUESTS_SUBDIR)
  }

  private now (): number { return (this.o.now ?? Date.now)() }

  async prepare (): Promise<void> {}

  cannotLaunch (vm: VmRecord): string | null {
    if (vm.spec.image.kind === 'kernel') return 'a kernel image runs on the QEMU driver; this host runs guests through microvm.nix (a flake or the tiny image)'
    return null
  }

  /** The guests this host rendered, with their records: name → meta. */
  private async guests (): Promise<Map<string, GuestMeta>> {
    const out = new Map<string, GuestMeta>()
    for (const name of (await this.o.exec.list(this.guestsDir)).sort()) {
      try { unitName(name) } catch { continue } // not one of ours
      const meta = await this.readMeta(name)
      if (meta != null) out.set(name, meta)
    }
    return out
  }

  private async readMeta (name: string): Promise<GuestMeta | null> {
    const text = await this.o.exec.read(join(this.guestsDir, name, GUEST_META_FILE))
    if (text == null) return null
    try {
      const m = JSON.parse(text) as Partial<GuestMeta>
      if (typeof m.vmId !== 'string' || typeof m.generation !== 'number') return null
      return { vmId: m.vmId, generation: m.generation, startedAt: m.startedAt ?? null, stopRequested: m.stopRequested === true, startError: m.startError ?? null }
    } catch { return null }
  }

  private async writeMeta (name: string, meta: GuestMeta): Promise<void> {
    await this.o.exec.write(join(this.guestsDir, name, GUEST_META_FILE), JSON.stringify(meta) + '\n')
  }

  private async nameOf (vmId: string): Promise<[string, GuestMeta] | null> {
    for (const [name, meta] of await this.guests()) if (meta.vmId === vmId) return [name, meta]
    return null
  }

  async list (): Promise<GuestStatus[]> {
    const out: GuestStatus[] = []
    for (const [name, meta] of await this.guests()) {
      const { vmId, generation } = meta
      const unit = parseSystemctlShow(await this.o.exec.run(systemctlShowArgv(name)))
      const requested = meta.stopRequested ? 'stop' as const : null
      switch (unit.phase) {
        case 'running': out.push({ state: 'running', vmId, generation, ready: unit.reason === '', ip: null }); break
        case 'starting':
        case 'stopping': out.push({ state: 'running', vmId, generation, ready: false, ip: null }); break
        case 'failed': out.push({ state: 'crashed', vmId, generation, exit: { reason: unit.reason, requested } }); break
        default:
          if (meta.startError != null) out.push({ state: 'crashed', vmId, generation, exit: { reason: meta.startError, requested: null } })
          else if (meta.startedAt == null) out.push({ state: 'stopped', vmId, generation, exit: null })
          else out.push({ state: 'stopped', vmId, generation, exit: { reason: meta.stopRequested ? 'stopped on request' : 'guest powered off', requested } })
      }
    }
    return out
  }

  async start (g: GuestStart): Promise<void> {
    const { vm, host } = g
    const name = vm.spec.name
    const dir = join(this.guestsDir, name)
    const held = await this.readMeta(name)
    // names are unique in the cluster, but a deleted VM's guest may still be here for a round
    if (held != null && held.vmId !== vm.id) throw new BlixardError('Conflict', `guest name ${name} is still held here by VM ${held.vmId} (being cleaned up)`)
    const meta: GuestMeta = { vmId: vm.id, generation: vm.generation, startedAt: null, stopRequested: false, startError: null }
    try {
      const files = renderGuestFlake({ spec: vm.spec, interfaces: this.interfaces(vm, host), volumes: this.volumes(vm, host), ...(this.o.inputs != null ? { inputs: this.o.inputs } : {}) })
      await this.writeMeta(name, meta) // first: the fence and list() know the guest from here on
      for (const [file, text] of Object.entries(files)) await this.o.exec.write(join(dir, file), text)
      for (const step of installSteps(name, dir, this.stateDir)) await this.step(step)
    } catch (err) {
      meta.startError = `guest not built: ${(err as Error).message}`
      await this.writeMeta(name, meta).catch(() => {})
      throw err
    }
    try {
      await this.o.exec.run(systemctlArgv('start', name))
    } catch (err) {
      // an inactive unit that never ran must not read as a guest that powered off
      await this.writeMeta(name, { ...meta, startError: `unit not started: ${(err as Error).message}` })
      throw err
    }
    meta.startedAt = this.now()
    await this.writeMeta(name, meta)
    // microvm.nix makes the TAPs (microvm-tap-interfaces@NAME) but puts none on a bridge
    for (const iface of this.interfaces(vm, host)) for (const argv of attachTapArgv(iface)) await this.o.exec.run(argv)
    this.log.info('microvm started', { vmId: vm.id, name, generation: vm.generation })
  }

  private async step (s: HostStep): Promise<void> {
    if (s.kind === 'run') await this.o.exec.run(s.argv)
    else await this.o.exec.write(s.path, s.content)
  }

  private interfaces (vm: VmRecord, host: GuestStart['host']): GuestInterface[] {
    return (host.nics ?? []).map((n, i) => ({ id: n.tap, mac: n.mac, bridge: bridgeName(vm.spec.networks[i]) }))
  }

  private volumes (vm: VmRecord, host: GuestStart['host']): RbdAttachment[] {
    return (host.drives ?? []).map((d, i) => {
      if (d.kind !== 'rbd') throw new BlixardError('InvalidSpec', `${vm.spec.name}: drive ${i} is a local file; microvm.nix guests take Ceph volumes only`)
      return {
        id: `vol${i}`, pool: d.pool, image: d.image, cephConf: d.conf, sizeGiB: this.o.volumeSizeGiB?.(d.pool, d.image) ?? 1,
        ...(d.id != null ? { cephUser: d.id } : {}), ...(d.readOnly === true ? { readOnly: true } : {})
      }
    })
  }

  async stop (vmId: string): Promise<GuestExit> {
    const found = await this.nameOf(vmId)
    if (found == null) throw new BlixardError('NotFound', `${vmId} has no microvm guest on this host`)
    const [name, meta] = found
    await this.writeMeta(name, { ...meta, stopRequested: true }) // before: a stop seen half-done is still ours
    await this.o.exec.run(systemctlArgv('stop', name))
    const unit = parseSystemctlShow(await this.o.exec.run(systemctlShowArgv(name)))
    return { reason: unit.phase === 'failed' ? `stopped on request (${unit.reason})` : 'stopped on request', requested: 'stop' }
  }

  async cleanup (vmId: string): Promise<void> {
    const found = await this.nameOf(vmId)
    if (found == null) return
    const [name] = found
    for (const s of removeSteps(name, join(this.guestsDir, name), this.stateDir)) {
      try { await this.step(s) } catch (err) {
        // reset-failed of a unit that never failed is refused; anything else is a real failure
        if (s.kind === 'run' && s.argv[1] === 'reset-failed') continue
        throw err
      }
    }
    this.log.info('microvm cleaned up', { vmId, name })
  }

  /** No events: systemd's state is read each round (list()), which is when the agent reports it. */
  onEvent (_fn: (e: GuestEvent) => void): () => void { return () => {} }

  async * logs (vmId: string, opts: ConsoleOptions = {}): AsyncGenerator<string> {
    const found = await this.nameOf(vmId)
    if (found == null) throw new BlixardError('NotFound', `no microvm guest of ${vmId} on this host`)
    const lines = opts.tailBytes != null ? Math.max(1, Math.ceil(opts.tailBytes / CONSOLE_LINE_BYTES)) : CONSOLE_MAX_LINES
    yield * this.o.exec.stream(consoleLogArgv(found[0], lines, opts.follow === true), opts.signal)
  }

  async close (): Promise<void> {}
}

/** The executor of a real host: commands through execFile with a timeout, files through node:fs. */
export function hostExecutor (): HostExecutor {
  return {
    run: async (argv) => await new Promise<string>((resolve, reject) => {
      const timeout = argv[0] === 'nix' ? NIX_BUILD_TIMEOUT_MS : COMMAND_TIMEOUT_MS
      execFile(argv[0], argv.slice(1), { timeout, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES }, (err, stdout, stderr) => {
        if (err == null) resolve(stdout)
        else reject(new Error(`${argv.join(' ')}: ${stderr.trim().split('\n').slice(-3).join(' / ') || err.message}`))
      })
    }),
    write: async (path, content) => {
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, content)
    },
    read: async (path) => await readFile(path, 'utf8').catch(() => null),
    list: async (dir) => await readdir(dir).catch(() => []),
    stream: async function * (argv, signal) {
      const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'], ...(signal != null ? { signal } : {}) })
      child.on('error', () => {}) // an abort kills it; the stream just ends
      child.stdout.setEncoding('utf8')
      try { for await (const chunk of child.stdout) yield chunk as string } finally { child.kill('SIGKILL') }
    }
  }
}
