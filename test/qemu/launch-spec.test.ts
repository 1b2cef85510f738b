import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { VmRecord, VmSpec } from '../../protocols/model.ts'
import { launchSpecFromVm } from '../../node/qemu/launch-spec.ts'
import { QemuError } from '../../node/qemu/errors.ts'

const spec: VmSpec = {
  name: 'web', vcpus: 2, memoryMiB: 128, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [],
  kernelParams: ['loglevel=3'], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0,
  restartPolicy: 'always', requires: []
}
const vm = (s: Partial<VmSpec> = {}): VmRecord => ({
  id: 'vm-7', spec: { ...spec, ...s }, generation: 5, desired: 'running', assignedNode: 'n1',
  status: { phase: 'scheduled', reason: '', node: 'n1', at: 0 }, createdAt: 0, updatedAt: 0
})
const tinyGuest = { kernel: '/boot/vmlinuz', initrd: '/g/tiny.cpio.gz', kernelVersion: '6.1' }

function kind (fn: () => unknown): string {
  try { fn() } catch (e) { assert.instance(e, QemuError); return (e as QemuError).kind }
  return 'none'
}

test('tiny image: marker readiness, hostname/ip/gw/host/disk on the kernel command line, then the spec params', () => {
  const s = launchSpecFromVm(vm(), { tinyGuest, ip: '10.0.0.5/24', gw: '10.0.0.1', hostName: 'node2', nics: [{ tap: 't0', mac: '02:00:00:00:00:07' }], drives: [{ kind: 'file', path: '/d.img' }] })
  assert.equal(s, {
    vmId: 'vm-7', generation: 5, vcpus: 2, memoryMiB: 128, readiness: 'marker',
    drives: [{ kind: 'file', path: '/d.img' }], nics: [{ tap: 't0', mac: '02:00:00:00:00:07' }],
    boot: { kernel: '/boot/vmlinuz', initrd: '/g/tiny.cpio.gz', params: ['blix.hostname=web', 'blix.ip=10.0.0.5/24', 'blix.gw=10.0.0.1', 'blix.host=node2', 'blix.disk=1', 'loglevel=3'] }
  })
})

test('kernel image: QMP readiness, its cmdline split into parameters', () => {
  const s = launchSpecFromVm(vm({ image: { kind: 'kernel', kernel: '/k', cmdline: ' root=/dev/vda  rw ' } }))
  assert.is(s.readiness, 'qmp')
  assert.equal(s.boot, { kernel: '/k', params: ['root=/dev/vda', 'rw', 'loglevel=3'] })
})

test('refused: flake images, other hypervisors, tiny without the tiny guest', () => {
  assert.is(kind(() => launchSpecFromVm(vm({ image: { kind: 'flake', ref: 'github:x/y#vm' } }))), 'InvalidSpec')
  assert.is(kind(() => launchSpecFromVm(vm({ hypervisor: 'firecracker' }), { tinyGuest })), 'InvalidSpec')
  assert.is(kind(() => launchSpecFromVm(vm())), 'NotFound')
})

test.run()
