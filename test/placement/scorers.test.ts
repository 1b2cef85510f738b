import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { affinityScore, binpackScore, domainScore, fill, pressureScore, spreadScore } from '../../placement/scorers.ts'
import { DEFAULT_CONFIG, resolveConfig } from '../../placement/config.ts'
import { placeOne } from '../../placement/place.ts'
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

test('weights are configurable and validated', () => {
  const a = node('a', { labels: { zone: 'a' }, reserved: { cpu: 8, memoryMiB: 32768, diskGiB: 500 }, vmCount: 3 })
  const b = node('b', { labels: { zone: 'b' } })
  const req = vm('v', { affinity: [{ label: 'zone', value: 'b', weight: 1 }] })
  assert.is(placeOne({ nodes: [a, b], placed: [] }, req, { weights: { affinity: 0.1 } }).nodeId, 'a')
  assert.is(placeOne({ nodes: [a, b], placed: [] }, req, { weights: { affinity: 1 } }).nodeId, 'b')
  assert.throws(() => resolveConfig({ weights: { fit: -1 } }), (e: Error & { kind?: string }) => e.kind === 'InvalidSpec')
})

test.run()
