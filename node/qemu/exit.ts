// How a qemu process ended, and whether that was a stop or a crash. Pure:
// the restart policy (on-failure vs always) depends on getting this right.

export type ExitOutcome = 'stopped' | 'crashed'
export type StopRequest = 'stop' | 'kill' | null

export interface ExitFacts {
  /** exit code, or null when killed by a signal or unknown (an adopted process is not our child) */
  code: number | null
  signal: string | null
  /** what this driver asked for: a graceful stop, a kill, or nothing */
  requested: StopRequest
  /** the stop had to fall back to SIGKILL after the power-down timeout */
  forced: boolean
  /** reason of QEMU's last SHUTDOWN event ('guest-shutdown', 'guest-reset', 'host-signal', ...) */
  shutdownReason: string | null
  guestPanicked: boolean
  /** the guest reached readiness before the end */
  ready: boolean
  /** set when the driver killed a guest that never became ready */
  bootFailure: string | null
  /** last lines qemu wrote on stderr */
  stderrTail: string
}

export interface ExitRecord {
  outcome: ExitOutcome
  reason: string
  code: number | null
  signal: string | null
  requested: StopRequest
  shutdownReason: string | null
  /** epoch ms, when the driver saw the exit */
  at: number
}

/** QEMU's reasons that mean somebody asked it to end, not that the guest broke. */
const CLEAN_SHUTDOWN = new Set(['guest-shutdown', 'host-qmp-quit'])

export function classifyExit (f: ExitFacts, at: number): ExitRecord {
  const base = { code: f.code, signal: f.signal, requested: f.requested, shutdownReason: f.shutdownReason, at }
  const how = f.signal != null ? `killed by ${f.signal}` : f.code != null ? `exited with code ${f.code}` : 'exited (status unknown: not our child)'
  if (f.requested === 'kill') return { ...base, outcome: 'stopped', reason: 'killed on request' }
  if (f.requested === 'stop') return { ...base, outcome: 'stopped', reason: f.forced ? 'killed after the power-down timeout' : 'stopped on request' }
  if (f.bootFailure != null) return { ...base, outcome: 'crashed', reason: f.bootFailure }
  const detail = f.stderrTail !== '' ? `: ${f.stderrTail}` : ''
  if (f.guestPanicked) return { ...base, outcome: 'crashed', reason: `guest panicked; qemu ${how}` }
  const clean = f.shutdownReason != null && CLEAN_SHUTDOWN.has(f.shutdownReason)
  if (f.signal == null && (f.code === 0 || f.code == null) && clean) {
    return { ...base, outcome: 'stopped', reason: f.shutdownReason === 'guest-shutdown' ? 'guest powered off' : 'qemu quit on a QMP request' }
  }
  if (f.code === 0 && f.shutdownReason == null) return { ...base, outcome: 'stopped', reason: 'qemu exited with code 0' }
  if (f.shutdownReason != null && !clean && f.signal == null) {
    // with -no-reboot, a guest that panics (panic=-1) or reboots makes qemu exit 0 with guest-reset
    const why = f.shutdownReason === 'guest-reset' ? 'guest reset (kernel panic or reboot)' : `shutdown reason ${f.shutdownReason}`
    return { ...base, outcome: 'crashed', reason: `${why}; qemu ${how}${f.ready ? '' : ' before the guest was ready'}` }
  }
  return { ...base, outcome: 'crashed', reason: `qemu ${how}${f.ready ? '' : ' before the guest was ready'}${detail}` }
}
