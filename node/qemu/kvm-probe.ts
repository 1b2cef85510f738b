// Decides between KVM and TCG by booting the tiny guest under KVM once: a
// /dev/kvm that exists can still be unable to run a stock guest (nested "PVM"
// hosts abort on an MSR or die with emulation failures), so only a real boot counts.
import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { diesWithUs } from './dies-with-us.ts'
import type { Logger } from '../log.ts'
import { buildQemuArgv, type Accel } from './cmdline.ts'
import { QemuError } from './errors.ts'
import { waitForText } from './file-tail.ts'
import { parseReadyMarker } from './tiny-guest.ts'

export interface KvmProbeOptions {
  kernel: string
  initrd: string
  qemuBinary?: string
  /** a KVM boot of the tiny guest takes well under a second; TCG ~2-3 s */
  timeoutMs?: number
  devKvm?: string
  log?: Logger
  /** The probe's working directory (its guest's serial log and sockets), emptied first and removed
   * after. The daemon passes one inside its data directory: a probe cut short by the daemon's death
   * (stopped or killed within the probe's seconds) then leaves that one directory, cleared by the
   * next start, instead of a new one under the system's temp directory each time. Without it: a
   * fresh temp directory. */
  dir?: string
}

export interface KvmProbeResult {
  accel: Accel
  /** why KVM is not used (null when it is) */
  reason: string | null
  /** how long the probe took */
  ms: number
}

export const KVM_PROBE_TIMEOUT_MS = 8_000

let cached: Promise<KvmProbeResult> | null = null

/** Probes once per process; later calls return the first result. */
export async function probeKvm (opts: KvmProbeOptions): Promise<KvmProbeResult> {
  cached ??= runProbe(opts).then((r) => {
    if (r.accel === 'kvm') opts.log?.info('KVM usable: test boot reached the ready marker', { ms: r.ms })
    else opts.log?.warn(`KVM unusable: ${r.reason ?? 'unknown'}; using TCG`, { ms: r.ms })
    return r
  })
  return await cached
}

/** Forgets the cached result (tests). */
export function resetKvmProbe (): void {
  cached = null
}

async function runProbe (opts: KvmProbeOptions): Promise<KvmProbeResult> {
  const t0 = Date.now()
  const done = (reason: string | null): KvmProbeResult => ({ accel: reason == null ? 'kvm' : 'tcg', reason, ms: Date.now() - t0 })
  const dev = opts.devKvm ?? '/dev/kvm'
  try {
    await access(dev, constants.R_OK | constants.W_OK)
  } catch (e) {
    return done(`${dev} not usable (${(e as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let dir: string
  if (opts.dir != null) {
    await rm(opts.dir, { recursive: true, force: true })
    await mkdir(opts.dir, { recursive: true, mode: 0o700 })
    dir = opts.dir
  } else {
    dir = await mkdtemp(join(tmpdir(), 'blixard-kvm-probe-'))
  }
  try {
    return done(await testBoot(opts, dir))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** null when the guest came up under KVM, else the reason it did not. */
async function testBoot (opts: KvmProbeOptions, dir: string): Promise<string | null> {
  const serialLog = join(dir, 'serial.log')
  const { binary, args } = buildQemuArgv(
    { vmId: 'kvm-probe', vcpus: 1, memoryMiB: 96, boot: { kernel: opts.kernel, initrd: opts.initrd } },
    { accel: 'kvm', tscKhz: null, qemuBinary: opts.qemuBinary },
    { serialSock: join(dir, 'serial.sock'), serialLog, qmpSock: join(dir, 'qmp.sock') }
  )
  const child = spawn(...diesWithUs(binary, args), { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d: string) => { stderr = (stderr + d).slice(-4096) })
  const exited = new Promise<Error>((resolve) => {
    child.once('error', (e) => { resolve(new QemuError('SpawnFailed', `cannot run ${binary}: ${e.message}`)) })
    child.once('exit', (code, signal) => {
      const last = stderr.trim().split('\n').filter((l) => l !== '').slice(-2).join(' / ')
      resolve(new QemuError('BootFailed', `test boot exited (${signal ?? `code ${String(code)}`})${last !== '' ? `: ${last}` : ''}`))
    })
  })
  try {
    await waitForText(serialLog, parseReadyMarker, { timeoutMs: opts.timeoutMs ?? KVM_PROBE_TIMEOUT_MS, abortWhen: exited })
    return null
  } catch (e) {
    return e instanceof QemuError && e.kind === 'Timeout'
      ? `test boot printed no ready marker within ${opts.timeoutMs ?? KVM_PROBE_TIMEOUT_MS} ms`
      : (e as Error).message
  } finally {
    if (child.exitCode == null && child.signalCode == null) {
      child.kill('SIGKILL')
      await exited
    }
  }
}
