import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkAntiAffinity, checkCapability, checkConstraints, checkCpu, checkDisk, checkMaxVms, checkMemory, checkState, firstRejection, constraintHolds } from '../../placement/filters.ts'
import { node, vm } from './fixtures.ts'

test('cpu filter: capacity × overcommit, with the numbers in the reason', () => {
  const n = node('a', { capacity: { cpu: 8, memoryMiB: 65536, diskGiB: 100 }, overcommit: { cpu: 2, memory: 1, disk: 1 }, reserved: { cpu: 14, memoryMiB: 0, diskGiB: 0 } })
  assert.is(checkCpu(n, vm('v', { resources: { cpu: 2, memoryMiB: 1, diskGiB: 1 } })), null)
  const r = checkCpu(n, vm('v', { resources: { cpu: 3, memoryMiB: 1, diskGiB: 1 } }))
  assert.ok(r !== null && r.startsWith('cpu:') && r.includes('14') && r.includes('3') && r.includes('× 2'), String(r))
})

test('memory filter: capacity × overcommit', () => {
  const n = node('a', { capacity: { cpu: 8, memoryMiB: 8192, diskGiB: 100 }, overcommit: { cpu: 1, memory: 1.5, disk: 1 }, reserved: { cpu: 0, memoryMiB: 8192, diskGiB: 0 } })
  assert.is(checkMemory(n, vm('v', { resources: { cpu: 1, memoryMiB: 4096, diskGiB: 1 } })), null)
  const r = checkMemory(n, vm('v', { resources: { cpu: 1, memoryMiB: 4097, diskGiB: 1 } }))
  assert.ok(r !== null && r.startsWith('memory:') && r.includes('8192 MiB reserved') && r.includes('4097'), String(r))
})

test('disk filter: capacity × overcommit', () => {
  const n = node('a', { capacity: { cpu: 8, memoryMiB: 8192, diskGiB: 100 }, reserved: { cpu: 0, memoryMiB: 0, diskGiB: 90 } })
  assert.is(checkDisk(n, vm('v', { resources: { cpu: 1, memoryMiB: 1, diskGiB: 10 } })), null)
  const r = checkDisk(n, vm('v', { resources: { cpu: 1, memoryMiB: 1, diskGiB: 11 } }))
  assert.ok(r !== null && r.startsWith('disk:') && r.includes('90 GiB reserved') && r.includes('11 GiB'), String(r))
})

test('state filter: only ready nodes', () => {
  assert.is(checkState(node('a'), vm('v')), null)
  for (const state of ['cordoned', 'draining', 'down'] as const) {
    const r = checkState(node('a', { state }), vm('v'))
    assert.ok(r !== null && r.includes(state), String(r))
  }
})

test('constraint filter: ==, !=, in, not in, exists, not exists', () => {
  const labels = { arch: 'x86_64', zone: 'a' }
  assert.ok(constraintHolds(labels, { label: 'arch', op: '==', value: 'x86_64' }))
  assert.not.ok(constraintHolds(labels, { label: 'arch', op: '==', value: 'aarch64' }))
  assert.ok(constraintHolds(labels, { label: 'arch', op: '!=', value: 'aarch64' }))
  assert.ok(constraintHolds(labels, { label: 'missing', op: '!=', value: 'x' }))
  assert.not.ok(constraintHolds(labels, { label: 'arch', op: '!=', value: 'x86_64' }))
  assert.ok(constraintHolds(labels, { label: 'zone', op: 'in', values: ['a', 'b'] }))
  assert.not.ok(constraintHolds(labels, { label: 'zone', op: 'in', values: ['b'] }))
  assert.not.ok(constraintHolds(labels, { label: 'missing', op: 'in', values: ['a'] }))
  assert.ok(constraintHolds(labels, { label: 'zone', op: 'not in', values: ['b'] }))
  assert.not.ok(constraintHolds(labels, { label: 'zone', op: 'not in', values: ['a'] }))
  assert.ok(constraintHolds(labels, { label: 'zone', op: 'exists' }))
  assert.not.ok(constraintHolds(labels, { label: 'gpu', op: 'exists' }))
  assert.ok(constraintHolds(labels, { label: 'gpu', op: 'not exists' }))
  assert.not.ok(constraintHolds(labels, { label: 'toString', op: 'exists' }), 'prototype keys are not labels')
  const n = node('a', { labels })
  assert.is(checkConstraints(n, vm('v', { constraints: [{ label: 'arch', op: '==', value: 'x86_64' }] })), null)
  const r = checkConstraints(n, vm('v', { constraints: [{ label: 'arch', op: '==', value: 'x86_64' }, { label: 'zone', op: 'in', values: ['b', 'c'] }] }))
  assert.ok(r !== null && r.includes('zone in [b, c]') && r.includes('zone=a'), String(r))
})

test('capability filter: every required hypervisor capability present', () => {
  const n = node('a', { capabilities: ['kvm', 'qemu'] })
  assert.is(checkCapability(n, vm('v', { requires: ['kvm'] })), null)
  const r = checkCapability(n, vm('v', { requires: ['kvm', 'nix'] }))
  assert.ok(r !== null && r.includes('nix') && r.startsWith('capability:'), String(r))
})

test('anti-affinity filter: no two VMs of a group on one node', () => {
  const n = node('a', { groups: { db: 1 } })
  assert.is(checkAntiAffinity(n, vm('v', { antiAffinityGroup: 'web' })), null)
  assert.is(checkAntiAffinity(n, vm('v', { antiAffinityGroup: null })), null)
  const r = checkAntiAffinity(n, vm('v', { antiAffinityGroup: 'db' }))
  assert.ok(r !== null && r.includes('db') && r.includes('1 VM'), String(r))
})

test('max-vms filter: per-node VM limit', () => {
  assert.is(checkMaxVms(node('a', { maxVms: null, vmCount: 1000 }), vm('v')), null)
  assert.is(checkMaxVms(node('a', { maxVms: 3, vmCount: 2 }), vm('v')), null)
  const r = checkMaxVms(node('a', { maxVms: 3, vmCount: 3 }), vm('v'))
  assert.ok(r !== null && r.includes('3 of at most 3'), String(r))
})

test('first rejection follows the pipeline order', () => {
  const n = node('a', { state: 'down', labels: {}, reserved: { cpu: 100, memoryMiB: 0, diskGiB: 0 } })
  assert.is(firstRejection(n, vm('v', { constraints: [{ label: 'gpu', op: 'exists' }] }))?.filter, 'state')
  assert.is(firstRejection({ ...n, state: 'ready' }, vm('v', { constraints: [{ label: 'gpu', op: 'exists' }] }))?.filter, 'constraint')
  assert.is(firstRejection({ ...n, state: 'ready' }, vm('v'))?.filter, 'cpu')
  assert.is(firstRejection(node('a'), vm('v')), null)
})

test.run()
