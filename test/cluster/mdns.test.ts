// mDNS for real, never in the host's own network namespace: a "switch"
// namespace holds a bridge, veth pairs join it to one namespace per node plus one for clients,
// 10.78.0.x/24 addresses, a multicast route in each (without it mDNS fails silently). Nothing is
// routed out: the switch namespace has no uplink. blixard-node processes run with --mdns and no
// bootstrap address, all started at the same moment; they must form exactly one cluster
// (node/bootstrap.ts: the lowest id bootstraps once it sees `expect` fresh nodes that agree). The CLI,
// with BLIXARD_PEER unset, finds a node by mDNS. Needs root and `ip netns`.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, openSync, readFileSync, rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ROOT, track, waitFor, runCli } from './harness.ts'
import type { Status } from './harness.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { writeClusterKey } from '../../node/keygen.ts'
import { NetnsSwitch, ip } from './netns-switch.ts'

const net = new NetnsSwitch(`bc${process.pid % 100000}`, '10.78.0')
const tag = net.tag
const CL = `${tag}cl`
const MAX = 5
const NS = Array.from({ length: MAX }, (_, i) => `${tag}n${i + 1}`)
const ipOf = (i: number): string => net.addr(i + 1)
const dir = mkdtempSync(join(tmpdir(), 'blixard-mdns-cluster-'))
const cliDir = join(dir, 'cli')
const figures: Record<string, string> = {}
let adminId = ''

function setup (): void {
  net.up()
  NS.forEach((ns, i) => { net.attach(ns, `v${i + 1}`, i + 1, { multicast: true }) })
  net.attach(CL, 'vc', 100, { multicast: true })
}

function teardown (): void { net.teardown() }
process.on('exit', teardown)

interface Run { key: string, nodes: Array<{ id: string, dir: string, addr: string, proc: ChildProcess }>, probe: ChildProcess | null, seen: Array<Status | null> }

/** n nodes, fresh data dirs and key, spawned in the same tick; a probe in the client namespace watches them. */
async function boot (name: string, n: number): Promise<Run> {
  const rdir = join(dir, name)
  mkdirSync(rdir, { recursive: true })
  const key = join(rdir, 'cluster.key')
  await writeClusterKey(key)
  const nodes: Run['nodes'] = []
  const prepared = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const ndir = join(rdir, `n${i + 1}`)
    const id = peerIdFromPrivateKey((await loadOrCreateIdentity(ndir)).privateKey).toString()
    return { id, dir: ndir, addr: `/ip4/${ipOf(i)}/tcp/7000/p2p/${id}` }
  }))
  prepared.forEach((p, i) => {
    const out = openSync(join(p.dir, 'log'), 'a')
    const proc = track(spawn('ip', ['netns', 'exec', NS[i], process.execPath, '--max-semi-space-size=4', join(ROOT, 'bin', 'blixard-node.js'),
      '--name', `n${i + 1}`, '--data-dir', p.dir, '--listen', `/ip4/${ipOf(i)}/tcp/7000`, '--cluster-key-file', key,
      '--mdns', '--metrics-port', '0', '--bootstrap-expect', '3', '--admin', adminId], { cwd: ROOT, stdio: ['ignore', out, out] }))
    nodes.push({ ...p, proc })
  })
  const run: Run = { key, nodes, probe: null, seen: nodes.map(() => null) }
  const probe = track(spawn('ip', ['netns', 'exec', CL, process.execPath, '--import', 'tsx', join(ROOT, 'test', 'cluster', 'ns-probe.ts'), key, cliDir, ...nodes.map((x) => x.addr)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] }))
  run.probe = probe
  let buf = ''
  probe.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { i?: number, st?: Status | null }
      buf = buf.slice(nl + 1)
      if (line.i != null) run.seen[line.i] = line.st ?? null
    }
  })
  return run
}

async function stopRun (r: Run): Promise<void> {
  for (const p of [...r.nodes.map((x) => x.proc), r.probe]) if (p != null && p.exitCode == null && p.signalCode == null) p.kill('SIGKILL')
  await Promise.all([...r.nodes.map((x) => x.proc), r.probe].map(async (p) => {
    if (p != null && p.exitCode == null && p.signalCode == null) await new Promise((resolve) => p.on('exit', resolve))
  }))
}

const log = (r: Run, i: number): string => { try { return readFileSync(join(r.nodes[i].dir, 'log'), 'utf8') } catch { return '' } }
const firstTime = (text: string, msg: string): number | null => {
  const line = text.split('\n').find((l) => l.includes(`"msg":"${msg}"`))
  return line == null ? null : Date.parse((JSON.parse(line) as { ts: string }).ts)
}

/** every node answers, all name the same leader, and the membership holds every node */
function oneCluster (r: Run, voters: number): Status[] | null {
  const sts = r.seen
  if (sts.some((s) => s == null)) return null
  const all = sts as Status[]
  const leader = all[0].leader
  const ids = r.nodes.map((x) => x.id).sort()
  for (const s of all) {
    if (s.leader == null || s.leader !== leader || s.voters.length !== voters) return null
    if (JSON.stringify([...s.voters, ...s.learners].sort()) !== JSON.stringify(ids)) return null
  }
  return all
}

async function formsOne (name: string, n: number, voters: number, timeoutMs: number): Promise<void> {
  const r = await boot(name, n)
  const t0 = Date.now()
  try {
    await waitFor(`${n} nodes in one cluster with ${voters} voters`, timeoutMs, () => oneCluster(r, voters), 100)
    const formed = Date.now()
    const ups = r.nodes.map((_, i) => firstTime(log(r, i), 'node started'))
    const lastUp = Math.max(...ups.map((u) => u ?? t0))
    const boots = r.nodes.map((_, i) => (log(r, i).match(/"msg":"bootstrapping a new cluster"/g) ?? []).length)
    figures[`${name}FormedAfterSpawnMs`] = String(formed - t0)
    figures[`${name}FormedAfterLastUpMs`] = String(formed - lastUp)
    console.log(`  ${n} nodes booted at once: one cluster (${voters} voters) ${formed - t0} ms after spawn, ${formed - lastUp} ms after the last node was up; bootstraps per node ${JSON.stringify(boots)}`)
    assert.is(boots.reduce((a, b) => a + b, 0), 1, 'exactly one node bootstraps a cluster')
    // node/bootstrap.ts: the bootstrapper holds the lowest id among the nodes it saw, confirmed by at
    // least expect - 1 of them. Usually that is the lowest id of all; on a loaded machine a node may
    // decide before mDNS has shown it the lowest one, and the rule then still makes one cluster.
    const who = boots.findIndex((b) => b === 1)
    const line = log(r, who).split('\n').find((l) => l.includes('"msg":"bootstrapping a new cluster"')) ?? '{}'
    const why = /^lowest id among (\d+) fresh nodes, confirmed by (\d+) peers$/.exec((JSON.parse(line) as { why?: string }).why ?? '')
    assert.ok(why != null, `the bootstrapper logs why it bootstraps: ${line}`)
    assert.ok(Number(why[2]) >= 2, `confirmed by at least expect - 1 = 2 peers: ${why[0]}`)
    const lowest = [...r.nodes.map((x) => x.id)].sort()[0]
    console.log(`  the bootstrapper ${r.nodes[who].id === lowest ? 'holds the lowest id of all' : 'is not the lowest id of all (it decided before seeing it)'}; saw ${why[1]}, confirmed by ${why[2]}`)
  } catch (err) {
    for (let i = 0; i < n; i++) console.log(`--- ${name} n${i + 1}\n${log(r, i).split('\n').filter((l) => !l.includes('"debug"')).slice(-12).map((l) => l.slice(0, 300)).join('\n')}`)
    console.log(`  probe saw: ${JSON.stringify(r.seen.map((s) => s == null ? null : { id: s.id.slice(-6), leader: s.leader?.slice(-6), voters: s.voters.length, learners: s.learners.length }))}`)
    throw err
  } finally {
    if (name === 'three') three = r
    else await stopRun(r)
  }
}

let three: Run | null = null

test.before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the mDNS namespace test needs root (ip netns)')
  adminId = peerIdFromPrivateKey((await loadOrCreateIdentity(cliDir)).privateKey).toString()
  teardown()
  setup()
})

test.after(async () => {
  if (three != null) await stopRun(three)
  teardown()
  rmSync(dir, { recursive: true, force: true })
  console.log(`  figures: ${JSON.stringify(figures)}`)
  const left = ip('netns', 'list')
  assert.not.ok(left.includes(tag), `namespaces left behind: ${left}`)
})

test('3 nodes in 3 namespaces, booted at the same moment with --mdns and no bootstrap address, form exactly one cluster', async () => {
  await formsOne('three', 3, 3, 70_000)
})

test('the CLI with BLIXARD_PEER unset finds a node by mDNS and gets the status', async () => {
  assert.ok(three != null)
  const r = await runCli(['status', '--json'], { BLIXARD_CONFIG_DIR: cliDir, BLIXARD_CLUSTER_KEY_FILE: three.key, BLIXARD_PEER: undefined }, 60_000, ['ip', 'netns', 'exec', CL])
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  const st = r.json as Status & { via: string }
  assert.is(st.voters.length, 3)
  assert.ok(three.nodes.some((x) => x.id === st.id), 'answered by one of the nodes')
  assert.ok(three.nodes.some((x) => st.via.includes(x.id)), `found by mDNS: via ${st.via}`)
  console.log(`  CLI by mDNS: status from ${st.id.slice(-8)} in ${r.ms} ms (CLI process start included)`)
  await stopRun(three)
  three = null
})

test('5 nodes booted at the same moment form exactly one cluster with 5 voters', async () => {
  await formsOne('five', 5, 5, 90_000)
})

test.run()
