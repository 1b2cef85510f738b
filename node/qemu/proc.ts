// Process inspection through /proc: is this pid still the qemu we launched for
// that VM? A pid alone is not proof: it can be reused, or be a zombie.
import { readdir, readFile } from 'node:fs/promises'
import { isQemuFor } from './cmdline.ts'

/** argv of a live process, or null when it is gone or a zombie (empty cmdline). */
export async function readCmdline (pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8')
    if (raw === '') return null
    return raw.replace(/\0$/, '').split('\0')
  } catch {
    return null
  }
}

export async function isOurQemu (pid: number, vmId: string, qmpSock: string): Promise<boolean> {
  const argv = await readCmdline(pid)
  return argv != null && isQemuFor(argv, vmId, qmpSock)
}

/** Every live qemu launched for this VM, found by scanning /proc (for a pid file lost in a crash). */
export async function findQemuPids (vmId: string, qmpSock: string): Promise<number[]> {
  const out: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    if (await isOurQemu(pid, vmId, qmpSock)) out.push(pid)
  }
  return out
}

/** Sends a signal; false when the process no longer exists. */
export function signalPid (pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw e
  }
}
