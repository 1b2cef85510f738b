// Starts a throwaway single-host Ceph (scripts/ceph.sh) for one test file: its own temp
// directory and a free mon port pair, so test files and other clusters never clash.
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const CEPH_SCRIPT = fileURLToPath(new URL('../../scripts/ceph.sh', import.meta.url))
/** Bound on `scripts/ceph.sh up` (it measures ~10-15 s here; a loaded CI machine is slower). */
export const CEPH_UP_TIMEOUT_MS = 240_000

export interface TestCeph {
  dir: string
  conf: string
  keyring: string
  monPort: number
  /** seconds `scripts/ceph.sh up` took */
  startSeconds: number
  /** run the script again on this cluster (up, down, status) */
  script: (cmd: 'up' | 'down' | 'status') => Promise<ScriptRun>
  /** stop the daemons and delete the directory */
  destroy: () => Promise<void>
}

export interface ScriptRun {
  code: number
  out: string
  seconds: number
}

function portFree (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** A free port p with p+1 free too (the mon listens on msgr2 p and msgr1 p+1). */
export async function freeMonPort (): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 10000)
    if (await portFree(p) && await portFree(p + 1)) return p
  }
  throw new Error('no free port pair for a Ceph monitor')
}

function runScript (cmd: string, dir: string, monPort: number, addr: string): Promise<ScriptRun> {
  const t0 = performance.now()
  return new Promise((resolve) => {
    execFile(CEPH_SCRIPT, [cmd, dir], {
      env: { ...process.env, CEPH_MON_PORT: String(monPort), CEPH_ADDR: addr, CEPH_TIMEOUT: '10' },
      timeout: CEPH_UP_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024
    }, (err, stdout, stderr) => {
      const code = err == null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, out: `${stdout}${stderr}`, seconds: (performance.now() - t0) / 1000 })
    })
  })
}

/** `addr`: the address the daemons bind (scripts/ceph.sh CEPH_ADDR); a test network's, for nodes in namespaces. */
export async function startTestCeph (addr = '127.0.0.1'): Promise<TestCeph> {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-ceph-'))
  const monPort = await freeMonPort()
  // a test run cut short (Ctrl-C, CI timeout) must not leave daemons behind
  const onSignal = (sig: NodeJS.Signals): void => {
    spawnSync(CEPH_SCRIPT, ['purge', dir], { timeout: 30_000 })
    process.exit(sig === 'SIGINT' ? 130 : 143)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const destroy = async (): Promise<void> => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await runScript('purge', dir, monPort, addr)
    rmSync(dir, { recursive: true, force: true })
  }
  const up = await runScript('up', dir, monPort, addr)
  if (up.code !== 0) {
    await destroy()
    throw new Error(`scripts/ceph.sh up failed (exit ${up.code}):\n${up.out}`)
  }
  console.log(`ceph: single-host cluster up in ${up.seconds.toFixed(1)} s (mon port ${monPort}, ${dir})`)
  return {
    dir,
    conf: join(dir, 'ceph.conf'),
    keyring: join(dir, 'keyring'),
    monPort,
    startSeconds: up.seconds,
    script: async (cmd) => await runScript(cmd, dir, monPort, addr),
    destroy
  }
}
