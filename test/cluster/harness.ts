// Shared by the real-process cluster tests: blixard-node processes on 127.0.0.1 started through
// scripts/local-cluster.ts, a test-side libp2p host holding the CLI identity to query each node,
// the CLI itself as a child process, and cleanup that runs even when a test fails.
import '../../node/polyfill.ts'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'
import { signingClient } from '../../node/cli/signing.ts'
import { keySigner } from '../../protocols/auth.ts'
import type { ResultOf } from '../../protocols/rpc.ts'
import type { Stream } from '@libp2p/interface'

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
export type Status = ResultOf<'cluster.status'>

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** A lease for a test cluster's daemons, as flags (node/core/lease-rules.ts checks them at start). Tests
 * with guests lengthen it: on a loaded machine a starved daemon renews late and its host is fenced mid-test. */
export interface TestLease { leaseMs: number, renewEveryMs?: number, fenceMarginMs?: number, downMarginMs?: number }
export function leaseArgs (l: TestLease): string[] {
  return ['--lease-ms', String(l.leaseMs), '--lease-renew-every-ms', String(l.renewEveryMs ?? 2_000),
    '--lease-fence-margin-ms', String(l.fenceMarginMs ?? 1_000), '--lease-down-margin-ms', String(l.downMarginMs ?? 1_000)]
}

/** Polls `fn` until it returns a value other than null/undefined/false, or fails naming `what`. */
export async function waitFor<T> (what: string, timeoutMs: number, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown = null
  for (;;) {
    try {
      const v = await fn()
      if (v !== null && v !== undefined && v !== false) return v
    } catch (err) { lastErr = err }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr != null ? ` (last error: ${(lastErr as Error).message})` : ''}`)
    await sleep(everyMs)
  }
}

/** Every child process any test file started: killed on exit, whatever happened. */
const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL') })
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { process.exit(130) })

export function track (p: ChildProcess): ChildProcess {
  children.add(p)
  p.on('exit', () => { children.delete(p) })
  return p
}

export interface CliResult { code: number, stdout: string, stderr: string, ms: number, json: unknown }

/** Runs bin/blixard.js with its own config dir (never ~/.config/blixard). */
export async function runCli (args: string[], env: NodeJS.ProcessEnv, timeoutMs = 90_000, wrap: string[] = []): Promise<CliResult> {
  const t0 = Date.now()
  const cmd = [...wrap, process.execPath, join(ROOT, 'bin', 'blixard.js'), ...args]
  const full: NodeJS.ProcessEnv = { ...process.env, ...env, FORCE_COLOR: '0' }
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k] // a key given as undefined is unset
  const p = track(spawn(cmd[0], cmd.slice(1), { cwd: ROOT, env: full, stdio: ['ignore', 'pipe', 'pipe'] }))
  let stdout = ''
  let stderr = ''
  p.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
  p.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { p.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number>((resolve) => p.on('exit', (c, s) => { resolve(c ?? (s != null ? 128 : 1)) }))
  clearTimeout(timer)
  let json: unknown = null
  try { json = JSON.parse(stdout) } catch { json = null }
  return { code, stdout, stderr, ms: Date.now() - t0, json }
}

/** Resident set of a process, from /proc (MiB). */
export function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m == null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) / 1024
}

/**
 * Environment of every test node (a flag, or the test's own env, overrides it). Autopilot every
 * 500 ms instead of 2 s: a fresh cluster's learners become voters one per round, so a test cluster
 * forms ~3 s sooner; its decisions and the dead timeout are unchanged (autopilot-replace sets its own).
 */
export const TEST_NODE_ENV: Readonly<Record<string, string>> = { BLIXARD_AUTOPILOT_INTERVAL_MS: '500' }

export interface TestClusterOptions {
  /** nodes prepared (addresses known to each other); `start` of them started by start() */
  nodes: number
  basePort: number
  extraArgs?: string[]
}

/** N blixard-node processes on 127.0.0.1 with one key; this test's CLI identity is the first admin. */
export class TestCluster {
  readonly dir: string
  readonly cliDir: string
  keyFile = ''
  nodes: LocalNode[] = []
  adminId = ''
  private host: BlixardHost | null = null
  private readonly clients = new Map<string, RpcClient>()

  constructor (readonly opts: TestClusterOptions, prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), `blixard-${prefix}-`))
    this.cliDir = join(this.dir, 'cli')
  }

  async prepare (): Promise<void> {
    const { privateKey } = await loadOrCreateIdentity(this.cliDir)
    this.adminId = peerIdFromPrivateKey(privateKey).toString()
    const c = await prepareLocalCluster({ nodes: this.opts.nodes, dir: this.dir, basePort: this.opts.basePort })
    this.keyFile = c.keyFile
    this.nodes = c.nodes
    this.host = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(this.keyFile), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dialTimeoutMs: 3_000 })
  }

  /** env for the CLI: this test's identity and key, talking to node i */
  cliEnv (i: number): NodeJS.ProcessEnv {
    return { BLIXARD_CONFIG_DIR: this.cliDir, BLIXARD_CLUSTER_KEY_FILE: this.keyFile, BLIXARD_PEER: this.nodes[i].addr }
  }

  start (i: number, extraArgs: string[] = [], keyFile = this.keyFile, env: NodeJS.ProcessEnv = {}, wrap: string[] = []): ChildProcess {
    // bootstrap-expect stays 3 even when more nodes are prepared: a later node joins the running cluster
    const p = startNode({ keyFile, nodes: this.nodes }, this.nodes[i], {
      admins: [this.adminId], logToFiles: true, extraArgs: [...(this.opts.extraArgs ?? []), ...extraArgs], env: { ...TEST_NODE_ENV, ...env }, wrap
    })
    return track(p)
  }

  kill (i: number, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.dropClient(i)
    this.nodes[i].proc?.kill(signal)
  }

  async exited (i: number): Promise<void> {
    const p = this.nodes[i].proc
    if (p == null || p.exitCode != null || p.signalCode != null) return
    await new Promise((resolve) => p.on('exit', resolve))
  }

  private dropClient (i: number): void {
    const c = this.clients.get(this.nodes[i].peerId)
    this.clients.delete(this.nodes[i].peerId)
    void c?.close().catch(() => {})
  }

  async client (i: number): Promise<RpcClient> {
    const n = this.nodes[i]
    const c = this.clients.get(n.peerId)
    if (c?.usable === true) return c
    // this test's CLI identity is an admin: its writes are signed with its key, as the CLI's are
    const { privateKey } = await loadOrCreateIdentity(this.cliDir)
    const fresh = signingClient(await RpcClient.connect(this.host!, multiaddr(n.addr), { timeoutMs: 6_000, dialTimeoutMs: 3_000 }), keySigner(this.adminId, privateKey))
    this.clients.set(n.peerId, fresh)
    return fresh
  }

  /** a raw stream on `protocol` to node i, from the test's host (which holds the cluster key) */
  async rawStream (i: number, protocol: string): Promise<Stream> {
    return await this.host!.dialProtocol(multiaddr(this.nodes[i].addr), protocol, { signal: AbortSignal.timeout(5_000) })
  }

  /** cluster.status from node i (linearizable unless stale); null when it does not answer */
  async status (i: number, stale = false): Promise<Status | null> {
    try {
      return await (await this.client(i)).call('cluster.status', stale ? { stale: true } : {}, { timeoutMs: 6_000 })
    } catch {
      this.dropClient(i)
      return null
    }
  }

  /** true once the given nodes all report the same leader, `voters` voters, and the leader among them */
  async agreed (idx: number[], voters: number): Promise<Status[] | null> {
    const sts = await Promise.all(idx.map(async (i) => await this.status(i)))
    if (sts.some((s) => s == null)) return null
    const all = sts as Status[]
    const leader = all[0].leader
    if (leader == null || !all.every((s) => s.leader === leader && s.voters.length === voters)) return null
    if (!all[0].voters.includes(leader)) return null
    return all
  }

  log (i: number): string {
    const f = join(this.nodes[i].dir, 'log')
    return existsSync(f) ? readFileSync(f, 'utf8') : ''
  }

  /** the last lines of every node's log that are not debug, for a failure's context */
  logTails (lines = 15): string {
    return this.nodes.map((n, i) => `--- ${n.name}\n${this.log(i).split('\n').filter((l) => !l.includes('"level":"debug"')).slice(-lines).map((l) => l.slice(0, 300)).join('\n')}`).join('\n')
  }

  async stop (): Promise<void> {
    for (const c of this.clients.values()) await c.close().catch(() => {})
    this.clients.clear()
    try { await this.host?.stop() } catch { /* already stopped */ }
    for (const n of this.nodes) if (n.proc != null && n.proc.exitCode == null && n.proc.signalCode == null) n.proc.kill('SIGTERM')
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline && this.nodes.some((n) => n.proc != null && n.proc.exitCode == null && n.proc.signalCode == null)) await sleep(100)
    for (const n of this.nodes) if (n.proc != null && n.proc.exitCode == null && n.proc.signalCode == null) n.proc.kill('SIGKILL')
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** A small VM spec; tests create VMs stopped (start: false) so no node launches a guest. */
export function vmSpec (name: string): import('../../protocols/model.ts').VmSpec {
  return {
    name, vcpus: 1, memoryMiB: 128, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [],
    kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'never', requires: []
  }
}

/** ms since the epoch of the first log line whose msg is `msg` */
export function logTime (log: string, msg: string): number | null {
  for (const line of log.split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue
    try { return Date.parse((JSON.parse(line) as { ts: string }).ts) } catch { return null }
  }
  return null
}
