// A real 3-node local cluster for the operations tests (metrics, dashboard,
// CLI): blixard-node processes on 127.0.0.1 started through
// scripts/local-cluster.ts, the CLI run as a child process with its own
// identity (an admin) in a temp BLIXARD_CONFIG_DIR, and cleanup that kills
// every process this file started, guests included, by pid.
import '../../node/polyfill.ts'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as assert from 'uvu/assert'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import type { ClusterView } from '../../node/http.ts'

import { ROOT, runCli as harnessRunCli, sleep, track, waitFor } from '../cluster/harness.ts'
import type { CliResult } from '../cluster/harness.ts'
export { ROOT, sleep }

/** Polls `fn` until it returns something other than null/undefined/false; fails naming `what`
 * (test/cluster/harness.ts waitFor, every 200 ms by default). */
export async function until<T> (what: string, timeoutMs: number, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, everyMs = 200): Promise<T> {
  return await waitFor(what, timeoutMs, fn, everyMs)
}

/** A CLI start (TypeScript loaded through tsx) takes seconds, and over a minute on a 2-core host
 * shared with other clusters: a command is killed only after this. */
export const CLI_TIMEOUT_MS = 180_000

export type { CliResult } from '../cluster/harness.ts'

/** Runs bin/blixard.js (test/cluster/harness.ts runCli) with the ops tests' CLI timeout. */
export async function runCli (args: string[], env: NodeJS.ProcessEnv, timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  return await harnessRunCli(args, env, timeoutMs)
}

/** The --json error a failed command printed, checked: its exit code (in the JSON too), its kind,
 * a next step that says something, and that next step on stderr as well. */
export function jsonError (r: CliResult, kind: string, code: number): { kind: string, message: string, next: string, exitCode: number } {
  assert.is(r.code, code, `exit code of a ${kind} error: ${r.stderr}`)
  const e = (r.json as { error?: { kind: string, message: string, next: string, exitCode: number } } | null)?.error
  assert.ok(e != null, `--json error on stdout, got: ${r.stdout}`)
  assert.is(e.kind, kind)
  assert.is(e.exitCode, code)
  assert.ok(e.next.length > 10, 'the error says what to do next')
  assert.ok(r.stderr.includes(e.next.split('\n')[0]), 'the next step is on stderr too')
  return e
}

export class OpsCluster {
  private constructor (
    readonly dir: string,
    readonly nodes: LocalNode[],
    readonly keyFile: string,
    /** environment for a CLI that is an admin of this cluster, talking to node1 */
    readonly env: NodeJS.ProcessEnv,
    readonly adminId: string
  ) {}

  /** Starts `n` nodes on basePort.. (HTTP on basePort+100..), node i with nodeArgs(i) added to its
   * command line, and waits for a leader and every node registered. */
  static async start (label: string, basePort: number, n = 3, readyWithinMs = 90_000, nodeArgs: (i: number) => string[] = () => []): Promise<OpsCluster> {
    const dir = mkdtempSync(join(tmpdir(), `blixard-ops-${label}-`))
    const configDir = join(dir, 'cli')
    const { privateKey } = await loadOrCreateIdentity(configDir)
    const adminId = peerIdFromPrivateKey(privateKey).toString()
    const c = await prepareLocalCluster({ nodes: n, dir, basePort })
    c.nodes.forEach((node, i) => track(startNode(c, node, { admins: [adminId], logToFiles: true, extraArgs: nodeArgs(i) })))
    const env = { BLIXARD_CONFIG_DIR: configDir, BLIXARD_PEER: c.nodes[0].addr, BLIXARD_CLUSTER_KEY_FILE: c.keyFile }
    const oc = new OpsCluster(dir, c.nodes, c.keyFile, env, adminId)
    try {
      await until('a leader and every node registered', readyWithinMs, async () => {
        const s = await oc.state(0)
        return s.raft.leader != null && s.nodes.length === n && s.raft.voters.length === Math.min(3, n) && s.nodes.some((x) => x.leader)
      }, 300)
    } catch (err) {
      oc.dumpLogs()
      await oc.stop()
      throw err
    }
    return oc
  }

  url (i: number, path = '/'): string { return `http://127.0.0.1:${this.nodes[i].metricsPort}${path}` }

  async state (i: number): Promise<ClusterView> {
    const res = await fetch(this.url(i, '/api/state'))
    if (!res.ok) throw new Error(`GET /api/state on ${this.nodes[i].name}: ${res.status}`)
    return await res.json() as ClusterView
  }

  async metricsText (i: number): Promise<string> {
    const res = await fetch(this.url(i, '/metrics'))
    if (!res.ok) throw new Error(`GET /metrics on ${this.nodes[i].name}: ${res.status}`)
    return await res.text()
  }

  /** Index of the current leader (by node1's view). */
  async leaderIndex (): Promise<number> {
    const s = await this.state(0)
    const i = this.nodes.findIndex((n) => n.peerId === s.raft.leader)
    if (i < 0) throw new Error('no leader known')
    return i
  }

  async cli (args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs?: number): Promise<CliResult> {
    return await runCli(args, { ...this.env, ...env }, timeoutMs)
  }

  dumpLogs (): void {
    for (const n of this.nodes) {
      const f = join(n.dir, 'log')
      if (!existsSync(f)) continue
      const lines = readFileSync(f, 'utf8').trim().split('\n')
      process.stderr.write(`--- ${n.name} log (last 15 lines) ---\n${lines.slice(-15).join('\n')}\n`)
    }
  }

  /** Stops the nodes, then kills any guest (qemu) still running out of this cluster's directory, by pid. */
  async stop (): Promise<void> {
    // a node that ended before we stopped it is a finding: say how it ended and what it logged
    const early = this.nodes.filter((n) => n.proc != null && (n.proc.exitCode != null || n.proc.signalCode != null))
    for (const n of early) process.stderr.write(`${n.name} ended before the test stopped it: exit ${n.proc?.exitCode ?? '-'}, signal ${n.proc?.signalCode ?? '-'}\n`)
    if (early.length > 0) this.dumpLogs()
    for (const n of this.nodes) n.proc?.kill('SIGTERM')
    await Promise.all(this.nodes.map(async (n) => {
      const p = n.proc
      if (p == null || p.exitCode != null || p.signalCode != null) return
      await Promise.race([new Promise((resolve) => p.once('exit', resolve)), sleep(8_000)])
      if (p.exitCode == null && p.signalCode == null) p.kill('SIGKILL')
    }))
    for (const pid of pidsUnder(this.dir)) { try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ } }
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Processes whose command line names a path under `dir` (the guests our nodes started). */
function pidsUnder (dir: string): number[] {
  const out: number[] = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir)) out.push(Number(e))
    } catch { /* exited meanwhile */ }
  }
  return out
}
