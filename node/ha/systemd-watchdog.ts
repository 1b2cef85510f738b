// systemd's watchdog for the daemon (NixOS unit: WatchdogSec=, NotifyAccess=all): while the event
// loop turns, ping systemd at half the interval it asks for (WATCHDOG_USEC); a daemon hung longer
// than that is killed and restarted by systemd. The guests are not the concern here (the fence
// watchdog stops them when the lease runs out, node/ha/watchdog.ts): this gets a hung daemon back.
// Node has no sd_notify binding, so the ping is `systemd-notify --pid=<daemon> WATCHDOG=1`.
import { spawn } from 'node:child_process'
import type { Logger } from '../log.ts'

/** Below this a ping could not keep up (a process start per ping): the setting is refused. */
export const MIN_WATCHDOG_USEC = 2_000_000

/** Starts the pings if systemd asked for them; returns the stop function. */
export function startSystemdWatchdog (env: NodeJS.ProcessEnv, log: Logger): () => void {
  const usec = Number(env.WATCHDOG_USEC)
  if (!Number.isFinite(usec) || usec <= 0) return () => {}
  // WATCHDOG_PID names the process the setting is for: not us (a child that inherited it)
  if (env.WATCHDOG_PID != null && Number(env.WATCHDOG_PID) !== process.pid) return () => {}
  if (usec < MIN_WATCHDOG_USEC) {
    log.warn('systemd watchdog interval too short to ping; not pinging', { WATCHDOG_USEC: usec, min: MIN_WATCHDOG_USEC })
    return () => {}
  }
  const ping = (): void => {
    const p = spawn('systemd-notify', [`--pid=${process.pid}`, 'WATCHDOG=1'], { stdio: 'ignore' })
    p.on('error', (err) => { log.warn('systemd watchdog ping failed', { err: String(err) }) })
  }
  ping()
  const t = setInterval(ping, Math.floor(usec / 2_000))
  log.info('pinging the systemd watchdog', { everyMs: Math.floor(usec / 2_000) })
  return () => { clearInterval(t) }
}
