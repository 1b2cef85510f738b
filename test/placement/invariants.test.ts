import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { NodeRecord, VmRecord, VmSpec } from '../../protocols/model.ts'
import { checkPlacementInvariants } from '../../placement/invariants.ts'
import { clusterFromModel } from '../../placement/from-model.ts'
import { placeOne } from '../../placement/place.ts'

function nodeRec (id: string, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id, name: id, addrs: [], labels: { zone: 'a' }, capacity: { cpu: 4, memoryMiB: 8192, diskGiB: 100 },
    overcommit: { cpu: 2, memory: 1, disk: 1 }, capabilities: ['kvm', 'qemu'], maxVms: null, state: 'ready', registeredAt: 0, updatedAt: 0, ...over
  }
}

function vmRec (id: string, node: string | null, spec: Partial<VmSpec> = {}): VmRecord {
  return {
    id,
    spec: {
      name: id, vcpus: 2, memoryMiB: 2048, diskGiB: 10, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [], kernelParams: [],
      constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 50, restartPolicy: 'always', requires: [], ...spec
    },
    generation: 1, desired: 'running', assignedNode: node, status: { phase: 'running', reason: '', node, at: 0 }, createdAt: 0, updatedAt: 0
  }
}

test('clean state has no violations; overcommit is allowed up to the ratio', () => {
  const vms = [1, 2, 3, 4].map((i) => vmRec(`v${i}`, 'n1')) // 8 vcpus on 4 × 2
  assert.equal(checkPlacementInvariants([nodeRec('n1')], vms), [])
})

test('reports over capacity × overcommit', () => {
  const vms = [1, 2, 3, 4, 5].map((i) => vmRec(`v${i}`, 'n1', { memoryMiB: 1024 }))
  const v = checkPlacementInvariants([nodeRec('n1')], vms)
  assert.is(v.length, 1)
  assert.match(v[0], /node n1: cpu 10 reserved > 4 × 2/)
})

test('reports constraint, capability, anti-affinity, max-vms and missing-node violations', () => {
  const vms = [
    vmRec('c', 'n1', { constraints: [{ label: 'zone', op: '==', value: 'b' }], memoryMiB: 1 }),
    vmRec('k', 'n1', { requires: ['nix'], memoryMiB: 1, vcpus: 0 }),
    vmRec('g1', 'n1', { antiAffinityGroup: 'db', memoryMiB: 1, vcpus: 0 }),
    vmRec('g2', 'n1', { antiAffinityGroup: 'db', memoryMiB: 1, vcpus: 0 }),
    vmRec('lost', 'gone'),
    vmRec('queued', null)
  ]
  const v = checkPlacementInvariants([nodeRec('n1', { maxVms: 3 })], vms)
  assert.equal(v.length, 5, v.join('\n'))
  assert.ok(v.some((s) => s.includes('constraint zone == b violated')))
  assert.ok(v.some((s) => s.includes('requires nix')))
  assert.ok(v.some((s) => s.includes('anti-affinity group db')))
  assert.ok(v.some((s) => s.includes('assigned to missing node gone')))
  assert.ok(v.some((s) => s.includes('4 VMs > max 3')))
})

test('clusterFromModel sums reservations and carries load hints', () => {
  const nodes = [nodeRec('n1'), nodeRec('n2', { state: 'draining' })]
  const vms = [vmRec('a', 'n1', { antiAffinityGroup: 'web' }), vmRec('b', 'n1'), vmRec('c', null), vmRec('d', 'missing')]
  const c = clusterFromModel(nodes, vms, new Map([['n1', { cpuPct: 10, memPct: 20, ageMs: 5 }]]))
  const n1 = c.nodes.find((n) => n.id === 'n1')
  assert.equal(n1?.reserved, { cpu: 4, memoryMiB: 4096, diskGiB: 20 })
  assert.is(n1?.vmCount, 2)
  assert.equal(n1?.groups, { web: 1 })
  assert.equal(n1?.load, { cpuPct: 10, memPct: 20, ageMs: 5 })
  assert.is(c.nodes.find((n) => n.id === 'n2')?.load, null)
  assert.equal(c.placed.map((p) => p.request.vmId), ['a', 'b'])
  // a web VM cannot join n1 (anti-affinity) and n2 is draining
  const d = placeOne(c, { ...c.placed[0].request, vmId: 'w2' }, {}, { explain: true })
  assert.is(d.nodeId, null)
  assert.equal(d.rejections, { 'anti-affinity': 1, state: 1 })
})

test.run()
