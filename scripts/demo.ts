// The README's main job: a local 3-node cluster on 127.0.0.1 that boots a real
// microVM and shows its console. Leaves the cluster running for you to explore
// (Ctrl-C stops it; --exit stops it after the demo).
//
//   npm start [-- --exit] [--dir .cluster] [--base-port 7001] [--form-timeout 600]
import '../node/polyfill.ts'
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepareLocalCluster, removeEnvFile, startNode, writeEnvFile } from './local-cluster.ts'
import { whoami } from '../node/cli/whoami.ts'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const argv = process.argv.slice(2)
const get = (f: string): string | undefined => { const i = argv.indexOf(f); return i >= 0 ? argv[i + 1] : undefined }
const exitAfter = argv.includes('--exit')

function step (s: string): void { process.stdout.write(`\n==> ${s}\n`) }

function cli (args: string[], env: NodeJS.ProcessEnv, quiet = false): { code: number, out: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'blixard.js'), ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'], timeout: 300_000 })
  return { code: r.status ?? 1, out: r.stdout ?? '' }
}

step('building the tiny guest (busybox initramfs for the Debian kernel)')
const g = spawnSync('bash', [join(root, 'scripts', 'build-tiny-guest.sh')], { stdio: 'inherit' })
if (g.status !== 0) { process.stderr.write('cannot build the tiny guest; run scripts/setup.sh first\n'); process.exit(1) }

step('starting 3 blixard-node processes on 127.0.0.1 (bootstrap addresses, mDNS off)')
const admin = await whoami()
const c = await prepareLocalCluster({ dir: get('--dir'), basePort: Number(get('--base-port') ?? 7001) })
const envFile = writeEnvFile(c)
for (const n of c.nodes) { startNode(c, n, { admins: [admin], logToFiles: true }); process.stdout.write(`  ${n.name}  ${n.addr}\n`) }
const env = { ...process.env, BLIXARD_PEER: c.nodes[0].addr, BLIXARD_CLUSTER_KEY_FILE: c.keyFile }
const stopAll = (): void => { for (const n of c.nodes) n.proc?.kill('SIGTERM'); removeEnvFile(c) }
process.on('SIGINT', () => { stopAll(); process.exit(130) })

// three daemons compiling their TypeScript and electing a leader: seconds on a quiet host, minutes
// on a loaded one (it took over 120 s at load 40)
const formSeconds = Number(get('--form-timeout') ?? 600)
if (!Number.isInteger(formSeconds) || formSeconds < 1) { process.stderr.write(`--form-timeout must be a whole number of seconds, got ${get('--form-timeout') ?? ''}\n`); stopAll(); process.exit(2) }
step(`waiting for the cluster to elect a leader (up to ${formSeconds} s; progress every 10 s)`)
const t0 = Date.now()
let said = 0
for (;;) {
  const r = cli(['status', '--json', '--timeout', '5'], env, true)
  const st = r.code === 0 ? JSON.parse(r.out) as { leader: string | null, voters: string[] } : null
  if (st != null && st.voters.length === 3) break
  const gone = c.nodes.filter((n) => n.proc?.exitCode != null || n.proc?.signalCode != null)
  if (gone.length > 0) {
    process.stderr.write(`${gone.map((n) => n.name).join(', ')} stopped while the cluster formed; see ${gone.map((n) => join(n.dir, 'log')).join(', ')} (a port in use? try --base-port)\n`)
    stopAll(); process.exit(1)
  }
  const s = Math.round((Date.now() - t0) / 1000)
  if (s >= formSeconds) {
    process.stderr.write(`no 3-voter cluster after ${s} s. What the nodes said is in ${c.nodes.map((n) => join(n.dir, 'log')).join(', ')}.
On a busy host the start may only be slow: run again with --form-timeout ${formSeconds * 2} (npm start -- --form-timeout ${formSeconds * 2}),
or stop other work first; if the logs show no leader ever, check that ports ${c.nodes[0].addr.split('/')[4]}.. are free (--base-port PORT).\n`)
    stopAll(); process.exit(1)
  }
  if (s - said >= 10) {
    said = s
    process.stdout.write(`  ${s} s: ${st == null ? 'no node answers yet (they are starting)' : st.leader == null ? `${st.voters.length} voter(s), no leader yet` : `leader elected, ${st.voters.length} of 3 voters`}\n`)
  }
  await new Promise((r) => setTimeout(r, 1000))
}
process.stdout.write(cli(['status'], env).out)

step('creating VM "demo" (1 vCPU, 128 MiB) and waiting until it runs')
cli(['vm', 'delete', 'demo', '--force'], env, true) // from an earlier run of the demo in the same dir
const created = cli(['vm', 'create', 'demo', '--vcpus', '1', '--memory', '128M', '--wait', '--timeout', '240'], env)
process.stdout.write(created.out)
process.stdout.write(cli(['vm', 'list'], env).out)

step("the guest's serial console")
process.stdout.write(cli(['vm', 'logs', 'demo', '--tail', '1500'], env).out)
const ok = created.code === 0

if (exitAfter) {
  cli(['vm', 'delete', 'demo', '--force'], env)
  stopAll()
  process.stdout.write(`\ndemo ${ok ? 'passed' : 'FAILED'}: cluster stopped\n`)
  process.exit(ok ? 0 : 1)
}
process.stdout.write(`
The cluster keeps running. In another shell:
  source ${envFile}
  node bin/blixard.js nodes
  node bin/blixard.js vm logs demo -f
  node bin/blixard.js node drain node1
  open http://127.0.0.1:${c.nodes[0].metricsPort}/   (dashboard; /metrics for Prometheus)
Ctrl-C here stops all three nodes (the guest keeps running until its node's agent is back: delete it first with 'blixard vm delete demo').
`)
await Promise.all(c.nodes.map(async (n) => await new Promise((r) => n.proc?.on('exit', r))))
removeEnvFile(c)

