// The fence for guests on the NixOS path (issue 14): those run as systemd `microvm@NAME` units, not
// as QEMUs under <dataDir>/vms, so the fence watchdog and the daemon's own fence (and the cleanup of a
// host that rejoins after its lease expired) stop them through systemctl too. Which units are this
// host's: the agent renders every such guest's flake into <dataDir>/guests/NAME (nixos/README.md,
// "A guest's life on the NixOS path"), so the fence never touches a microvm@ unit the operator
// declared outside Blixard. `systemctl stop` is what the module's polkit rule allows the daemon's
// user; microvm@ runs with Restart=no there, so a stopped guest stays stopped.
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseSystemctlShow, systemctlArgv, systemctlShowArgv, unitName } from '../../nixos/microvm-host.ts'

/** <dataDir>/guests: one directory per NixOS-path guest this host runs (its rendered flake). */
export const GUESTS_SUBDIR = 'guests'
/** Bound on one systemctl call: a stop waits for the guest's shutdown, and a fence must not hang. */
export const SYSTEMCTL_TIMEOUT_MS = 30_000

/** Runs one systemctl argv (argv[0] is 'systemctl'); resolves with its stdout, rejects on failure. */
export type SystemctlRunner = (argv: string[]) => Promise<string>

export function execSystemctl (bin = 'systemctl', timeoutMs = SYSTEMCTL_TIMEOUT_MS): SystemctlRunner {
  return async (argv) => await new Promise<string>((resolve, reject) => {
    if (argv[0] !== 'systemctl') { reject(new Error(`not a systemctl command: ${argv.join(' ')}`)); return }
    execFile(bin, argv.slice(1), { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err == null) resolve(stdout)
      else reject(new Error(`${argv.join(' ')}: ${stderr.trim() || err.message}`))
    })
  })
}

/** The NixOS-path guests whose flake this host rendered (valid unit names only). */
export async function microvmGuests (dataDir: string): Promise<string[]> {
  let names: string[]
  try { names = await readdir(join(dataDir, GUESTS_SUBDIR)) } catch { return [] }
  return names.filter((n) => { try { unitName(n); return true } catch { return false } }).sort()
}

/**
 * Stops every microvm@ unit of this host's guests that is not already stopped; returns the names of
 * the guests it stopped. All at once: a fence has one deadline. A unit systemctl cannot show is
 * stopped anyway (a stop of a stopped unit is harmless); a failed stop is reported to `onError` and
 * does not spare the others.
 */
export async function stopMicrovmGuests (dataDir: string, run: SystemctlRunner, onError: (name: string, err: Error) => void = () => {}): Promise<string[]> {
  const names = await microvmGuests(dataDir)
  const stopped = await Promise.all(names.map(async (name) => {
    try {
      let phase: string | null = null
      try { phase = parseSystemctlShow(await run(systemctlShowArgv(name))).phase } catch { /* unknown: stop it */ }
      if (phase === 'stopped' || phase === 'failed') return null
      await run(systemctlArgv('stop', name))
      return name
    } catch (e) {
      onError(name, e instanceof Error ? e : new Error(String(e)))
      return null
    }
  }))
  return stopped.filter((n): n is string => n != null)
}
