// The QEMU driver behind the Hypervisor seam (node/hypervisor/qemu.ts), without booting a guest
// (test/qemu/driver.test.ts boots them): a host without the tiny guest says why it cannot launch
// one, a VM record becomes the driver's launch spec (a spawn that fails is observed as a crashed
// guest with the reason), a flake image is refused before anything runs, cleanup removes it all.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { QemuHypervisor } from '../../node/hypervisor/qemu.ts'
import { silentLogger } from '../../node/log.ts'
import type { VmRecord, VmSpec } from '../../protocols/model.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'blx-hvq-'))
const driver = new QemuDriver({ dataDir, accel: 'tcg', tscKhz: null, qemuBinary: '/nonexistent/qemu-system-x86_64' })
const hv = new QemuHypervisor(driver, { guestDir: join(dataDir, 'no-guest-here'), log: silentLogger })

function vm (id: string, image: VmSpec['image']): VmRecord {
  return {
    id, generation: 3, desired: 'running', assignedNode: 'n', createdAt: 0, updatedAt: 0,
    status: { phase: 'scheduled', reason: '', node: 'n', at: 0 },
    spec: { name: id, vcpus: 1, memoryMiB: 96, diskGiB: 1, hypervisor: 'qemu', image, volumes: [], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'always', requires: [] }
  }
}

test('no tiny guest: a tiny VM cannot launch here, with the way to fix it; a kernel image can', async () => {
  await hv.prepare()
  assert.match(hv.cannotLaunch(vm('vm-a', { kind: 'tiny' })) ?? '', /no tiny guest on this host.*scripts\/build-tiny-guest\.sh/)
  assert.is(hv.cannotLaunch(vm('vm-b', { kind: 'kernel', kernel: '/boot/vmlinuz' })), null)
  assert.equal(await hv.list(), [])
})

test('start goes to the driver with the record\'s generation; a spawn that fails is observed as a crash', async () => {
  const err = await hv.start({ vm: vm('vm-b', { kind: 'kernel', kernel: '/boot/vmlinuz' }), host: {} }).then(() => null, (e: unknown) => e as Error)
  assert.match(err?.message ?? '', /cannot run \/nonexistent\/qemu-system-x86_64/)
  const [st] = await hv.list()
  assert.is(st.vmId, 'vm-b')
  assert.is(st.generation, 3)
  assert.is(st.state, 'crashed')
  assert.match(st.state === 'crashed' ? st.exit.reason : '', /cannot run/)
  assert.is(st.state === 'crashed' ? st.exit.requested : 'x', null)
})

test('a flake image is refused before anything runs', async () => {
  const err = await hv.start({ vm: vm('vm-c', { kind: 'flake', ref: 'github:x/y#g' }), host: {} }).then(() => null, (e: unknown) => e as Error)
  assert.match(err?.message ?? '', /flake images run through microvm\.nix/)
  assert.equal((await hv.list()).map((s) => s.vmId), ['vm-b'])
})

test('cleanup removes the runtime dir; console of a VM never started here is NotFound', async () => {
  await hv.cleanup('vm-b')
  assert.ok(!existsSync(join(dataDir, 'vms', 'vm-b')))
  assert.equal(await hv.list(), [])
  const err = await hv.logs('vm-b').next().then(() => null, (e: unknown) => e as { kind?: string })
  assert.is(err?.kind, 'NotFound')
})

test.after(async () => {
  await hv.close()
  rmSync(dataDir, { recursive: true, force: true })
})

test.run()
