// The rebalancer's policy (placement/plans/rebalance-policy.ts): hysteresis, budget,
// cooldown, minimum gain and hot targets around the greedy plan; and its properties: a step never
// makes the imbalance worse, respects every filter and every limit, and repeated steps on a static
// cluster converge without moving any VM twice (no flapping).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { DEFAULT_REBALANCE_POLICY, FRESH_MEMORY, HOUR_MS, applyMove, planRebalanceStep } from '../../placement/plans/rebalance-policy.ts'
import type { RebalanceMemory, RebalancePolicy } from '../../placement/plans/rebalance-policy.ts'
import { imbalance } from '../../placement/plans/rebalance.ts'
import { placeBatch, applyPlacement, releasePlacement } from '../../placement/place.ts'
import { checkClusterInvariants } from '../../placement/invariants.ts'
import { feasible } from '../../placement/filters.ts'
import { Placer } from '../../placement/placer.ts'
import type { PlacementCluster } from '../../placement/types.ts'
import { arbNodes, arbRequests, emptyCluster, node, vm } from './fixtures.ts'

const P: RebalancePolicy = { ...DEFAULT_REBALANCE_POLICY, maxConcurrent: 4, maxPerHour: 10 }

/** Three nodes with 8 VMs on `a`, then a 4th empty node joins. */
function skewed (): PlacementCluster {
  let c: PlacementCluster = { nodes: [node('a'), node('b'), node('c')], placed: [] }
  for (let i = 0; i < 8; i++) c = applyPlacement(c, vm(`v${i}`, { resources: { cpu: 1, memoryMiB: 4096, diskGiB: 50 } }), i < 6 ? 'a' : 'b')
  return { ...c, nodes: [...c.nodes, node('d')] }
}
const all = (c: PlacementCluster): Set<string> => new Set(c.placed.map((p) => p.request.vmId))

test('a skewed cluster: moves off the fullest node, within the budget, each gaining; the memory records them', () => {
  const c = skewed()
  const s = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 1, now: 1e9, memory: FRESH_MEMORY }, P)
  assert.is(s.moves.length, 3, 'maxConcurrent 4 minus 1 in flight')
  assert.ok(s.moves.every((m) => m.from === 'a' && m.gain * 4 >= P.minGain), 'each lowers the sum of squared distances from the mean by minGain')
  assert.ok(s.after < s.before)
  assert.equal(s.memory, { active: true, started: [1e9, 1e9, 1e9], filling: [] })
  assert.match(s.why, /^imbalance 0\.\d+ → 0\.\d+ in 3 moves$/)
})

test('hysteresis: inactive below startAbove; once active, keeps on until below stopBelow', () => {
  const c = skewed()
  const before = imbalance(c.nodes)
  const hi: RebalancePolicy = { ...P, startAbove: before + 0.01, stopBelow: before / 4 }
  const idle = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY }, hi)
  assert.equal([idle.moves.length, idle.memory.active], [0, false])
  assert.match(idle.why, /is not above/)
  const going = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory: { active: true, started: [], filling: [] } }, hi)
  assert.ok(going.moves.length > 0 && going.memory.active, 'inside the band and active: it goes on')
})

test('limits: the hourly budget, in-flight moves, cooldowns and hot targets', () => {
  const c = skewed()
  const mem = (n: number, at: number): RebalanceMemory => ({ active: true, started: Array.from({ length: n }, () => at), filling: [] })
  const spent = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 0, now: HOUR_MS, memory: mem(P.maxPerHour, 1) }, P)
  assert.equal(spent.moves, [])
  assert.match(spent.why, /10 moves started in the last hour/)
  const aged = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 2 * HOUR_MS, memory: mem(P.maxPerHour, 1) }, P)
  assert.ok(aged.moves.length > 0, 'an hour later the budget is back')
  assert.equal(planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 4, now: 0, memory: FRESH_MEMORY }, P).moves, [])
  const recent = new Map([...all(c)].map((id) => [id, 1000]))
  const cool = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: recent, inFlight: 0, now: 1000 + P.cooldownMs - 1, memory: FRESH_MEMORY }, P)
  assert.equal(cool.moves, [])
  assert.match(cool.why, /no allowed move/)
  // c and d hot by fresh gossip: every move goes to b
  const hot = { ...c, nodes: c.nodes.map((n) => n.id === 'c' || n.id === 'd' ? { ...n, load: { cpuPct: 95, memPct: 10, ageMs: 100 } } : n) }
  const s = planRebalanceStep({ cluster: hot, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY }, P)
  assert.ok(s.moves.length > 0 && s.moves.every((m) => m.to === 'b'), JSON.stringify(s.moves))
  // a stale report does not count
  const stale = { ...c, nodes: c.nodes.map((n) => n.id === 'd' ? { ...n, load: { cpuPct: 95, memPct: 10, ageMs: 60_000 } } : n) }
  assert.ok(planRebalanceStep({ cluster: stale, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY }, P).moves.some((m) => m.to === 'd'))
  // only movable VMs move
  const some = new Set(['v0'])
  assert.equal(planRebalanceStep({ cluster: c, movable: some, lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY }, P).moves.map((m) => m.vmId), ['v0'])
})

test('join mode: a node noted as joined is filled, from the others, until no move into it gains; an empty node not noted is left alone', () => {
  const c = skewed() // a: 6 VMs, b: 2, c and d empty; d has just joined
  let cur = c
  let memory: RebalanceMemory = FRESH_MEMORY
  let noted: string[] = ['d']
  const moved = new Map<string, number>()
  let steps = 0
  for (let round = 0; round < 20; round++) {
    const s = planRebalanceStep({ cluster: cur, movable: all(c), lastMoved: moved, inFlight: 0, now: round * 60_000, memory, mode: 'join', noted }, P)
    noted = []
    assert.ok(s.moves.every((m) => m.to === 'd' && m.from !== 'd'), `only into the joined node: ${JSON.stringify(s.moves)}`)
    assert.ok(s.moves.length <= P.maxConcurrent)
    for (const m of s.moves) { assert.not.ok(moved.has(m.vmId), `${m.vmId} moved twice`); moved.set(m.vmId, round * 60_000); cur = applyMove(cur, m.vmId, m.from, m.to) }
    if (s.moves.length > 0) { steps++; assert.match(s.why, /^filling a new node: imbalance/) }
    memory = s.memory
    if (memory.filling.length === 0) break
  }
  assert.ok(steps > 0, 'it moved')
  assert.equal(memory.filling, [], 'filled: an ordinary node again')
  const vmsOn = (id: string): number => cur.nodes.find((n) => n.id === id)!.vmCount
  assert.equal([vmsOn('c'), vmsOn('d') > 0, vmsOn('a') < 6], [0, true, true], 'c (empty but not new) got nothing; d was filled from a')
  assert.ok(imbalance(cur.nodes) < imbalance(c.nodes))
  // the filled cluster, its news heard: nothing more (no oscillation), even were d noted again
  const again = planRebalanceStep({ cluster: cur, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory, mode: 'join', noted: ['d'] }, P)
  assert.equal(again.moves, [], 'd holds VMs now: not a new node')
  // c was never noted: join mode leaves it, skew mode would use it
  const quiet = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY, mode: 'join' }, P)
  assert.equal(quiet.moves, [])
  assert.match(quiet.why, /no new node to fill/)
})

test('join mode: a node joining a barely used cluster is not filled; the budget keeps a node being filled', () => {
  let light: PlacementCluster = { nodes: [node('a'), node('b')], placed: [] }
  light = applyPlacement(light, vm('v0', { resources: { cpu: 1, memoryMiB: 1024, diskGiB: 10 } }), 'a')
  light = { ...light, nodes: [...light.nodes, node('new')] }
  const s = planRebalanceStep({ cluster: light, movable: all(light), lastMoved: new Map(), inFlight: 0, now: 0, memory: FRESH_MEMORY, mode: 'join', noted: ['new'] }, P)
  assert.equal([s.moves, s.memory.filling], [[], []], 'the others\' mean fill is below joinLoadedAbove')
  const c = skewed()
  const busy = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: new Map(), inFlight: P.maxConcurrent, now: 0, memory: FRESH_MEMORY, mode: 'join', noted: ['d'] }, P)
  assert.equal([busy.moves, busy.memory.filling], [[], ['d']], 'no budget now: d stays to be filled')
  assert.match(busy.why, /moves in flight/)
})

const arbCluster = fc.tuple(arbNodes(2, 8), arbRequests(1, 30)).map(([nodes, reqs]) => placeBatch(emptyCluster(nodes), reqs, { strategy: 'binpack' }).cluster)

test('property: a step never makes the imbalance worse, respects filters and every limit', () => {
  fc.assert(fc.property(arbCluster, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 12 }), fc.boolean(), (c, inFlight, spent, active) => {
    const now = 10 * HOUR_MS
    const cooling = new Map(c.placed.filter((_, i) => i % 3 === 0).map((p) => [p.request.vmId, now - 1]))
    const memory = { active, started: Array.from({ length: spent }, () => now - 1), filling: [] }
    const s = planRebalanceStep({ cluster: c, movable: all(c), lastMoved: cooling, inFlight, now, memory }, { ...P, startAbove: 0.001, stopBelow: 0.0005 })
    assert.ok(s.after <= s.before + 1e-12, `worse: ${s.before} -> ${s.after}`)
    assert.ok(s.moves.length <= Math.max(0, Math.min(P.maxConcurrent - inFlight, P.maxPerHour - spent)), `${s.moves.length} moves with ${inFlight} in flight and ${spent} this hour`)
    assert.ok(s.moves.every((m) => !cooling.has(m.vmId)), 'a cooling VM moved')
    let cur = c
    for (const m of s.moves) {
      // every target passes every filter with the VM released from its source, at its turn
      const req = cur.placed.find((p) => p.request.vmId === m.vmId)!.request
      const target = new Placer(releasePlacement(cur, m.vmId)).nodes.find((n) => n.id === m.to)!
      assert.ok(feasible(target, req), `${m.vmId} does not fit on ${m.to}`)
      cur = applyMove(cur, m.vmId, m.from, m.to)
      assert.equal(checkClusterInvariants(cur), [])
    }
    assert.ok(Math.abs(imbalance(cur.nodes) - s.after) < 1e-9)
  }), { numRuns: 200 })
})

test('property: repeated steps on a static cluster converge, and no VM moves twice (the cooldown outlasts the run), in either mode', () => {
  fc.assert(fc.property(arbCluster, fc.boolean(), (c0, join) => {
    // join: the emptiest node is the one that just joined
    const joined = [...c0.nodes].sort((x, y) => x.vmCount - y.vmCount)[0].id
    let c = c0
    let memory: RebalanceMemory = FRESH_MEMORY
    const lastMoved = new Map<string, number>()
    const policy: RebalancePolicy = { ...P, startAbove: 0.001, stopBelow: 0.0005 }
    let quietRounds = 0
    const ROUNDS = 40
    for (let round = 0; round < ROUNDS; round++) {
      const now = round * 60_000 // a step a minute: the whole run is within one cooldown
      const s = planRebalanceStep({ cluster: c, movable: all(c), lastMoved, inFlight: 0, now, memory, mode: join ? 'join' : 'skew', noted: round === 0 ? [joined] : [] }, policy)
      for (const m of s.moves) {
        assert.not.ok(lastMoved.has(m.vmId), `${m.vmId} moved twice`)
        if (join) assert.is(m.to, joined, 'join mode moves only into the joined node')
        lastMoved.set(m.vmId, now)
        c = applyMove(c, m.vmId, m.from, m.to)
      }
      memory = s.memory
      quietRounds = s.moves.length === 0 ? quietRounds + 1 : 0
    }
    assert.ok(quietRounds > 0, 'still moving after 40 rounds')
    assert.ok(imbalance(c.nodes) <= imbalance(c0.nodes) + 1e-12)
  }), { numRuns: 100 })
})

test.run()
