// Cluster formation and failover with real blixard-node processes on 127.0.0.1: three fresh nodes form one cluster;
// a write through a follower is forwarded; kill -9 of the leader gives a new leader and writes
// succeed again; the killed node restarts and catches up; a 4th node joins as a learner, takes the
// log from a follower (relayed learners), and keeps up when that follower is killed; idle RSS.
// Ports 17110-17113 (metrics 17210-17213).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, runCli, rssMiB, vmSpec, logTime, sleep } from './harness.ts'
import type { Status } from './harness.ts'

const c = new TestCluster({ nodes: 4, basePort: 17110 }, 'cluster')
const figures: Record<string, string> = {}
let failed = false

const leaderIndex = (st: Status): number => c.nodes.findIndex((n) => n.peerId === st.leader)

test.before(async () => { await c.prepare() })
test.after(async () => {
  if (failed) console.log(c.logTails())
  await c.stop()
  console.log(`  figures: ${JSON.stringify(figures)}`)
})

function guard (name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try { await fn() } catch (err) { failed = true; throw err }
  })
}

guard('three fresh nodes form one cluster: 3 voters, one leader, every node names the same leader', async () => {
  const t0 = Date.now()
  for (const i of [0, 1, 2]) c.start(i)
  const sts = await waitFor('3 nodes agreeing on a leader with 3 voters', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
  figures.formationMs = String(Date.now() - t0)
  console.log(`  cluster formed ${Date.now() - t0} ms after the 3 processes were spawned; leader ${sts[0].leader}`)
  const ids = c.nodes.slice(0, 3).map((n) => n.peerId).sort()
  for (const s of sts) {
    assert.equal([...s.voters].sort(), ids)
    assert.equal(s.learners, [])
  }
  assert.is(new Set(sts.map((s) => s.id)).size, 3, 'each node answered for itself')
})

guard('a write through a follower is forwarded to the leader (CLI vm create --json, as admin)', async () => {
  const st = await waitFor('a status from node1', 20_000, async () => await c.status(0))
  const follower = [0, 1, 2].find((i) => c.nodes[i].peerId !== st.leader)!
  const r = await runCli(['vm', 'create', 'through-follower', '--no-start', '--json'], c.cliEnv(follower))
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`)
  const vm = r.json as { id: string, spec: { name: string }, desired: string }
  assert.is(vm.spec.name, 'through-follower')
  assert.is(vm.desired, 'stopped')
  console.log(`  vm create through follower ${c.nodes[follower].name}: ${r.ms} ms (CLI process included)`)
  // every node has it applied (linearizable read on each)
  for (const i of [0, 1, 2]) {
    const got = await (await c.client(i)).call('vm.show', { vm: 'through-follower' })
    assert.is(got.id, vm.id)
  }
})

// Idle means idle for a while: a daemon gives back the young generation that starting and the
// writes above grew only after ~5 s of an idle event loop plus V8's memory reducer's ~8-10 s
// (node/memory-trim.ts), so RSS is read until every node is under the bound or 40 s passed.
guard('idle RSS of each node is at most 150 MB', async () => {
  const t0 = Date.now()
  let rss: number[] = []
  for (;;) {
    rss = [0, 1, 2].map((i) => rssMiB(c.nodes[i].proc!.pid!))
    if (rss.every((r) => r * 1.048576 <= 150) || Date.now() - t0 > 40_000) break
    await sleep(1_000)
  }
  figures.idleRssMiB = rss.map((r) => r.toFixed(0)).join('/')
  console.log(`  idle RSS after ${((Date.now() - t0) / 1000).toFixed(0)} s idle: ${rss.map((r) => `${r.toFixed(1)} MiB`).join(', ')}`)
  for (const r of rss) assert.ok(r * 1.048576 <= 150, `RSS ${r.toFixed(1)} MiB is over 150 MB after 40 s idle`)
})

let killed = -1

guard('kill -9 of the leader: a new leader is elected and writes succeed again', async () => {
  const st = await waitFor('a status from node1', 20_000, async () => await c.status(0))
  killed = leaderIndex(st)
  assert.ok(killed >= 0)
  const survivors = [0, 1, 2].filter((i) => i !== killed)
  const t0 = Date.now()
  c.kill(killed, 'SIGKILL')
  await c.exited(killed)
  // first successful write through a survivor after the kill
  let n = 0
  await waitFor('a write to succeed after the leader was killed', 30_000, async () => {
    const via = survivors[n++ % 2]
    const cl = await c.client(via)
    const vm = await cl.call('vm.create', { spec: vmSpec(`after-failover-${n}`), start: false }, { timeoutMs: 2_000 })
    return vm.id
  }, 20)
  const failoverMs = Date.now() - t0
  figures.failoverMs = String(failoverMs)
  const after = await waitFor('the survivors to agree on a new leader', 10_000, async () => await c.agreed(survivors, 3))
  assert.not.equal(after[0].leader, c.nodes[killed].peerId)
  console.log(`  failover: kill -9 of ${c.nodes[killed].name} to the first successful write: ${failoverMs} ms; new leader ${c.nodes[leaderIndex(after[0])].name}`)
})

guard('the killed node restarts from its data dir and catches up', async () => {
  const t0 = Date.now()
  c.start(killed)
  const survivors = [0, 1, 2].filter((i) => i !== killed)
  const target = Math.max(...(await Promise.all(survivors.map(async (i) => (await c.status(i))!.applied))))
  const st = await waitFor('the restarted node to apply as far as the others', 40_000, async () => {
    const s = await c.status(killed, true)
    return s != null && s.applied >= target && s.leader != null ? s : null
  }, 200)
  figures.catchUpMs = String(Date.now() - t0)
  console.log(`  ${c.nodes[killed].name} restarted and reached applied index ${st.applied} (others ${target}) ${Date.now() - t0} ms after spawn`)
  await waitFor('all three to agree again', 15_000, async () => await c.agreed([0, 1, 2], 3))
  // and a write through the restarted node still works
  const vm = await (await c.client(killed)).call('vm.create', { spec: vmSpec('through-restarted'), start: false })
  assert.is(vm.spec.name, 'through-restarted')
})

guard('a 4th node started later joins as a learner within 5 s of being up', async () => {
  const spawnedAt = Date.now()
  c.start(3)
  // the 5 s target counts from the node being up: a tsx start alone takes 10-30 s on a loaded machine
  const st = await waitFor('node4 to be a learner', 75_000, async () => {
    // ask every running node (stale): the leader knows first
    const all = await Promise.all([0, 1, 2].map(async (i) => await c.status(i, true)))
    return all.find((s) => s?.learners.includes(c.nodes[3].peerId) === true)
  }, 50)
  const now = Date.now()
  const upAt = logTime(c.log(3), 'node started') ?? spawnedAt
  const joinMs = now - upAt
  figures.learnerJoinMs = String(joinMs)
  console.log(`  node4 a learner ${joinMs} ms after it was up ("node started" in its log), ${now - spawnedAt} ms after spawn`)
  assert.is(st.voters.length, 3)
  assert.not.ok(st.voters.includes(c.nodes[3].peerId))
  assert.ok(joinMs < 5_000, `learner after ${joinMs} ms (target < 5 s)`)
  // it replicates: its own status answers with the cluster's leader
  const own = await waitFor('node4 to know the leader', 15_000, async () => { const s = await c.status(3, true); return s?.leader != null ? s : null })
  assert.is(own.leader, st.leader)
})

/** Raft messages node i sent or received so far, by type (its /metrics). */
async function raftMessages (i: number, way: 'sent' | 'received'): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${c.nodes[i].metricsPort}/metrics`)).text()
  const out: Record<string, number> = {}
  const re = new RegExp(`^blixard_raft_messages_${way}_total\\{type="(\\w+)"\\} (\\d+)`)
  for (const line of text.split('\n')) {
    const m = re.exec(line)
    if (m != null) out[m[1]] = Number(m[2])
  }
  return out
}
const received = async (i: number): Promise<Record<string, number>> => await raftMessages(i, 'received')
const sentBy = async (i: number): Promise<Record<string, number>> => await raftMessages(i, 'sent')

guard('the learner takes the log from a follower, not from the leader (relayed learners)', async () => {
  // it subscribes within an election timeout or two of joining; then the leader sends it nothing
  await sleep(2_000)
  const before = await received(3)
  const st = (await c.status(0))!
  const leader = leaderIndex(st)
  const cl = await c.client(leader)
  for (let k = 0; k < 20; k++) await cl.call('vm.create', { spec: vmSpec(`relayed-${k}`), start: false })
  const target = (await c.status(leader))!.applied
  const own = await waitFor('node4 to apply the 20 writes', 15_000, async () => { const s = await c.status(3, true); return s != null && s.applied >= target ? s : null }, 100)
  const after = await received(3)
  const delta = (t: string): number => (after[t] ?? 0) - (before[t] ?? 0)
  console.log(`  node4 applied ${own.applied} (leader ${target}); received during the writes: ${JSON.stringify(Object.fromEntries(Object.keys(after).map((t) => [t, delta(t)]).filter(([, n]) => n !== 0)))}`)
  assert.ok(delta('MsgRelayApp') >= 1, 'committed entries came from a follower')
  assert.is(delta('MsgApp'), 0, 'no append from the leader')
  assert.is(delta('MsgHeartbeat'), 0, 'no heartbeat from the leader')
  // and a linearizable read on the learner sees the last write
  const got = await (await c.client(3)).call('vm.show', { vm: 'relayed-19' })
  assert.is(got.spec.name, 'relayed-19')
})

guard('kill -9 of the learner\'s relay: the learner finds another feed and keeps up', async () => {
  const st = (await c.status(0, true))!
  const leader = leaderIndex(st)
  const followers = [0, 1, 2].filter((i) => i !== leader)
  const a = await Promise.all(followers.map(sentBy))
  await sleep(1_000)
  const b = await Promise.all(followers.map(sentBy))
  // the follower whose relayed appends (heartbeats included) grew is the learner's relay
  const k = followers.findIndex((_, j) => (b[j].MsgRelayApp ?? 0) > (a[j].MsgRelayApp ?? 0))
  assert.ok(k >= 0, `one follower relays to node4: ${JSON.stringify({ a, b })}`)
  const relay = followers[k]
  c.kill(relay)
  await c.exited(relay)
  const t0 = Date.now()
  const cl = await c.client(leader)
  for (let j = 0; j < 10; j++) await cl.call('vm.create', { spec: vmSpec(`after-relay-${j}`), start: false })
  const target = (await c.status(leader))!.applied
  const own = await waitFor('node4 to apply the writes made after its relay died', 20_000, async () => { const s = await c.status(3, true); return s != null && s.applied >= target ? s : null }, 100)
  console.log(`  relay ${c.nodes[relay].name} killed; node4 applied ${own.applied} (leader ${target}) ${Date.now() - t0} ms later`)
  c.start(relay)
  await waitFor('the killed relay back among 3 agreeing voters', 40_000, async () => await c.agreed([0, 1, 2], 3), 250)
})

test.run()
