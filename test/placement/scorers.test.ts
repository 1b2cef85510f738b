import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { affinityScore, binpackScore, domainScore, fill, pressureScore, snapshotScore, spreadScore, warmScore } from '../../placement/scorers.ts'
import { DEFAULT_CONFIG, resolveConfig } from '../../placement/config.ts'
import { applyPlacement, placeBatch, placeOne } from '../../placement/place.ts'
import { clusterFromModel } from '../../placement/from-model.ts'
import { formatScores } from '../../placement/format.ts'
import { Placer } from '../../placement/placer.ts'
import { node, vm } from './fixtures.ts'

const half = node('half', { reserved: { cpu: 8, memoryMiB: 32768, diskGiB: 500 }, vmCount: 4 })
const empty = node('empty')

test('bin-pack scorer: fuller node scores higher, a busy node beats an empty one, and placement picks it', () => {
  assert.is(binpackScore(half), 0.75)
  assert.is(binpackScore(node('one', { vmCount: 1 })), 0.5)
  assert.is(binpackScore(empty), 0)
  assert.is(placeOne({ nodes: [empty, half], placed: [] }, vm('v'), { strategy: 'binpack' }).nodeId, 'half')
})

test('spread scorer: emptier node scores higher, and placement picks it', () => {
  assert.is(spreadScore(half), 0.5)
  assert.is(spreadScore(empty), 1)
  assert.is(placeOne({ nodes: [half, empty], placed: [] }, vm('v'), { strategy: 'spread' }).nodeId, 'empty')
})

test('fill counts overcommit: 8 of 16 cpus × 2 is a quarter', () => {
  const n = node('a', { overcommit: { cpu: 2, memory: 1, disk: 1 }, reserved: { cpu: 8, memoryMiB: 0, diskGiB: 0 } })
  assert.is(fill(n), 0.25 / 3)
})

test('soft affinity and anti-affinity scorer', () => {
  const a = node('a', { labels: { zone: 'a' } })
  const b = node('b', { labels: { zone: 'b' } })
  const want = vm('v', { affinity: [{ label: 'zone', value: 'b', weight: 3 }, { label: 'zone', value: 'a', weight: -1 }] })
  assert.is(affinityScore(b, want), 0.75)
  assert.is(affinityScore(a, want), -0.25)
  assert.is(affinityScore(a, vm('v')), 0)
  // both empty: bin-pack ties, affinity decides, against the id tie-break
  assert.is(placeOne({ nodes: [a, b], placed: [] }, want).nodeId, 'b')
  assert.is(placeOne({ nodes: [a, b], placed: [] }, vm('v', { affinity: [{ label: 'zone', value: 'a', weight: -1 }] })).nodeId, 'b')
})

test('failure-domain spread scorer over a label', () => {
  assert.is(domainScore(0, true), 1)
  assert.is(domainScore(3, true), 0.25)
  assert.is(domainScore(0, false), 0)
  const a1 = node('a1', { labels: { zone: 'a' } })
  const a2 = node('a2', { labels: { zone: 'a' } })
  const b1 = node('b1', { labels: { zone: 'b' } })
  const placer = new Placer({ nodes: [a1, a2, b1], placed: [] }, { weights: { domain: 2 } })
  const reqs = [0, 1, 2, 3].map((i) => vm(`v${i}`, { spreadLabel: 'zone', antiAffinityGroup: 'web', resources: { cpu: 1, memoryMiB: 1024, diskGiB: 1 } }))
  const zones = reqs.map((r) => placer.placeAndCommit(r).nodeId)
  assert.equal(zones.slice(0, 3), ['a1', 'b1', 'a2'], 'alternates zones before doubling up')
  assert.is(zones[3], null, 'anti-affinity leaves no 4th node')
})

test('live pressure scorer: hot scores lower, stale ignored', () => {
  const cfg = DEFAULT_CONFIG
  assert.is(pressureScore(null, cfg), 0)
  assert.is(pressureScore({ cpuPct: 50, memPct: 70, ageMs: 0 }, cfg), 0)
  assert.is(pressureScore({ cpuPct: 90, memPct: 10, ageMs: 0 }, cfg), -0.5)
  assert.is(pressureScore({ cpuPct: 10, memPct: 100, ageMs: 0 }, cfg), -1)
  assert.is(pressureScore({ cpuPct: 100, memPct: 100, ageMs: cfg.staleMs + 1 }, cfg), 0)
  // the hot node has the most free-looking reservations in spread mode, yet loses
  const hot = node('hot', { load: { cpuPct: 100, memPct: 50, ageMs: 100 } })
  const cool = node('cool', { reserved: { cpu: 4, memoryMiB: 16384, diskGiB: 250 }, load: { cpuPct: 20, memPct: 20, ageMs: 100 } })
  assert.is(placeOne({ nodes: [hot, cool], placed: [] }, vm('v'), { strategy: 'spread' }).nodeId, 'cool')
  const stale = node('hot', { load: { cpuPct: 100, memPct: 50, ageMs: 60_000 } })
  assert.is(placeOne({ nodes: [stale, cool], placed: [] }, vm('v'), { strategy: 'spread' }).nodeId, 'hot')
})

test('warm scorer: 1 on a node whose fresh report shows a paused guest of the VM\'s pool, table', () => {
  const cfg = DEFAULT_CONFIG
  const fresh = { cpuPct: 10, memPct: 10, ageMs: 100 }
  const rows: Array<[string, Partial<Parameters<typeof node>[1]>, string | undefined, number]> = [
    ['a paused guest of its pool', { load: fresh, warm: { fn: 2 } }, 'fn', 1],
    ['the last one', { load: fresh, warm: { fn: 1 } }, 'fn', 1],
    ['none left', { load: fresh, warm: { fn: 0 } }, 'fn', 0],
    ['guests of another pool only', { load: fresh, warm: { big: 2 } }, 'fn', 0],
    ['no pool serves the VM', { load: fresh, warm: { fn: 2 } }, undefined, 0],
    ['no report', { load: null, warm: { fn: 2 } }, 'fn', 0],
    ['a stale report: its guests may be long claimed', { load: { ...fresh, ageMs: cfg.staleMs + 1 }, warm: { fn: 2 } }, 'fn', 0],
    ['a report without pools', { load: fresh }, 'fn', 0]
  ]
  for (const [what, over, pool, want] of rows) assert.is(warmScore(node('n', over), vm('v', pool === undefined ? {} : { warmPool: pool }), cfg), want, what)
})

test('warm scorer in the pipeline: prefers the node holding a warm guest over packing, each placement takes one', () => {
  const load = { cpuPct: 10, memPct: 10, ageMs: 100 }
  const warm = node('w', { load, warm: { fn: 1 } })
  const nodes = [half, warm, empty]
  const req = (id: string): ReturnType<typeof vm> => vm(id, { warmPool: 'fn', resources: { cpu: 1, memoryMiB: 96, diskGiB: 0 } })
  // an idle node with a warm guest ties the best-packed busy node (fit 0 + warm 1 vs 0.5 + 0.5 × fill < 1)
  const d = placeOne({ nodes, placed: [] }, req('a'), {}, { explain: true })
  assert.is(d.nodeId, 'w')
  assert.equal(d.scores, { fit: 0, affinity: 0, domain: 0, pressure: 0, warm: 1, snapshot: 0 })
  assert.match(formatScores(d.scores!), /warm 1, snapshot 0$/)
  assert.equal(d.nodes?.map((v) => [v.nodeId, v.feasible ? v.scores.warm : null]), [['empty', 0], ['half', 0], ['w', 1]], 'vm explain shows the warm component per node')
  // a VM no pool serves packs as ever
  assert.is(placeOne({ nodes, placed: [] }, vm('cold', { resources: { cpu: 1, memoryMiB: 96, diskGiB: 0 } })).nodeId, 'half')
  // one guest: the first placement takes it, the second packs (the busy node is the fuller one)
  const batch = placeBatch({ nodes, placed: [] }, [req('a'), req('b')])
  assert.equal(batch.decisions.map((x) => [x.nodeId, x.scores?.warm]), [['w', 1], ['half', 0]])
  assert.equal(batch.cluster.nodes.find((n) => n.id === 'w')?.warm, { fn: 0 })
  assert.equal(warm.warm, { fn: 1 }, 'the input is not mutated')
  // one by one gives the same: applyPlacement takes the guest too
  const after = applyPlacement({ nodes, placed: [] }, req('a'), 'w')
  assert.is(placeOne(after, req('b')).nodeId, 'half')
  // a weight of 0 turns it off
  assert.is(placeOne({ nodes, placed: [] }, req('a'), { weights: { warm: 0 } }).nodeId, 'half')
})

test('snapshot scorer: 1 on a node holding the clone\'s snapshot state, 0 elsewhere and for other VMs, table', () => {
  const rows: Array<[string, Parameters<typeof vm>[1], number]> = [
    ['the node took the snapshot', { snapshot: { cachedOn: ['n'], pinnedTo: null } }, 1],
    ['it last restored it', { snapshot: { cachedOn: ['a', 'n'], pinnedTo: null } }, 1],
    ['another node holds it', { snapshot: { cachedOn: ['a'], pinnedTo: null } }, 0],
    ['not a clone (or started already)', {}, 0]
  ]
  for (const [what, over, want] of rows) assert.is(snapshotScore(node('n'), vm('v', over)), want, what)
})

test('snapshot scorer in the pipeline: among nodes that pack alike the one holding the state wins, shown in explain; a local file pins', () => {
  const busy = (id: string): ReturnType<typeof node> => node(id, { reserved: { cpu: 8, memoryMiB: 32768, diskGiB: 500 }, vmCount: 4 })
  const nodes = [busy('a'), busy('b'), busy('c'), empty]
  const clone = vm('h', { snapshot: { cachedOn: ['b'], pinnedTo: null } })
  const d = placeOne({ nodes, placed: [] }, clone, {}, { explain: true })
  assert.is(d.nodeId, 'b')
  assert.equal(d.scores, { fit: 0.75, affinity: 0, domain: 0, pressure: 0, warm: 0, snapshot: 1 })
  assert.match(formatScores(d.scores!), /snapshot 1$/)
  assert.equal(d.nodes?.map((v) => [v.nodeId, v.feasible ? v.scores.snapshot : null]), [['a', 0], ['b', 1], ['c', 0], ['empty', 0]], 'vm explain shows the snapshot component per node')
  // the fast path agrees with the full scan
  assert.is(placeOne({ nodes, placed: [] }, clone).nodeId, 'b')
  // it wins over a fuller busy node too, but at weight 0.5 it does not open an empty node
  const fuller = node('f', { reserved: { cpu: 15, memoryMiB: 60000, diskGiB: 900 }, vmCount: 9 })
  assert.is(placeOne({ nodes: [...nodes, fuller], placed: [] }, clone).nodeId, 'b')
  assert.is(placeOne({ nodes, placed: [] }, vm('h', { snapshot: { cachedOn: ['empty'], pinnedTo: null } })).nodeId, 'a')
  // a weight of 0 turns it off (the tie then goes to the lowest id)
  assert.is(placeOne({ nodes, placed: [] }, clone, { weights: { snapshot: 0 } }).nodeId, 'a')
  // a local-file snapshot: only its node, said by the snapshot filter
  const pinned = vm('h', { snapshot: { cachedOn: ['c'], pinnedTo: 'c' } })
  const p = placeOne({ nodes: [...nodes, fuller], placed: [] }, pinned, {}, { explain: true })
  assert.is(p.nodeId, 'c')
  const other = p.nodes?.find((v) => v.nodeId === 'f')
  assert.ok(other != null && !other.feasible && other.filter === 'snapshot' && /local file on node c/.test(other.reason), JSON.stringify(other))
  assert.is(placeOne({ nodes: [busy('a')], placed: [] }, pinned).nodeId, null, 'its node gone: nowhere')
})

test('pool guests are reclaimable: the room they hold is not reserved, a VM is placed into it', () => {
  // a 1 GiB node whose report shows 10 pool guests of 96 MiB: filters see only what VMs reserve
  const n = { id: 'n', name: 'n', addrs: [], labels: {}, capacity: { cpu: 2, memoryMiB: 1024, diskGiB: 10 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, capabilities: ['qemu' as const], maxVms: null, state: 'ready' as const, liveness: 'up' as const, registeredAt: 0, updatedAt: 0 } as unknown as Parameters<typeof clusterFromModel>[0][number]
  const c = clusterFromModel([n], [], new Map([['n', { cpuPct: 40, memPct: 60, ageMs: 0, warm: { fn: 10 } }]]))
  assert.equal(c.nodes[0].reserved, { cpu: 0, memoryMiB: 0, diskGiB: 0 })
  assert.equal(c.nodes[0].warm, { fn: 10 })
  const d = placeOne(c, vm('big', { resources: { cpu: 2, memoryMiB: 1024, diskGiB: 0 } }))
  assert.is(d.nodeId, 'n', 'the whole node, pool guests or not: its host stops them to make room')
})

test('weights are configurable and validated', () => {
  const a = node('a', { labels: { zone: 'a' }, reserved: { cpu: 8, memoryMiB: 32768, diskGiB: 500 }, vmCount: 3 })
  const b = node('b', { labels: { zone: 'b' } })
  const req = vm('v', { affinity: [{ label: 'zone', value: 'b', weight: 1 }] })
  assert.is(placeOne({ nodes: [a, b], placed: [] }, req, { weights: { affinity: 0.1 } }).nodeId, 'a')
  assert.is(placeOne({ nodes: [a, b], placed: [] }, req, { weights: { affinity: 1 } }).nodeId, 'b')
  assert.throws(() => resolveConfig({ weights: { fit: -1 } }), (e: Error & { kind?: string }) => e.kind === 'InvalidSpec')
})

test.run()
