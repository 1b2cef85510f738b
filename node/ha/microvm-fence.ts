// The fence for guests on the NixOS path: those run as systemd `microvm@NAME` units, not
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
 * A fence's time to stop one guest (node/core/lease-rules.ts fenceStopBudgetMs, less the fence's own
 * poll lateness): `systemctl stop` gets `graceMs` (microvm.nix shuts the guest down gracefully, for
 * up to the unit's TimeoutStopSec: far longer than a fence may wait), then every process of the unit
 * is SIGKILLed and the stop must be seen finished by `totalMs`.
 */
export interface StopBudget { graceMs: number, totalMs: number }

/** The share of the budget `systemctl stop` gets before SIGKILL: the rest is for the kill to land. */
export const STOP_GRACE_SHARE = 0.5
/** Budget used when the caller names none (no lease settings at hand: the defaults' budget). */
export const DEFAULT_STOP_BUDGET_MS = 1_800
/** How often the fence asks systemd whether a SIGKILLed unit is gone (when its stop call is still out). */
export const KILLED_POLL_MS = 50

export function stopBudget (totalMs: number): StopBudget {
  const total = Math.max(0, Math.floor(totalMs))
  return { graceMs: Math.floor(total * STOP_GRACE_SHARE), totalMs: total }
}

/** SIGKILL to every process of the unit (`systemctl kill` signals all of them by default). */
export function systemctlKillArgv (name: string): string[] {
  return ['systemctl', 'kill', '--signal=SIGKILL', unitName(name)]
}

export type StopOutcome = 'stopped' | 'killed'

/**
 * Stops every microvm@ unit of this host's guests that is not already stopped, all at once (a fence
 * has one deadline), each within `budget`: a stop not finished after the grace, or refused, is
 * followed by SIGKILL to the unit's processes. Returns the guests stopped and how. A unit systemctl
 * cannot show is stopped anyway (a stop of a stopped unit is harmless); a guest not seen stopped within
 * the budget is reported to `onError` (the fence goes on: the storage guard is the second line) and
 * does not spare the others.
 */
export async function stopMicrovmGuests (dataDir: string, run: SystemctlRunner, onError: (name: string, err: Error) => void = () => {}, budget: StopBudget = stopBudget(DEFAULT_STOP_BUDGET_MS)): Promise<Array<{ name: string, how: StopOutcome }>> {
  const names = await microvmGuests(dataDir)
  const t0 = performance.now()
  const stopped = await Promise.all(names.map(async (name) => {
    try {
      // a show that fails or is slower than the grace leaves the state unknown: stop it anyway
      const shown = await raceUntil(run(systemctlShowArgv(name)), t0 + budget.graceMs)
      let phase: string | null = null
      if (shown.kind === 'done') { try { phase = parseSystemctlShow(shown.value).phase } catch { /* unknown */ } }
      if (phase === 'stopped' || phase === 'failed') return null
      return { name, how: await stopWithin(name, run, budget, t0, onError) }
    } catch (e) {
      onError(name, e instanceof Error ? e : new Error(String(e)))
      return null
    }
  }))
  return stopped.filter((n): n is { name: string, how: StopOutcome } => n != null)
}

type Raced<T> = { kind: 'done', value: T } | { kind: 'failed', err: Error } | { kind: 'late' }

/** Waits for `p` at most until `until` (performance.now() ms); never leaves a rejection unhandled. */
async function raceUntil<T> (p: Promise<T>, until: number): Promise<Raced<T>> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<Raced<T>>((resolve) => { timer = setTimeout(() => { resolve({ kind: 'late' }) }, Math.max(0, until - performance.now())) })
  try {
    return await Promise.race([
      p.then((value): Raced<T> => ({ kind: 'done', value }), (e: unknown): Raced<T> => ({ kind: 'failed', err: e instanceof Error ? e : new Error(String(e)) })),
      late
    ])
  } finally { clearTimeout(timer) }
}

async function stopWithin (name: string, run: SystemctlRunner, budget: StopBudget, t0: number, onError: (name: string, err: Error) => void): Promise<StopOutcome> {
  const stop = run(systemctlArgv('stop', name))
  const first = await raceUntil(stop, t0 + budget.graceMs)
  if (first.kind === 'done') return 'stopped'
  const why = first.kind === 'failed' ? `stop failed (${first.err.message})` : `stop not finished after ${budget.graceMs} ms`
  if (first.kind === 'failed') onError(name, new Error(`${why}: sending SIGKILL`))
  const end = t0 + budget.totalMs
  const over = (what: string): Error => new Error(`${unitName(name)} not seen stopped within the fence's budget of ${budget.totalMs} ms (${why}; ${what})`)
  const kill = await raceUntil(run(systemctlKillArgv(name)), end)
  if (kill.kind === 'failed') throw over(`SIGKILL failed: ${kill.err.message}`)
  if (kill.kind === 'late') throw over('SIGKILL not confirmed')
  // the stop job ends once the unit's processes are gone; a refused stop has no job: ask systemd
  if (first.kind === 'late' && (await raceUntil(stop, end)).kind === 'done') return 'killed'
  for (;;) {
    const shown = await raceUntil(run(systemctlShowArgv(name)), end)
    let phase: string | null = null
    if (shown.kind === 'done') { try { phase = parseSystemctlShow(shown.value).phase } catch { /* ask again */ } }
    if (phase === 'stopped' || phase === 'failed') return 'killed'
    if (performance.now() >= end) throw over('SIGKILL sent')
    await new Promise((resolve) => setTimeout(resolve, KILLED_POLL_MS))
  }
}
