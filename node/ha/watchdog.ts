// The daemon's handle on this host's fence watchdog (node/fence-watchdog.ts): one per data dir,
// started detached so it outlives the daemon (kill -9, SIGSTOP, a hang, a restart), found again by
// its pidfile when the daemon restarts, fed the fence deadline through its heartbeat file.
//
// A restarted daemon never moves the deadline later than the one it finds: guests of the previous
// daemon may only run until their lease ends, and only an acknowledged renewal extends it.
import { spawn } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { formatHeartbeat, parseHeartbeat } from '../fence-watchdog.ts'
import { readCmdline } from '../qemu/proc.ts'
import { DEFAULT_STOP_BUDGET_MS } from './microvm-fence.ts'

export interface WatchdogPaths { dir: string, heartbeat: string, pidFile: string, log: string }

export function watchdogPaths (dataDir: string): WatchdogPaths {
  const dir = join(dataDir, 'fence')
  return { dir, heartbeat: join(dir, 'heartbeat'), pidFile: join(dir, 'watchdog.pid'), log: join(dir, 'watchdog.log') }
}

/** The watchdog's entry point and the node arguments that run it (sources through tsx, or dist/). */
function watchdogCommand (): string[] {
  const self = fileURLToPath(import.meta.url)
  if (self.endsWith('.ts')) {
    const tsx = createRequire(import.meta.url).resolve('tsx')
    return ['--import', pathToFileURL(tsx).href, join(self, '..', '..', 'fence-watchdog.ts')]
  }
  return [join(self, '..', '..', 'fence-watchdog.js')]
}

export class FenceWatchdog {
  readonly paths: WatchdogPaths
  private pid: number | null = null
  private last: number | null = null

  /** `stopBudgetMs`: how long the watchdog's fence may take to see a microvm@ guest gone (then SIGKILL) */
  constructor (readonly dataDir: string, readonly stopBudgetMs: number = DEFAULT_STOP_BUDGET_MS) {
    this.paths = watchdogPaths(dataDir)
  }

  /** The deadline a previous daemon left (same boot: the monotonic clock is host-wide), or null. */
  async previousDeadline (): Promise<number | null> {
    try {
      const hb = parseHeartbeat(await readFile(this.paths.heartbeat, 'utf8'))
      return hb.kind === 'deadline' ? hb.at : null
    } catch { return null }
  }

  /** Write the deadline (atomically: the watchdog never reads half a file). */
  async feed (deadline: number): Promise<void> {
    if (this.last === deadline) return
    await mkdir(this.paths.dir, { recursive: true, mode: 0o700 })
    const tmp = `${this.paths.heartbeat}.tmp`
    await writeFile(tmp, formatHeartbeat(deadline))
    await rename(tmp, this.paths.heartbeat)
    this.last = deadline
  }

  /** Is the watchdog of this data dir running? (pidfile, checked against /proc: pids get reused) */
  async alive (): Promise<boolean> {
    let pid = this.pid
    if (pid == null) {
      try { pid = Number((await readFile(this.paths.pidFile, 'utf8')).trim()) } catch { return false }
    }
    const argv = Number.isInteger(pid) && pid > 1 ? await readCmdline(pid) : null
    const ours = argv != null && argv.some((a) => a.includes('fence-watchdog')) && argv.includes(this.paths.heartbeat)
    this.pid = ours ? pid : null
    return ours
  }

  /** Start the watchdog unless it runs; the heartbeat must hold a deadline first. Returns its pid. */
  async ensure (): Promise<number> {
    if (await this.alive() && this.pid != null) return this.pid
    await mkdir(this.paths.dir, { recursive: true, mode: 0o700 })
    const out = openSync(this.paths.log, 'a')
    try {
      const child = spawn(process.execPath, [...watchdogCommand(), this.dataDir, this.paths.heartbeat, `--stop-budget-ms=${Math.floor(this.stopBudgetMs)}`], { detached: true, stdio: ['ignore', out, out] })
      child.unref()
      if (child.pid == null) throw new Error('the fence watchdog did not start')
      this.pid = child.pid
      await writeFile(this.paths.pidFile, `${child.pid}\n`)
      return child.pid
    } finally { closeSync(out) }
  }
}
