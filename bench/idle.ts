// Idle memory of a blixard-node (target: "idle RSS <= 100 MiB per node"), reproducibly: 3
// compiled daemons (dist/, BLIXARD_COMPILED=1, as bench:raft and an installed package run them) on
// 127.0.0.1 started by scripts/local-cluster.ts with its node flags and environment
// (DAEMON_NODE_FLAGS, DAEMON_ENV: the same as the shebang's and the NixOS unit's), formed into a
// cluster, one admin write through each node (as bench:raft does before it reads RSS), then left
// idle; after the idle wait, per node: RSS from /proc, what it is made of (/proc/PID/smaps: the
// node binary's text, other file-backed pages, anonymous memory) and the V8 figures of the
// node's own /metrics (heap used and total, code space, external memory). RSS does not depend on
// the machine's load, so this runs on a busy machine too; it repeats on fresh clusters and reports
// the median of all nodes of all runs.
//
// npm run bench:idle [-- --json] [--runs 3] [--idle 20] [--no-build] [--tsx]
//   [--node-flags '--max-semi-space-size=4 --optimize-for-size'] (replaces DAEMON_NODE_FLAGS)
//   [--env NAME=VALUE]... (added to the daemons' environment, over DAEMON_ENV; NAME= unsets one)
//   [--snapshot DIR] (node1 of the last run writes a V8 heap snapshot into DIR after the idle wait)
import '../node/polyfill.ts'
import { freeBase } from './raft/ports.ts'
import { mkdtempSync, rmSync, readFileSync, readdirSync, mkdirSync, statSync, openSync, readSync, closeSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { blixardCluster, clientHost, rpcTo, waitForCluster, adminWrite, rssMiB } from './raft/blixard.ts'
import type { BlixardBench } from './raft/blixard.ts'
import type { BlixardHost } from '../node/net/host.ts'
import { median } from './raft/load.ts'
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../scripts/local-cluster.ts'

const argv = process.argv.slice(2)
const opt = (name: string, dflt: string): string => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt }
const JSON_OUT = argv.includes('--json')
const RUNS = Number(opt('--runs', '3'))
const IDLE_MS = 1000 * Number(opt('--idle', '20'))
const COMPILED = !argv.includes('--tsx')
const BUILD = COMPILED && !argv.includes('--no-build')
const NODE_FLAGS = argv.includes('--node-flags') ? opt('--node-flags', '').split(/\s+/).filter((f) => f !== '') : undefined
/** extra environment of the daemons, e.g. --env MALLOC_ARENA_MAX=2 (repeatable) */
const EXTRA_ENV: NodeJS.ProcessEnv = Object.fromEntries(argv.flatMap((a, i) => {
  const kv = argv[i + 1]
  if (a !== '--env' || kv?.includes('=') !== true) return []
  const value = kv.slice(kv.indexOf('=') + 1)
  return [[kv.slice(0, kv.indexOf('=')), value === '' ? undefined : value]] // spawn leaves out undefined: NAME= unsets it
}))
const SNAPSHOT_DIR = argv.includes('--snapshot') ? resolve(opt('--snapshot', '.')) : null
/** how long node1 may take to write its heap snapshot (seconds for ~40 MiB of heap, more on a busy machine) */
const SNAPSHOT_WAIT_MS = 120_000
const MiB = 1024 * 1024
/** how long the 3 nodes may take to form (minutes on a machine loaded by others; RSS does not care) */
const FORM_MS = 300_000
/** how long each node may take to accept its first admin write once the cluster has a leader */
const READY_WRITE_MS = 60_000

const say = (s: string): void => { if (!JSON_OUT) process.stderr.write(`bench:idle: ${s}\n`) }
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** RSS by what backs it, in MiB, from /proc/PID/smaps. */
interface Smaps { nodeBinary: number, otherFiles: number, anonymous: number }

function smaps (pid: number): Smaps {
  const exe = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]
  const out: Smaps = { nodeBinary: 0, otherFiles: 0, anonymous: 0 }
  let path = ''
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head != null) { path = head[1]; continue }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss == null) continue
    const mib = Number(rss[1]) / 1024
    if (path === exe || (path !== '' && resolve(path) === resolve(exe))) out.nodeBinary += mib
    else if (path.startsWith('/')) out.otherFiles += mib
    else out.anonymous += mib
  }
  return out
}

/** The V8 figures of a node's /metrics (prom-client's default metrics), in MiB. */
interface V8Mem { heapUsed: number, heapTotal: number, codeSpace: number, external: number }

async function v8Mem (metricsPort: number): Promise<V8Mem | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    const get = (re: RegExp): number => { const m = re.exec(text); return m == null ? NaN : Number(m[1]) / MiB }
    return {
      heapUsed: get(/^blixard_nodejs_heap_size_used_bytes (\S+)/m),
      heapTotal: get(/^blixard_nodejs_heap_size_total_bytes (\S+)/m),
      codeSpace: get(/^blixard_nodejs_heap_space_size_used_bytes\{space="code"\} (\S+)/m),
      external: get(/^blixard_nodejs_external_memory_bytes (\S+)/m)
    }
  } catch { return null }
}

/** the running cluster, killed on Ctrl-C */
let bx: BlixardBench | null = null
process.on('SIGINT', () => { bx?.stop(); process.exit(130) })

/** A heap snapshot file V8 has finished writing (its JSON ends with a closing brace). */
function complete (path: string): boolean {
  const size = statSync(path).size
  if (size === 0) return false
  const fd = openSync(path, 'r')
  try {
    const tail = Buffer.alloc(Math.min(size, 16))
    readSync(fd, tail, 0, tail.length, size - tail.length)
    return tail.toString('latin1').trimEnd().endsWith('}')
  } finally { closeSync(fd) }
}

interface NodeIdle { run: number, node: string, rssMiB: number, smaps: Smaps, v8: V8Mem | null }

async function oneRun (run: number, snapshot: boolean): Promise<NodeIdle[]> {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-bench-idle-'))
  let control: BlixardHost | null = null
  try {
    const env: NodeJS.ProcessEnv = { ...(COMPILED ? { BLIXARD_COMPILED: '1' } : {}), ...EXTRA_ENV }
    let flags = NODE_FLAGS
    if (snapshot && SNAPSHOT_DIR != null) {
      mkdirSync(SNAPSHOT_DIR, { recursive: true })
      flags = [...(flags ?? DAEMON_NODE_FLAGS), '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOT_DIR}`]
    }
    bx = await blixardCluster(join(dir, 'blixard'), await freeBase(3, true), 3, 1, env, flags)
    const b = bx
    control = await clientHost(b.keyFile, b.admins[0])
    await waitForCluster(control, b.voters[0], (s) => s.leader != null && s.voters.length === 3, FORM_MS)
    for (const n of b.voters) {
      const c = await rpcTo(control, n)
      const w = adminWrite(c, b.admins[0].peerId, 'idle')
      const deadline = Date.now() + READY_WRITE_MS
      for (let ok = false; !ok;) {
        try { await w(2_000); ok = true } catch (err) {
          if (Date.now() > deadline) throw new Error(`${n.name} took no admin write in ${READY_WRITE_MS / 1000} s: ${(err as Error).message}`)
          await sleep(200)
        }
      }
      await c.close()
    }
    say(`run ${run + 1}/${RUNS}: cluster formed; idle ${IDLE_MS / 1000} s`)
    await sleep(IDLE_MS)
    const rows: NodeIdle[] = []
    for (const n of b.voters) {
      const pid = n.proc?.pid ?? 0
      rows.push({ run, node: n.name, rssMiB: rssMiB(pid), smaps: smaps(pid), v8: await v8Mem(n.metricsPort) })
    }
    if (snapshot && SNAPSHOT_DIR != null) {
      const before = new Set(readdirSync(SNAPSHOT_DIR))
      b.voters[0].proc?.kill('SIGUSR2')
      const deadline = Date.now() + SNAPSHOT_WAIT_MS
      let file: string | undefined
      while (Date.now() < deadline && file == null) {
        await sleep(500)
        file = readdirSync(SNAPSHOT_DIR).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'))
      }
      // the file appears before V8 has finished writing it: wait for the JSON's closing brace
      while (file != null && Date.now() < deadline && !complete(join(SNAPSHOT_DIR, file))) await sleep(500)
      say(file != null ? `heap snapshot of node1: ${join(SNAPSHOT_DIR, file)}` : 'no heap snapshot written')
    }
    return rows
  } finally {
    await control?.stop()
    bx?.stop()
    bx = null
    rmSync(dir, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  if (BUILD) {
    say('building the daemon (npm run build) to run it as installed')
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'ignore', 'inherit'] })
  }
  const rows: NodeIdle[] = []
  for (let r = 0; r < RUNS; r++) rows.push(...await oneRun(r, r === RUNS - 1))
  const med = (f: (x: NodeIdle) => number | undefined): number => median(rows.map(f).filter((x): x is number => x != null && !Number.isNaN(x)))
  const summary = {
    daemon: COMPILED ? 'compiled' : 'tsx',
    nodeFlags: NODE_FLAGS ?? DAEMON_NODE_FLAGS,
    env: { ...DAEMON_ENV, ...EXTRA_ENV },
    idleSeconds: IDLE_MS / 1000,
    runs: RUNS,
    medianMiB: {
      rss: med((x) => x.rssMiB),
      nodeBinary: med((x) => x.smaps.nodeBinary),
      otherFiles: med((x) => x.smaps.otherFiles),
      anonymous: med((x) => x.smaps.anonymous),
      heapUsed: med((x) => x.v8?.heapUsed),
      heapTotal: med((x) => x.v8?.heapTotal),
      codeSpace: med((x) => x.v8?.codeSpace),
      external: med((x) => x.v8?.external)
    },
    maxRssMiB: Math.max(...rows.map((x) => x.rssMiB)),
    target: { want: 'median RSS <= 100 MiB', pass: false },
    nodes: rows
  }
  summary.target.pass = summary.medianMiB.rss <= 100
  if (JSON_OUT) { process.stdout.write(JSON.stringify(summary, null, 2) + '\n'); return }
  const f = (x: number | undefined): string => x == null || Number.isNaN(x) ? '-' : x.toFixed(1)
  process.stdout.write('run node   RSS   binary  files   anon | heapUsed heapTotal code  external  (MiB)\n')
  for (const x of rows) {
    process.stdout.write(`${String(x.run + 1).padStart(3)} ${x.node.padEnd(5)} ${f(x.rssMiB).padStart(6)} ${f(x.smaps.nodeBinary).padStart(6)} ${f(x.smaps.otherFiles).padStart(6)} ${f(x.smaps.anonymous).padStart(6)} | ${f(x.v8?.heapUsed).padStart(8)} ${f(x.v8?.heapTotal).padStart(9)} ${f(x.v8?.codeSpace).padStart(5)} ${f(x.v8?.external).padStart(9)}\n`)
  }
  const m = summary.medianMiB
  process.stdout.write(`median  ${f(m.rss).padStart(6)} ${f(m.nodeBinary).padStart(6)} ${f(m.otherFiles).padStart(6)} ${f(m.anonymous).padStart(6)} | ${f(m.heapUsed).padStart(8)} ${f(m.heapTotal).padStart(9)} ${f(m.codeSpace).padStart(5)} ${f(m.external).padStart(9)}\n`)
  process.stdout.write(`idle RSS median ${f(m.rss)} MiB, max ${f(summary.maxRssMiB)} MiB (target <= 100): ${summary.target.pass ? 'PASS' : 'FAIL'}\n`)
}

main().then(() => process.exit(0), (err: unknown) => { process.stderr.write(`bench:idle: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
