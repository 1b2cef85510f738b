// The benchmark anchor: a plain qemu launch of the tiny guest, timed from
// spawn to the ready marker, with the same command line the driver uses but
// no driver around it (no runtime dir bookkeeping, no QMP monitor).
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildQemuArgv, type Accel } from './cmdline.ts'
import { QemuError } from './errors.ts'
import { waitForText } from './file-tail.ts'
import { parseReadyMarker } from './tiny-guest.ts'
import { diesWithUs } from './dies-with-us.ts'

export interface BareBootOptions {
  kernel: string
  initrd: string
  accel: Accel
  tscKhz: number | null
  memoryMiB?: number
  vcpus?: number
  qemuBinary?: string
  timeoutMs?: number
}

export const BARE_BOOT_TIMEOUT_MS = 120_000

/** Milliseconds from spawn to the guest's ready marker; the guest is killed after. */
export async function bareBoot (opts: BareBootOptions): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'blixard-bare-'))
  const serialLog = join(dir, 'serial.log')
  const { binary, args } = buildQemuArgv(
    { vmId: 'bare', vcpus: opts.vcpus ?? 1, memoryMiB: opts.memoryMiB ?? 96, boot: { kernel: opts.kernel, initrd: opts.initrd } },
    { accel: opts.accel, tscKhz: opts.tscKhz, qemuBinary: opts.qemuBinary },
    { serialSock: join(dir, 'serial.sock'), serialLog, qmpSock: join(dir, 'qmp.sock') }
  )
  const t0 = performance.now()
  const child = spawn(...diesWithUs(binary, args), { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d: string) => { stderr = (stderr + d).slice(-2048) })
  const exited = new Promise<Error>((resolve) => {
    child.once('error', (e) => { resolve(new QemuError('SpawnFailed', `cannot run ${binary}: ${e.message}`)) })
    child.once('exit', (code, signal) => { resolve(new QemuError('BootFailed', `bare qemu exited (${signal ?? `code ${String(code)}`}) before the marker: ${stderr.trim()}`)) })
  })
  try {
    await waitForText(serialLog, parseReadyMarker, { timeoutMs: opts.timeoutMs ?? BARE_BOOT_TIMEOUT_MS, abortWhen: exited })
    return performance.now() - t0
  } finally {
    if (child.exitCode == null && child.signalCode == null) {
      child.kill('SIGKILL')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
}
