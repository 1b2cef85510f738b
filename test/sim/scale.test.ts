// The replica-set scale model (sim/scale/): the shipped Raft core for the voters, relays modelled on
// top, a cost model calibrated on the 3-host figures. What must hold if the model is right: the
// leader's frames per write grow with the hosts when it feeds every learner itself and stay flat
// when followers or a tree feed them; a relay tree bounds every node's fan-out; every relayed
// learner and every watching host ends with exactly the committed log (or its own records of it)
// through relay crashes, restarts and loss; and the checker that says so fails on a learner that
// appends across a gap and on a host that ignores a lost event. No processes, no ports.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { runScale } from '../../sim/scale/run.ts'
import type { ScaleResult } from '../../sim/scale/run.ts'
import { DEFAULT_COST, calibrate, cpuMsPerWrite } from '../../sim/scale/cost.ts'
import { calibrationOf, estimate } from '../../sim/scale/estimate.ts'
import { shapeOf, treeDepth, treeParents, rendezvous, feederCandidates } from '../../sim/scale/topology.ts'
import { parseScaleArgs } from '../../sim/scale/cli.ts'

const leaderSent = (r: ScaleResult): number => r.leader?.perWrite.framesSent ?? NaN
const small = { writes: 200 }

test('leader-fed: the leader\'s frames per write grow linearly with the hosts', () => {
  const r20 = runScale({ ...small, topology: 'leader-fed', hosts: 20 })
  const r60 = runScale({ ...small, topology: 'leader-fed', hosts: 60 })
  assert.equal(r20.violations, [])
  assert.equal(r60.violations, [])
  // 19 and 59 peers: the ratio of frames follows the ratio of peers (heartbeats included)
  const ratio = leaderSent(r60) / leaderSent(r20)
  assert.ok(Math.abs(ratio - 59 / 19) < 0.1 * (59 / 19), `frames ratio ${ratio.toFixed(2)}, peers ratio ${(59 / 19).toFixed(2)}`)
  assert.ok(r60.leader !== null && r60.leader.raftMsgsPerWrite > 59 / 4, `every batch of 4 writes reaches all 59 peers: ${r60.leader?.raftMsgsPerWrite}`)
})

test('follower-relay, relay-tree and read-through: the leader\'s frames and bytes per write do not grow with the hosts', () => {
  for (const topology of ['follower-relay', 'relay-tree', 'read-through'] as const) {
    const a = runScale({ ...small, topology, hosts: 20 })
    const b = runScale({ ...small, topology, hosts: 120 })
    assert.equal(a.violations, [], topology)
    assert.equal(b.violations, [], topology)
    assert.ok(b.learners + b.watchers > a.learners + a.watchers)
    assert.ok(Math.abs(leaderSent(b) - leaderSent(a)) < 0.02 * leaderSent(a), `${topology}: ${leaderSent(a)} vs ${leaderSent(b)} frames per write`)
    const bytes = (r: ScaleResult): number => r.leader?.perWrite.bytesSent ?? NaN
    assert.ok(Math.abs(bytes(b) - bytes(a)) < 0.02 * bytes(a), `${topology}: ${bytes(a)} vs ${bytes(b)} bytes per write`)
    // only the 4 followers hear from the leader: per batch of 4 writes at most the entries and a
    // commit notice each, plus heartbeats
    assert.ok(leaderSent(b) < 2 * 4 / 4 + 0.2, `${topology}: ${leaderSent(b)}`)
  }
})

test('linearizable reads: in leader-fed every read\'s heartbeat round reaches every learner; otherwise only the voters', () => {
  const a20 = runScale({ ...small, topology: 'leader-fed', hosts: 20, reads: 50 })
  const a60 = runScale({ ...small, topology: 'leader-fed', hosts: 60, reads: 50 })
  assert.is(a20.reads.answered, 50)
  assert.is(a60.reads.answered, 50)
  // a round to every other host and its answers: about 2 frames per peer per read
  assert.ok(a60.reads.leaderFramesPerRead > 2 * 59 * 0.8, `${a60.reads.leaderFramesPerRead}`)
  assert.ok(a60.reads.leaderFramesPerRead > 2.5 * a20.reads.leaderFramesPerRead)
  for (const topology of ['follower-relay', 'relay-tree', 'read-through'] as const) {
    const x = runScale({ ...small, topology, hosts: 20, reads: 50 })
    const y = runScale({ ...small, topology, hosts: 120, reads: 50 })
    assert.is(x.reads.answered, 50, topology)
    assert.is(y.reads.answered, 50, topology)
    assert.ok(y.reads.leaderFramesPerRead < 2 * 4 + 3, `${topology}: ${y.reads.leaderFramesPerRead} leader frames per read`)
    assert.ok(Math.abs(y.reads.leaderFramesPerRead - x.reads.leaderFramesPerRead) < 1.5, `${topology}: ${x.reads.leaderFramesPerRead} vs ${y.reads.leaderFramesPerRead}`)
  }
  // a host without a replica pays one more round trip (to its replica) than a replica does
  const fr = runScale({ ...small, topology: 'follower-relay', hosts: 120, reads: 50 })
  const rt = runScale({ ...small, topology: 'read-through', hosts: 120, reads: 50 })
  assert.ok(rt.reads.latencyTicks.p50 > fr.reads.latencyTicks.p50, `${rt.reads.latencyTicks.p50} vs ${fr.reads.latencyTicks.p50}`)
})

test('relay-tree bounds every node\'s fan-out; follower-relay piles the learners on the followers', () => {
  const p = DEFAULT_COST
  const c = calibrationOf(small, p)
  const busiest = (r: ScaleResult): number => Math.max(...r.nodes.filter((n) => n.role !== 'leader').map((n) => n.perWrite.framesSent))
  const fr = runScale({ ...small, topology: 'follower-relay', hosts: 120 })
  const tr = runScale({ ...small, topology: 'relay-tree', hosts: 120, fanout: 4 })
  // a follower feeds ~115/4 learners, one frame each per batch of 4 writes
  assert.ok(busiest(fr) > 6, `follower-relay busiest ${busiest(fr)}`)
  // a tree node feeds at most 4 children (+ its own answer to the leader), per batch of 4 writes
  assert.ok(busiest(tr) <= 5 / 4 + 0.15, `relay-tree busiest ${busiest(tr)}`)
  assert.ok(tr.depth >= 3, `depth ${tr.depth}`)
  const cpu = (r: ScaleResult): number => Math.max(...r.nodes.filter((n) => n.role !== 'leader').map((n) => cpuMsPerWrite(n.role === 'host' ? 'host' : n.role === 'learner' ? 'learner' : 'follower', n.perWrite, c, p)))
  assert.ok(cpu(tr) < cpu(fr), `tree ${cpu(tr)} vs follower-relay ${cpu(fr)}`)
  // the price: one hop of lag per level
  assert.ok(tr.lagTicks.p50 > fr.lagTicks.p50, `lag ${tr.lagTicks.p50} vs ${fr.lagTicks.p50}`)
})

test('raft-relay, the relayed learners the Raft core ships: the leader sends the same frames per write at 20 and 120 hosts, and its CPU stays near the 3-host figure', () => {
  const a = runScale({ ...small, topology: 'raft-relay', hosts: 20 })
  const b = runScale({ ...small, topology: 'raft-relay', hosts: 120 })
  const fed = runScale({ ...small, topology: 'leader-fed', hosts: 120 })
  assert.equal(a.violations, [])
  assert.equal(b.violations, [])
  assert.ok(a.converged && b.converged)
  assert.ok(Math.abs(leaderSent(b) - leaderSent(a)) < 0.05 * leaderSent(a), `${leaderSent(a)} vs ${leaderSent(b)} frames sent per write`)
  assert.ok(leaderSent(b) < 2 * 4 / 4 + 0.2, `only the followers hear from the leader: ${leaderSent(b)}`)
  assert.ok(leaderSent(fed) > 20 * leaderSent(b), `leader-fed at 120 hosts: ${leaderSent(fed)} frames per write`)
  // what still grows: each learner tells the leader who feeds it once an election timeout
  const recv = (r: ScaleResult): number => r.leader?.perWrite.framesRecv ?? NaN
  assert.ok(recv(b) < 3, `frames received per write at 120 hosts: ${recv(b)}`)
})

test('raft-relay converges through the crash and restart of a follower and of a learner, and 2% loss', () => {
  for (const seed of [1, 2]) {
    const r = runScale({ topology: 'raft-relay', hosts: 40, seed, writes: 300, loss: 0.02, faults: true })
    assert.equal(r.violations, [], `seed ${seed}`)
    assert.ok(r.converged)
    assert.is(r.writes, 300)
  }
})

test('every relayed learner and watching host converges to the committed log through relay crashes, restarts and loss', () => {
  for (const topology of ['follower-relay', 'relay-tree', 'read-through'] as const) {
    for (const seed of [1, 2]) {
      const r = runScale({ topology, hosts: 60, fanout: 3, seed, writes: 300, loss: 0.02, faults: true })
      assert.equal(r.violations, [], `${topology} seed ${seed}`)
      assert.ok(r.converged)
      assert.ok(r.writes === 300, `${topology} seed ${seed}: ${r.writes} writes committed`)
      assert.ok(r.reattaches > 0, `${topology} seed ${seed}: the crash moved nobody`)
    }
  }
  // leader-fed learners are Raft's own: the same faults, the same end
  const a = runScale({ topology: 'leader-fed', hosts: 12, writes: 300, loss: 0.02, faults: true })
  assert.equal(a.violations, [])
})

test('the relay checker fails on a learner that appends across a gap in its log', () => {
  const r = runScale({ topology: 'follower-relay', hosts: 20, writes: 300, loss: 0.05, bugs: new Set(['accept-gap']) })
  assert.ok(r.violations.some((v) => v.checker === 'relay-logs' && /hole|differs|different|not converged/.test(v.message)), JSON.stringify(r.violations))
  const ok = runScale({ topology: 'follower-relay', hosts: 20, writes: 300, loss: 0.05 })
  assert.equal(ok.violations, [])
})

test('the relay checker fails on a host that takes an event after a lost one as if nothing were missing', () => {
  const r = runScale({ topology: 'read-through', hosts: 60, writes: 300, loss: 0.05, bugs: new Set(['ignore-lost-event']) })
  assert.ok(r.violations.some((v) => v.checker === 'relay-logs' && /not converged/.test(v.message)), JSON.stringify(r.violations))
  const ok = runScale({ topology: 'read-through', hosts: 60, writes: 300, loss: 0.05 })
  assert.equal(ok.violations, [])
})

test('one seed, one result', () => {
  const x = runScale({ topology: 'relay-tree', hosts: 30, seed: 7, writes: 100, loss: 0.02, faults: true })
  const y = runScale({ topology: 'relay-tree', hosts: 30, seed: 7, writes: 100, loss: 0.02, faults: true })
  assert.equal(JSON.stringify(x), JSON.stringify(y))
})

test('cost model: calibration reproduces the measured figures; the estimate prices leader-fed above the others', () => {
  const leader = { framesSent: 0.5, framesRecv: 0.5, bytesSent: 1000, bytesRecv: 100 }
  const follower = { framesSent: 0.25, framesRecv: 0.25, bytesSent: 50, bytesRecv: 500 }
  const c = calibrate(leader, follower)
  assert.ok(Math.abs(cpuMsPerWrite('leader', leader, c) - DEFAULT_COST.leaderMsPerWrite) < 1e-9)
  assert.ok(Math.abs(cpuMsPerWrite('follower', follower, c) - DEFAULT_COST.followerMsPerWrite) < 1e-9)
  assert.throws(() => calibrate({ framesSent: 100, framesRecv: 0, bytesSent: 0, bytesRecv: 0 }, follower), /exceeds the measured CPU/)
  const e = estimate(['leader-fed', 'relay-tree'], [3, 40], small)
  const at = (t: string, n: number): number => e.rows.find((r) => r.topology === t && r.hosts === n)?.leaderCpuMsPerWrite ?? NaN
  assert.ok(Math.abs(at('leader-fed', 3) - DEFAULT_COST.leaderMsPerWrite) < 1e-9, 'the calibration point costs what was measured')
  assert.ok(at('leader-fed', 40) > 1.5 * at('relay-tree', 40), `${at('leader-fed', 40)} vs ${at('relay-tree', 40)}`)
})

test('topology: voters, tree parents, rendezvous fallbacks', () => {
  const s = shapeOf('read-through', 1000)
  assert.is(s.voters.length, 5)
  assert.is(s.learners.length, 20)
  assert.is(s.watchers.length, 975)
  assert.is(shapeOf('relay-tree', 3).learners.length, 0)
  const followers = ['n2', 'n3', 'n4', 'n5']
  const learners = [...Array(60).keys()].map((i) => `n${i + 6}`)
  const p = treeParents(followers, learners, 8)
  assert.is(p.get('n6'), 'n2')
  assert.is(p.get('n37'), 'n5') // the 32nd learner: the last follower's eighth child
  assert.is(p.get('n38'), 'n6') // the 33rd: the first learner's first child
  assert.is(treeDepth(p, ['n1', ...followers]), 2)
  // a learner climbs its ancestors, then tries the other followers
  assert.equal(feederCandidates(shapeOf('relay-tree', 65), 'n38', followers, p).slice(0, 2), ['n6', 'n2'])
  // rendezvous: removing one candidate moves only the learners that had it first
  const moved = learners.filter((l) => rendezvous(l, followers)[0] !== rendezvous(l, followers.filter((f) => f !== 'n3'))[0])
  assert.ok(moved.every((l) => rendezvous(l, followers)[0] === 'n3'))
  assert.ok(moved.length > 0 && moved.length < learners.length)
})

test('sim:scale arguments: each bad one is refused by name', () => {
  assert.equal(parseScaleArgs(['--hosts', '3,100', '--topology', 'a,relay-tree', '--json']).hosts, [3, 100])
  for (const [argv, re] of [
    [['--hosts', '999999'], /--hosts must be/],
    [['--hosts', '3,x'], /--hosts must be/],
    [['--topology', 'mesh'], /--topology must be/],
    [['--writes', '-1'], /--writes needs a value|--writes must be/],
    [['--writes', '1e9'], /--writes must be/],
    [['--loss', '0.9'], /--loss must be/],
    [['--fanout'], /--fanout needs a value/],
    [['--learners', '3'], /unknown argument "--learners"/]
  ] as Array<[string[], RegExp]>) {
    assert.throws(() => parseScaleArgs(argv), re, argv.join(' '))
  }
})

test.run()
