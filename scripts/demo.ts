// The README's main job: a local 3-node cluster on 127.0.0.1 that boots a real
// microVM and shows its console. Leaves the cluster running for you to explore
// (Ctrl-C stops it; --exit stops it after the demo).
//
//   npm start [-- --exit] [--dir .cluster] [--base-port 7001]
import '../node/polyfill.ts'
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepareLocalCluster, removeEnvFile, startNode, writeEnvFile } from './local-cluster.ts'
import { whoami } from '../node/cli/connect.ts'

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

step('waiting for the cluster to elect a leader')
const t0 = Date.now()
for (;;) {
  const r = cli(['status', '--json', '--timeout', '5'], env, true)
  if (r.code === 0 && JSON.parse(r.out).voters.length === 3) break
  if (Date.now() - t0 > 120_000) { process.stderr.write(`no 3-voter cluster after 120 s; see ${c.dir}/nodeN/log\n`); stopAll(); process.exit(1) }
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

