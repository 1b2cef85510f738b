// Membership as the simulator runs it: the shipped rounds of node/membership.ts (a fresh node's
// hellos and cluster.join, the leader's admit, autopilot, self-registration, the admin-recovery
// vote, reaching members) over the simulated network and clock, with no nemesis, so each step is
// the membership code's own doing. A fresh replica becomes a learner by itself; a voter dead longer
// than autopilot's timeout is replaced by that learner in one joint change; a fresh replica cut off
// from everyone stays out (it neither joins nor bootstraps a cluster of its own); every member
// registers itself and, once an admin recovery is noted everywhere, votes until the admin is added;
// a member cut off is looked for again at doubling intervals.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { EventQueue } from '../../sim/event-queue.ts'
import { Prng } from '../../sim/prng.ts'
import { Cluster } from '../../sim/cluster.ts'
import { ElectionSafety } from '../../sim/checkers/election-safety.ts'
import { ConfigSafety } from '../../sim/checkers/config-safety.ts'
import { SIM_AUTOPILOT } from '../../sim/replica.ts'
import { RECOVERED_ADMIN } from '../../sim/run.ts'
import { REACH_RETRY_MAX_MS, REACH_RETRY_MIN_MS } from '../../node/membership.ts'
import type { Checker } from '../../sim/checkers/checker.ts'

function world (seed: number): { sched: EventQueue, cluster: Cluster, checkers: Checker[], trace: string[] } {
  const sched = new EventQueue()
  const trace: string[] = []
  const checkers: Checker[] = [new ElectionSafety(), new ConfigSafety()]
  const cluster = new Cluster({
    sched, rng: new Prng(seed), nodes: 3, bugs: new Set(), checkers, preVote: true, checkQuorum: true,
    maxSizePerMsg: 64 * 1024, maxInflightMsgs: 64, trace: (line) => { trace.push(`${sched.now()} ${line}`) }
  })
  cluster.start()
  return { sched, cluster, checkers, trace }
}

function violations (checkers: Checker[]): string[] {
  return checkers.flatMap((c) => c.violations.map((v) => `${c.name}: ${v.message}`))
}

test('a fresh replica joins as a learner through hellos, cluster.join and the leader\'s admit', async () => {
  const { sched, cluster, checkers, trace } = world(11)
  await sched.runUntilSettled(2_000)
  assert.ok(cluster.leader() !== null, 'a leader after 2 s')
  const fresh = cluster.spawn()
  await sched.runUntilSettled(5_000)
  const conf = cluster.conf()
  assert.ok(conf !== null && conf.learners.includes(fresh.id), `${fresh.id} is a learner: ${JSON.stringify(conf)}`)
  assert.ok(trace.some((l) => l.includes('rpc cluster.join')), 'it asked to join')
  assert.ok(trace.some((l) => l.includes('added a learner')), 'the leader admitted it')
  assert.equal(violations(checkers), [])
})

test('autopilot replaces a voter dead for longer than its timeout by the caught-up learner', async () => {
  const { sched, cluster, checkers } = world(12)
  await sched.runUntilSettled(2_000)
  const fresh = cluster.spawn()
  await sched.runUntilSettled(5_000)
  const leader = cluster.leader()
  assert.ok(leader !== null)
  const victim = cluster.conf()?.voters.find((v) => v !== leader.id)
  assert.ok(victim !== undefined)
  cluster.crash(victim, 'test')
  await sched.runUntilSettled(5_000 + SIM_AUTOPILOT.deadAfterMs + 3_000)
  const conf = cluster.conf()
  assert.ok(conf !== null, 'still a leader')
  assert.ok(conf.voters.includes(fresh.id), `${fresh.id} promoted: ${JSON.stringify(conf)}`)
  assert.not.ok(conf.voters.includes(victim), `${victim} removed: ${JSON.stringify(conf)}`)
  assert.equal(conf.voters.length, 3, 'three voters again')
  assert.equal(violations(checkers), [])
})

test('a fresh replica cut off from every member neither joins nor bootstraps a cluster of its own', async () => {
  const { sched, cluster, checkers, trace } = world(13)
  await sched.runUntilSettled(2_000)
  const fresh = cluster.spawn()
  cluster.net.isolate(fresh.id, cluster.memberIds())
  await sched.runUntilSettled(6_000)
  assert.not.ok(cluster.conf()?.learners.includes(fresh.id) ?? false)
  assert.equal(fresh.raftStatus()?.conf.voters ?? [], [], 'no configuration of its own')
  assert.not.ok(trace.some((l) => l.includes('bootstrapped a new cluster')))
  cluster.net.rejoin(fresh.id)
  await sched.runUntilSettled(9_000)
  assert.ok(cluster.conf()?.learners.includes(fresh.id) ?? false, 'joins once the link is back')
  assert.equal(violations(checkers), [])
})

test('every member registers itself; a recovery noted on all of them adds the admin once each voted', async () => {
  const { sched, cluster, checkers, trace } = world(14)
  await sched.runUntilSettled(4_000)
  const leader = cluster.leader()
  assert.ok(leader?.sm != null, 'a leader after 4 s')
  assert.equal(leader.sm.listNodes().map((n) => n.id).sort(), ['n1', 'n2', 'n3'], 'each replica put its own record')
  assert.not.ok(leader.sm.isAdmin(RECOVERED_ADMIN))
  cluster.noteRecovery(RECOVERED_ADMIN)
  await sched.runUntilSettled(8_000)
  const voted = trace.filter((l) => l.includes('admin recovery: voted')).length
  assert.is(voted, 3, 'one vote per member, then the note is cleared')
  for (const r of cluster.replicas) {
    assert.is(r.recoveryNote, null, `${r.id} cleared its note`)
    assert.ok(r.sm?.isAdmin(RECOVERED_ADMIN), `${r.id} applied the recovered admin`)
  }
  assert.equal(violations(checkers), [])
})

test('a member cut off is dialed again at doubling intervals, and no more once it is back', async () => {
  const { sched, cluster, checkers, trace } = world(15)
  await sched.runUntilSettled(3_000)
  cluster.net.isolate('n3', ['n1', 'n2'])
  const cutAt = sched.now()
  await sched.runUntilSettled(cutAt + 30_000)
  const tries = trace.filter((l) => l.includes(' n1 reach n3 unreachable')).map((l) => Number(l.split(' ')[0]))
  assert.ok(tries.length >= 4, `n1 looked for n3 several times: ${JSON.stringify(tries)}`)
  const gaps = tries.slice(1).map((t, i) => t - tries[i])
  // the wait doubles from REACH_RETRY_MIN_MS up to the max (plus up to one round's period of slack)
  for (const [i, gap] of gaps.entries()) {
    const want = Math.min(REACH_RETRY_MAX_MS, REACH_RETRY_MIN_MS * 2 ** i)
    assert.ok(gap >= want && gap < want + 2 * REACH_RETRY_MIN_MS, `gap ${i} is ${gap} ms, wanted about ${want}: ${JSON.stringify(tries)}`)
  }
  cluster.net.rejoin('n3')
  const before = trace.filter((l) => l.includes(' reach n3 ')).length
  await sched.runUntilSettled(sched.now() + 10_000)
  assert.is(trace.filter((l) => l.includes(' reach n3 ')).length, before, 'connected again: not dialed')
  assert.equal(violations(checkers), [])
})

test.run()
