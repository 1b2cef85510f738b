// A local Blixard cluster on 127.0.0.1 for the README's main job and for tests:
// N blixard-node processes with bootstrap addresses (mDNS off: on the host's
// own network namespace it would multicast out of the machine), one cluster
// key, this user's CLI identity as the first admin.
//
//   node --import tsx scripts/local-cluster.ts [--nodes 3] [--dir .cluster] [--base-port 7001] [--detach]
import '../node/polyfill.ts'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, existsSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../node/identity.ts'
import { writeClusterKey } from '../node/keygen.ts'
import { whoami } from '../node/cli/whoami.ts'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))

export interface LocalNode { name: string, dir: string, port: number, metricsPort: number, peerId: string, addr: string, proc: ChildProcess | null }

/**
 * The node (V8) flags every blixard-node runs with; bin/blixard-node.js's shebang and
 * nixos/module.nix's NODE_OPTIONS carry the same (keep the three equal).
 * - V8's default young generation bound, 16 MiB a semi-space, spelled out: a busy leader needs it
 *   (bench:raft at 256 clients, interleaved pairs: 2259, 2128 writes/s against 1867 with 4 MiB;
 *   server CPU 0.67-0.70 against 0.81 ms a write: with 4 MiB, requests' objects outlived the
 *   ~40 ms between scavenges and were copied, then promoted). What it grew is given back when the
 *   node idles (node/memory-trim.ts), so idle RSS stays as with 4 MiB (bench:idle).
 * - one V8 worker thread instead of 4 (--v8-pool-size): ~4 MiB less (the workers' stacks and
 *   their malloc arenas); V8's background work (concurrent marking, sweeping, TurboFan jobs) on a
 *   heap of ~40 MiB fits in one thread, and a host's cores belong to its guests
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--v8-pool-size=1']

/**
 * The environment every blixard-node runs with (the shebang and nixos/module.nix set it too).
 * glibc raises its heap trim threshold up to 32 MiB as large blocks are freed (startup's module
 * loading frees many), so the freed top of the heap is never returned; a fixed threshold of
 * 128 KiB (its initial value) returns it: ~5 MiB less idle RSS.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: '131072' }

export interface LocalClusterOptions {
  nodes?: number
  dir?: string
  basePort?: number
  /** CLI peer ids to make admins (default: this user's CLI identity) */
  admins?: string[]
  extraArgs?: string[]
  env?: NodeJS.ProcessEnv
  /** write node logs to DIR/nodeN/log instead of inheriting stderr */
  logToFiles?: boolean
  /** node (V8) flags for each blixard-node process; default DAEMON_NODE_FLAGS */
  nodeFlags?: string[]
  /** a command that execs node in place, e.g. ['ip', 'netns', 'exec', 'NS'] (a test's network namespace) */
  wrap?: string[]
}

export async function prepareLocalCluster (o: LocalClusterOptions = {}): Promise<{ dir: string, keyFile: string, nodes: LocalNode[] }> {
  const dir = resolve(o.dir ?? join(root, '.cluster'))
  mkdirSync(dir, { recursive: true })
  const keyFile = join(dir, 'cluster.key')
  if (!existsSync(keyFile)) await writeClusterKey(keyFile)
  const n = o.nodes ?? 3
  const base = o.basePort ?? 7001
  const nodes: LocalNode[] = []
  for (let i = 1; i <= n; i++) {
    const ndir = join(dir, `node${i}`)
    const { privateKey } = await loadOrCreateIdentity(ndir)
    const peerId = peerIdFromPrivateKey(privateKey).toString()
    const port = base + i - 1
    nodes.push({ name: `node${i}`, dir: ndir, port, metricsPort: port + 100, peerId, addr: `/ip4/127.0.0.1/tcp/${port}/p2p/${peerId}`, proc: null })
  }
  return { dir, keyFile, nodes }
}

/** Writes DIR/env (BLIXARD_PEER and BLIXARD_CLUSTER_KEY_FILE of this cluster) for `source`, and
 * returns its path. It lives with the cluster's own dir, so `--dir` elsewhere never leaves the
 * tour reading another cluster's file; removeEnvFile takes it away when the cluster stops. */
export function writeEnvFile (c: { dir: string, keyFile: string, nodes: LocalNode[] }): string {
  const path = join(c.dir, 'env')
  writeFileSync(path, `# the local cluster in ${c.dir} (removed when it stops)\nexport BLIXARD_PEER=${c.nodes[0].addr}\nexport BLIXARD_CLUSTER_KEY_FILE=${c.keyFile}\n`)
  return path
}

/** The cluster stopped: its env file goes, so a later `source` fails loudly instead of pointing the
 * CLI at nodes that are gone. */
export function removeEnvFile (c: { dir: string }): void {
  rmSync(join(c.dir, 'env'), { force: true })
}

export function startNode (c: { keyFile: string, nodes: LocalNode[] }, node: LocalNode, o: LocalClusterOptions = {}): ChildProcess {
  const admins = o.admins ?? []
  const args = [
    ...(o.nodeFlags ?? DAEMON_NODE_FLAGS),
    join(root, 'bin', 'blixard-node.js'),
    '--name', node.name,
    '--data-dir', node.dir,
    '--listen', `/ip4/127.0.0.1/tcp/${node.port}`,
    '--cluster-key-file', c.keyFile,
    '--no-mdns',
    '--metrics-port', String(node.metricsPort),
    '--bootstrap-expect', String(Math.min(3, c.nodes.length)),
    ...c.nodes.filter((x) => x !== node).flatMap((x) => ['--bootstrap', x.addr]),
    ...admins.flatMap((a) => ['--admin', a]),
    ...(o.extraArgs ?? [])
  ]
  const out = o.logToFiles === true ? openSync(join(node.dir, 'log'), 'a') : 'inherit'
  const wrap = o.wrap ?? []
  const proc = wrap.length > 0
    ? spawn(wrap[0], [...wrap.slice(1), process.execPath, ...args], { stdio: ['ignore', out, out], env: { ...process.env, ...DAEMON_ENV, ...o.env } })
    : spawn(process.execPath, args, { stdio: ['ignore', out, out], env: { ...process.env, ...DAEMON_ENV, ...o.env } })
  node.proc = proc
  return proc
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const get = (f: string): string | undefined => { const i = argv.indexOf(f); return i >= 0 ? argv[i + 1] : undefined }
  const admin = await whoami()
  const c = await prepareLocalCluster({ nodes: Number(get('--nodes') ?? 3), dir: get('--dir'), basePort: Number(get('--base-port') ?? 7001) })
  const envFile = writeEnvFile(c)
  for (const n of c.nodes) startNode(c, n, { admins: [admin], logToFiles: true })
  process.stdout.write(`Started ${c.nodes.length} blixard-node processes (logs in ${c.dir}/nodeN/log):\n`)
  for (const n of c.nodes) process.stdout.write(`  ${n.name}  ${n.addr}  metrics+dashboard http://127.0.0.1:${n.metricsPort}/\n`)
  process.stdout.write(`\nTalk to it (any node answers):\n  source ${envFile}\n  npx blixard status\n  npx blixard vm create demo --memory 128M --wait\n\nCtrl-C stops the cluster.\n`)
  const stop = (): void => { for (const n of c.nodes) n.proc?.kill('SIGTERM') }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  await Promise.all(c.nodes.map(async (n) => await new Promise((resolve) => n.proc?.on('exit', resolve))))
  removeEnvFile(c)
}

if (process.argv[1] != null && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main()
