// Discovery beyond the LAN, with real blixard-node processes in network namespaces,
// never the host's own: subnet A (10.81.1.0/24, a bridge) and subnet B (10.81.2.0/24, another)
// joined by a router namespace with IP forwarding and no multicast routing, so mDNS stays inside
// each subnet. 3 nodes form a cluster in A by mDNS; a node in B given one bootstrap address of a
// node in A joins across the router; a follower in A restarted with a new address (its old one
// gone, as after a new DHCP lease) is reached again and its record corrected, with nobody telling
// anyone. The DHT's own mechanics (a stale address found again, one bootstrap address leading to
// the peers behind it) are asserted on loopback in test/net/dht-discovery.test.ts; here the log
// says which path each reconnection took. Needs root and `ip netns`.
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
import type { NodeRecord } from '../../protocols/model.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { writeClusterKey } from '../../node/keygen.ts'
import { NetnsSwitch, ip } from './netns-switch.ts'

/** unique per run: no collision with the other namespace tests (bc…, ha…) or a parallel run */
const tag = `dz${process.pid % 100000}`
const A = new NetnsSwitch(`${tag}a`, '10.81.1')
const B = new NetnsSwitch(`${tag}b`, '10.81.2')
const ROUTER = `${tag}r`
const CL = `${tag}cl`
const ROUTER_HOST = 254
/** n1..n3 in A, n4 in B */
const NS = [`${tag}n1`, `${tag}n2`, `${tag}n3`, `${tag}n4`]
const ipOf = (i: number): string => i < 3 ? A.addr(i + 1) : B.addr(i - 2)
/** where node i of A lives after it moved: 10.81.1.(11 + i) */
const movedIp = (i: number): string => A.addr(11 + i)
const AUTOPILOT_DEAD_AFTER_MS = 120_000
/** the moved node's probe slot */
const MOVED_SLOT = 4
const dir = mkdtempSync(join(tmpdir(), 'blixard-dht-subnets-'))
const cliDir = join(dir, 'cli')
const key = join(dir, 'cluster.key')
let adminId = ''

interface Node { id: string, dir: string, addr: string, proc: ChildProcess | null }
const nodes: Node[] = []
interface Seen { st: Status | null, nodes?: NodeRecord[] }
/** the probes' last answer per slot: n1..n4, then the moved node at its new address */
const seen: Seen[] = []
const probes: ChildProcess[] = []
/** the node of A that moves (a follower) */
let m = -1
let failed = false

function setup (): void {
  A.up()
  B.up()
  A.attach(ROUTER, 'vr', ROUTER_HOST)
  B.join(ROUTER, 'vr', ROUTER_HOST, 'eth1')
  ip('netns', 'exec', ROUTER, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
  NS.forEach((ns, i) => {
    const sw = i < 3 ? A : B
    sw.attach(ns, `v${i + 1}`, i < 3 ? i + 1 : 1, { multicast: true })
    ip('-n', ns, 'route', 'add', 'default', 'via', sw.addr(ROUTER_HOST))
  })
  A.attach(CL, 'vc', 100)
  ip('-n', CL, 'route', 'add', 'default', 'via', A.addr(ROUTER_HOST))
}

function teardown (): void { A.teardown(); B.teardown() }
process.on('exit', teardown)

function spawnNode (i: number, listenIp: string, extra: string[] = []): void {
  const n = nodes[i]
  const out = openSync(join(n.dir, 'log'), 'a')
  n.proc = track(spawn('ip', ['netns', 'exec', NS[i], process.execPath, '--max-semi-space-size=4', join(ROOT, 'bin', 'blixard-node.js'),
    '--name', `n${i + 1}`, '--data-dir', n.dir, '--listen', `/ip4/${listenIp}/tcp/7000`, '--cluster-key-file', key,
    '--mdns', '--metrics-port', '0', '--bootstrap-expect', '3', '--admin', adminId,
    // the moved node restarts in seconds on an idle machine, in tens on a loaded one: autopilot
    // must not replace it meanwhile (this test is about finding it, not about replacing it)
    '--autopilot-dead-after-ms', String(AUTOPILOT_DEAD_AFTER_MS), ...extra], { cwd: ROOT, stdio: ['ignore', out, out] }))
}

async function stopProc (p: ChildProcess | null, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p == null || p.exitCode != null || p.signalCode != null) return
  const exited = new Promise((resolve) => p.on('exit', resolve))
  p.kill(sig)
  await exited
}

const log = (i: number): string => { try { return readFileSync(join(nodes[i].dir, 'log'), 'utf8') } catch { return '' } }
const lines = (i: number, msg: string): number => log(i).split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length

function dumpLogs (): void {
  failed = true
  nodes.forEach((_, i) => { console.log(`--- n${i + 1}\n${log(i).split('\n').filter((l) => !l.includes('"debug"')).slice(-10).map((l) => l.slice(0, 300)).join('\n')}`) })
  console.log(`  probe saw: ${JSON.stringify(seen.map((s) => s?.st == null ? null : { id: s.st.id.slice(-6), leader: s.st.leader?.slice(-6), voters: s.st.voters.length, learners: s.st.learners.length }))}`)
}

/** statuses of the given probe slots when all answer, name one leader and hold `members` members */
function agreed (slots: number[], members: number): Status[] | null {
  const sts = slots.map((i) => seen[i]?.st ?? null)
  if (sts.some((s) => s == null)) return null
  const all = sts as Status[]
  for (const s of all) if (s.leader == null || s.leader !== all[0].leader || s.voters.length + s.learners.length !== members) return null
  return all
}

test.before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the routed-subnets test needs root (ip netns)')
  adminId = peerIdFromPrivateKey((await loadOrCreateIdentity(cliDir)).privateKey).toString()
  teardown()
  setup()
  await writeClusterKey(key)
  for (let i = 0; i < NS.length; i++) {
    const ndir = join(dir, `n${i + 1}`)
    mkdirSync(ndir, { recursive: true })
    const id = peerIdFromPrivateKey((await loadOrCreateIdentity(ndir)).privateKey).toString()
    nodes.push({ id, dir: ndir, addr: `/ip4/${ipOf(i)}/tcp/7000/p2p/${id}`, proc: null })
  }
  watch(nodes.map((x) => x.addr), 0)
})

/** A probe in the client namespace asking the nodes at `addrs` for their status and node table,
 * its answers in seen[first…]. One probe per address set: a probe given a peer's old and new
 * address would dial both in one dial (libp2p joins dials to one peer) and stall on the dead one. */
function watch (addrs: string[], first: number): void {
  const probe = track(spawn('ip', ['netns', 'exec', CL, process.execPath, '--import', 'tsx', join(ROOT, 'test', 'cluster', 'ns-probe.ts'), key, cliDir, ...addrs],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, PROBE_NODES: '1' } }))
  probes.push(probe)
  let buf = ''
  probe.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { i?: number, st?: Status | null, nodes?: NodeRecord[] }
      buf = buf.slice(nl + 1)
      if (line.i != null) seen[first + line.i] = { st: line.st ?? null, nodes: line.nodes }
    }
  })
}

test.after(async () => {
  await Promise.all([...nodes.map(async (n) => { await stopProc(n.proc) }), ...probes.map(async (p) => { await stopProc(p) })])
  teardown()
  if (failed) console.log(`  logs kept in ${dir}`)
  else rmSync(dir, { recursive: true, force: true })
  const left = ip('netns', 'list')
  assert.not.ok(left.includes(tag), `namespaces left behind: ${left}`)
})

test('3 nodes in subnet A form one cluster by mDNS', async () => {
  const t0 = Date.now()
  for (let i = 0; i < 3; i++) spawnNode(i, ipOf(i))
  try {
    // ~10 s on an idle machine; mdns.test.ts allows 70 s on a loaded one
    await waitFor('n1..n3 in one cluster', 90_000, () => agreed([0, 1, 2], 3), 100)
  } catch (err) { dumpLogs(); throw err }
  console.log(`  subnet A: one cluster of 3 by mDNS ${Date.now() - t0} ms after spawn`)
})

test('a node in subnet B given one bootstrap address of a node in A joins across the router (multicast does not cross)', async () => {
  const t0 = Date.now()
  spawnNode(3, ipOf(3), ['--bootstrap', nodes[0].addr])
  try {
    // a member: in the configuration of n1..n3, and registered (its own write, through Raft)
    await waitFor('n4 a registered member', 90_000, () => agreed([0, 1, 2], 4) != null && [0, 1, 2].every((i) => seen[i]?.nodes?.some((n) => n.id === nodes[3].id) === true), 100)
  } catch (err) { dumpLogs(); throw err }
  console.log(`  subnet B: joined with one bootstrap address in ${Date.now() - t0} ms`)
  // n4 joined the cluster of A: it never bootstrapped one of its own
  if (lines(3, 'bootstrapping a new cluster') !== 0) failed = true
  assert.is(lines(3, 'bootstrapping a new cluster'), 0)
})

test('a follower in A restarted with a new address is reached again and its record corrected, without an operator', async () => {
  const leader = seen[0].st!.leader!
  // the moved node: a follower in A, so the cluster keeps its leader throughout
  const members = [...seen[0].st!.voters, ...seen[0].st!.learners]
  m = [0, 1, 2].find((i) => nodes[i].id !== leader && members.includes(nodes[i].id))!
  const before = seen[0].st!.commit
  const oldIp = ipOf(m)
  const newIp = movedIp(m)
  await stopProc(nodes[m].proc, 'SIGTERM')
  const ns = NS[m]
  ip('-n', ns, 'addr', 'del', `${oldIp}/24`, 'dev', 'eth0')
  ip('-n', ns, 'addr', 'add', `${newIp}/24`, 'dev', 'eth0')
  ip('-n', ns, 'route', 'replace', 'default', 'via', A.addr(ROUTER_HOST))
  ip('-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0')
  const t0 = Date.now()
  spawnNode(m, newIp)
  watch([`/ip4/${newIp}/tcp/7000/p2p/${nodes[m].id}`], MOVED_SLOT)
  const others = [0, 1, 2, 3].filter((i) => i !== m)
  const hasNew = (s: Seen | undefined): boolean => {
    const rec = s?.nodes?.find((n) => n.id === nodes[m].id)
    return rec != null && rec.addrs.some((a) => a.includes(`/ip4/${newIp}/`)) && !rec.addrs.some((a) => a.includes(`/ip4/${oldIp}/`))
  }
  try {
    // every node (the moved one at its new address) names the same leader, and the moved node has
    // applied what was committed before it moved: the leader reaches it again
    await waitFor(`n${m + 1} back at its new address, caught up`, 90_000, () => {
      const sts = agreed([...others.filter((i) => i < 3), MOVED_SLOT], 4)
      return sts != null && sts[sts.length - 1].applied >= before
    }, 100)
    const back = Date.now() - t0
    // its record says where it is now, on every node, including the one in the other subnet
    await waitFor(`n${m + 1}'s record corrected on every node of A`, 30_000, () => [...others.filter((i) => i < 3), MOVED_SLOT].every((i) => hasNew(seen[i])), 100)
    const corrected = Date.now() - t0
    const viaDht = nodes.map((_, i) => lines(i, 'member found through the DHT at a new address'))
    console.log(`  n${m + 1} moved ${oldIp} → ${newIp}: caught up ${back} ms after restart, record corrected everywhere at ${corrected} ms; "found through the DHT" per node ${JSON.stringify(viaDht)}; updates of its own record by n${m + 1}: ${lines(m, 'updated this node')}`)
    assert.ok(lines(m, 'updated this node') >= 1, 'the moved node corrected its own record')
  } catch (err) { dumpLogs(); throw err }
})

test('the CLI given a member\'s address and another node\'s peer id reaches that node through the member; that node (in B) has the moved node\'s new address', async () => {
  const entry = [0, 1, 2].find((i) => i !== m)!
  const env = { BLIXARD_CONFIG_DIR: cliDir, BLIXARD_CLUSTER_KEY_FILE: key, BLIXARD_PEER: nodes[entry].addr }
  const wrap = ['ip', 'netns', 'exec', CL]
  // one after the other: they share the CLI identity
  const r = await runCli(['status', '--stale', '--json', '--peer-id', nodes[3].id], env, 60_000, wrap)
  const t = await runCli(['nodes', '--stale', '--json', '--peer-id', nodes[3].id], env, 60_000, wrap)
  if (r.code !== 0 || t.code !== 0) failed = true
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  assert.is(t.code, 0, `exit ${t.code}: ${t.stderr}`)
  assert.is((r.json as Status).id, nodes[3].id, 'answered by n4 (in subnet B), whose address the CLI was never given')
  // --stale: n4's own replica, so n4 has applied the moved node's correction of its record
  const movedRec = (t.json as NodeRecord[]).find((n) => n.id === nodes[m].id)
  assert.ok(movedRec != null && movedRec.addrs.some((a) => a.includes(`/ip4/${movedIp(m)}/`)), `n4's table has the moved node's new address: ${JSON.stringify(movedRec?.addrs)}`)
  console.log(`  CLI --peer-id n4 through n${entry + 1}: node table from n4 in ${r.ms} ms (CLI process start included)`)
})

test.run()
