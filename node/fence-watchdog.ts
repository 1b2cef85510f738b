// The host's fence watchdog (rule 5 of node/core/lease-rules.ts): a small process apart
// from the daemon's event loop, so it fires when blixard-node is kill -9'd, SIGSTOPped or hung while
// its QEMUs (KillMode=process) live on. The daemon spawns it detached and, on each acknowledged lease
// renewal, rewrites the heartbeat file with the fence deadline on the system-wide monotonic clock
// (process.hrtime = CLOCK_MONOTONIC, the same in every process on the host). When that deadline
// passes with no newer one, the watchdog SIGKILLs every QEMU it finds by pidfile under
// <dataDir>/vms/*/qemu.pid — checking each pid is really that VM's QEMU (pid reuse) — and exits.
// It also exits (without killing) when the heartbeat file says `stop` (an orderly daemon shutdown
// that stopped its guests or hands them to its restarted self, which spawns a new watchdog).
//
// Guests on the NixOS path (systemd microvm@NAME units, node/ha/microvm-fence.ts) are stopped with
// `systemctl stop` at the same deadline, and SIGKILLed (`systemctl kill`) if that has not finished
// half way through the fence's stop budget (--stop-budget-ms, from the lease settings: see
// fenceStopBudgetMs in node/core/lease-rules.ts).
//
// Usage: node --import tsx node/fence-watchdog.ts <dataDir> <heartbeatFile> [--systemctl=PATH] [--stop-budget-ms=MS]
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { runtimePaths, vmsDir, VM_ID } from './qemu/paths.ts'
import { findQemuPids, isOurQemu, signalPid } from './qemu/proc.ts'
import { DEFAULT_STOP_BUDGET_MS, execSystemctl, stopBudget, stopMicrovmGuests, type StopBudget, type SystemctlRunner } from './ha/microvm-fence.ts'

/** How often the watchdog looks at the heartbeat: a bound on how late past the deadline it fences. */
export const WATCHDOG_POLL_MS = 100

export function monotonicMs (): number {
  return Number(process.hrtime.bigint() / 1_000_000n)
}

export type Heartbeat = { kind: 'deadline', at: number } | { kind: 'stop' } | { kind: 'bad', why: string }

/** The heartbeat file: `deadline <monotonic ms>` or `stop`. */
export function parseHeartbeat (text: string): Heartbeat {
  const t = text.trim()
  if (t === 'stop') return { kind: 'stop' }
  const m = /^deadline (\d{1,16})$/.exec(t)
  if (m == null) return { kind: 'bad', why: `heartbeat must be "deadline <ms>" or "stop", got ${JSON.stringify(t.slice(0, 40))}` }
  return { kind: 'deadline', at: Number(m[1]) }
}

export function formatHeartbeat (deadlineMonotonicMs: number): string {
  return `deadline ${Math.floor(deadlineMonotonicMs)}\n`
}

/**
 * SIGKILL every QEMU of this host's data dir and stop every microvm@ unit of its NixOS-path guests
 * (both at once); returns the VM ids whose QEMU was signalled and the names of the units stopped.
 */
export async function killAllGuests (dataDir: string, systemctl: SystemctlRunner = execSystemctl(), budget: StopBudget = stopBudget(DEFAULT_STOP_BUDGET_MS)): Promise<string[]> {
  const units = stopMicrovmGuests(dataDir, systemctl, (name, err) => { process.stderr.write(`fence-watchdog: microvm@${name}: ${err.message}\n`) }, budget)
  return [...await killQemus(dataDir), ...(await units).map((u) => `microvm@${u.name}${u.how === 'killed' ? ' (SIGKILLed)' : ''}`)]
}

async function killQemus (dataDir: string): Promise<string[]> {
  let ids: string[]
  try { ids = await readdir(vmsDir(dataDir)) } catch { return [] }
  const killed: string[] = []
  for (const id of ids) {
    if (!VM_ID.test(id)) continue
    const p = runtimePaths(dataDir, id)
    const pids = new Set<number>()
    try {
      const pid = Number((await readFile(p.pidFile, 'utf8')).trim())
      if (Number.isInteger(pid) && pid > 1 && await isOurQemu(pid, id, p.qmpSock)) pids.add(pid)
    } catch { /* no pidfile: fall back to the process table below */ }
    for (const pid of await findQemuPids(id, p.qmpSock)) pids.add(pid)
    for (const pid of pids) {
      // one QEMU we may not signal must not spare the others
      try { if (signalPid(pid, 'SIGKILL')) killed.push(id) } catch (e) { process.stderr.write(`fence-watchdog: cannot kill ${id} pid ${pid}: ${(e as Error).message}\n`) }
    }
  }
  return killed
}

export interface WatchdogArgs { dataDir: string, heartbeat: string, systemctl: string, stopBudgetMs: number }

/** The command line; a usage error names what was wrong. */
export function parseWatchdogArgs (args: readonly string[]): WatchdogArgs | { error: string } {
  const [dataDir, heartbeat, ...opts] = args
  if (dataDir == null || heartbeat == null || dataDir.startsWith('--') || heartbeat.startsWith('--')) return { error: 'a data dir and a heartbeat file are required' }
  const out: WatchdogArgs = { dataDir, heartbeat, systemctl: 'systemctl', stopBudgetMs: DEFAULT_STOP_BUDGET_MS }
  for (const o of opts) {
    const m = /^--(systemctl|stop-budget-ms)=(.+)$/.exec(o)
    if (m == null) return { error: `unknown option ${JSON.stringify(o)}` }
    if (m[1] === 'systemctl') out.systemctl = m[2]
    else {
      const n = Number(m[2])
      if (!Number.isSafeInteger(n) || n < 0) return { error: `--stop-budget-ms must be a non-negative integer of ms, got ${JSON.stringify(m[2])}` }
      out.stopBudgetMs = n
    }
  }
  return out
}

async function main (): Promise<void> {
  const args = parseWatchdogArgs(process.argv.slice(2))
  if ('error' in args) {
    process.stderr.write(`fence-watchdog: ${args.error}\nusage: fence-watchdog <dataDir> <heartbeatFile> [--systemctl=PATH] [--stop-budget-ms=MS]\n`)
    process.exit(2)
  }
  const { dataDir, heartbeat: hbFile } = args
  // With no readable heartbeat yet, the deadline is the one the daemon wrote before spawning us; a
  // missing or garbled file after that counts as no refresh: the last good deadline stands.
  let deadline: number | null = null
  for (;;) {
    let hb: Heartbeat
    try { hb = parseHeartbeat(await readFile(hbFile, 'utf8')) } catch (e) { hb = { kind: 'bad', why: (e as Error).message } }
    if (hb.kind === 'stop') process.exit(0)
    if (hb.kind === 'deadline') deadline = hb.at
    if (deadline == null) {
      process.stderr.write(`fence-watchdog: ${hb.kind === 'bad' ? hb.why : 'no deadline'}: fencing now\n`)
      deadline = 0
    }
    if (monotonicMs() >= deadline) {
      const killed = await killAllGuests(dataDir, execSystemctl(args.systemctl), stopBudget(args.stopBudgetMs))
      process.stderr.write(`fence-watchdog: lease deadline passed with no renewal: killed QEMU of ${killed.length} VM(s): ${killed.join(', ')}\n`)
      process.exit(0)
    }
    await new Promise(resolve => setTimeout(resolve, WATCHDOG_POLL_MS))
  }
}

// run as a script: from the sources (tsx) or from dist/ (npm run build), where it is .js
if (process.argv[1] != null && /fence-watchdog\.(ts|js)$/.test(process.argv[1])) void main()
