import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { placeOne, placeBatch } from '../../placement/place.ts'
import { Placer } from '../../placement/placer.ts'
import { formatDecision } from '../../placement/format.ts'
import { node, vm } from './fixtures.ts'

test('explain: one verdict per node, rejected ones name the filter, feasible ones carry every score', () => {
  const nodes = [
    node('a', { state: 'down' }),
    node('b', { labels: { zone: 'x' } }),
    node('c', { labels: { zone: 'y' }, reserved: { cpu: 15, memoryMiB: 0, diskGiB: 0 }, vmCount: 1 }),
    node('d', { labels: { zone: 'y' }, reserved: { cpu: 4, memoryMiB: 16384, diskGiB: 250 }, vmCount: 1, load: { cpuPct: 90, memPct: 10, ageMs: 0 } })
  ]
  const d = placeOne({ nodes, placed: [] }, vm('v', { affinity: [{ label: 'zone', value: 'y', weight: 1 }] }), {}, { explain: true })
  assert.is(d.nodeId, 'd')
  assert.equal(d.nodes?.map((n) => n.nodeId), ['a', 'b', 'c', 'd'])
  assert.equal(d.rejections, { state: 1, cpu: 1 })
  const [a, b, c, dd] = d.nodes ?? []
  assert.ok(!a.feasible && a.filter === 'state' && a.reason.includes('down'))
  assert.ok(!c.feasible && c.filter === 'cpu' && c.reason.includes('15 reserved + 2 requested'))
  assert.ok(b.feasible && b.scores.fit === 0 && b.scores.affinity === 0 && b.total === 0)
  assert.ok(dd.feasible && dd.scores.affinity === 1 && dd.scores.pressure === -0.5 && dd.scores.fit === 0.5 + 0.5 * 0.25)
  assert.is(dd.total, d.total)
})

test('fast path carries the chosen node scores but no per-node verdicts', () => {
  const d = placeOne({ nodes: [node('a'), node('b')], placed: [] }, vm('v'))
  assert.is(d.nodeId, 'a', 'ties go to the smaller node id')
  assert.is(d.nodes, null)
  assert.is(d.rejections, null)
  assert.equal(d.scores, { fit: 0, affinity: 0, domain: 0, pressure: 0, warm: 0, snapshot: 0 })
})

test('failure summary on the fast path counts the first failing filter per node', () => {
  const d = placeOne({ nodes: [node('a', { state: 'cordoned' }), node('b', { capabilities: ['qemu'] })], placed: [] }, vm('v', { requires: ['kvm'] }))
  assert.is(d.nodeId, null)
  assert.equal(d.rejections, { state: 1, capability: 1 })
})

test('batch counts each placement against the next (binpack fills one node, then the next)', () => {
  const small = node('a', { capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100 } })
  const r = placeBatch({ nodes: [node('b', { capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100 } }), small], placed: [] },
    [1, 2, 3, 4, 5].map((i) => vm(`v${i}`, { resources: { cpu: 1, memoryMiB: 2048, diskGiB: 1 } })))
  assert.equal(r.decisions.map((d) => d.nodeId), ['a', 'a', 'a', 'a', 'b'])
  assert.is(r.cluster.nodes.find((n) => n.id === 'a')?.reserved.memoryMiB, 8192)
})

test('placer input is not mutated', () => {
  const nodes = [node('a')]
  const p = new Placer({ nodes, placed: [] })
  p.placeAndCommit(vm('v', { antiAffinityGroup: 'g' }))
  assert.equal(nodes[0].reserved, { cpu: 0, memoryMiB: 0, diskGiB: 0 })
  assert.equal(nodes[0].groups, {})
})

test('formatDecision: outcome, rejection summary, feasible nodes best first, then rejected ones', () => {
  const d = placeOne({ nodes: [node('a', { state: 'down' }), node('b'), node('c', { vmCount: 1, reserved: { cpu: 1, memoryMiB: 1, diskGiB: 1 } })], placed: [] }, vm('v'), {}, { explain: true })
  const lines = formatDecision(d)
  assert.match(lines[0], /^vm v -> node c, score 0\.5/)
  assert.is(lines[1], 'rejected: 1 by state')
  assert.match(lines[2], /^ {2}c: score/)
  assert.match(lines[3], /^ {2}b: score 0 /)
  assert.match(lines[4], /^ {2}a: rejected by state: state: node is down/)
  assert.equal(formatDecision(placeOne({ nodes: [], placed: [] }, vm('x'))), ['vm x: no node passes every filter'])
})

test.run()
