// A guest's data survives its move to another host through Ceph RBD, against a real
// single-host Ceph: the guest boots on host 1 with an RBD data disk (QEMU's own rbd
// driver), writes its boot counter (boots=1); host 1 is then cut off but its qemu still
// runs (the dangerous case), so before the VM starts on host 2 the old holder is fenced
// (`ceph osd blocklist add` of its client address, stale lock broken). Host 2 boots the
// same VM from the same image and reads the counter back (boots=2).
// The two hosts are two QEMU drivers with their own data dirs.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { launchSpecFromVm } from '../../node/qemu/launch-spec.ts'
import { buildTinyGuest, parseDiskBoots, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import type { DriveSpec } from '../../node/qemu/cmdline.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'

const BOOT_WAIT_MS = 180_000
const POOL = 'rbd'
const IMAGE = 'vm-data-move'
const VM_ID = 'vm-rbd-move'
const root = mkdtempSync(join(tmpdir(), 'blx-guest-rbd-'))
let ceph: TestCeph | null = null
let rbd: RbdClient
let guest: TinyGuest
const drivers: QemuDriver[] = []
const t0 = Date.now()

function vmRecord (generation: number): VmRecord {
  return {
    id: VM_ID, generation, desired: 'running', assignedNode: null, createdAt: 0, updatedAt: 0,
    status: { phase: 'scheduled', reason: '', node: null, at: 0 },
    spec: {
      name: 'data-mover', vcpus: 1, memoryMiB: 96, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' },
      volumes: [IMAGE], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [],
      spreadLabel: null, priority: 0, restartPolicy: 'never', requires: []
    }
  }
}

function host (name: string): QemuDriver {
  const d = new QemuDriver({ dataDir: join(root, name), accel: 'auto', stopTimeoutMs: 10_000 })
  drivers.push(d)
  return d
}

async function bootOn (d: QemuDriver, generation: number): Promise<{ boots: number | null, ms: number }> {
  if (ceph == null) throw new Error('no ceph')
  const drive: DriveSpec = { kind: 'rbd', pool: POOL, image: IMAGE, conf: ceph.conf, id: 'admin' }
  const spec = launchSpecFromVm(vmRecord(generation), { tinyGuest: guest, drives: [drive] })
  assert.ok(spec.boot.params?.includes('blix.disk=1'), 'a VM with a volume gets blix.disk=1')
  const ts = Date.now()
  const up = d.waitForEvent(VM_ID, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS)
  await d.start(spec)
  const e = await up
  assert.is(e.type, 'running', JSON.stringify(e))
  const log = readFileSync(join(d.dataDir, 'vms', VM_ID, 'serial.log'), 'utf8')
  return { boots: parseDiskBoots(log), ms: Date.now() - ts }
}

test.before(async () => {
  guest = await buildTinyGuest()
  ceph = await startTestCeph()
  console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
})

test('a guest on an RBD disk moves to another host with its data; the old holder is fenced first', async () => {
  await rbd.createImage(POOL, IMAGE, 64 / 1024) // 64 MiB, layering + exclusive-lock
  assert.ok((await rbd.info(POOL, IMAGE)).features.includes('exclusive-lock'))
  const h1 = host('host-1')
  const first = await bootOn(h1, 1)
  console.log(`  host 1: booted from rbd:${POOL}/${IMAGE} in ${first.ms} ms, boots=${first.boots}`)
  assert.is(first.boots, 1, 'a blank image: the guest made a filesystem and counted its first boot')
  const holder = await rbd.lockHolder(POOL, IMAGE)
  assert.ok(holder != null && holder.watching, `host 1's qemu holds the exclusive lock: ${JSON.stringify(holder)}`)

  // host 1 is presumed dead but its qemu still runs: fence before host 2 starts the VM
  const fenced = await rbd.fence(POOL, IMAGE, 600)
  assert.ok(fenced.includes(holder.address), `fenced ${JSON.stringify(fenced)} includes the holder ${holder.address}`)
  const blocked = (await rbd.blocklistLs()).map((b) => b.addr)
  assert.ok(blocked.includes(holder.address), `blocklist ${JSON.stringify(blocked)}`)
  console.log(`  fenced the old holder ${holder.address} (ceph osd blocklist add), lock broken`)

  const h2 = host('host-2')
  const second = await bootOn(h2, 2)
  console.log(`  host 2: booted the same volume in ${second.ms} ms, boots=${second.boots}`)
  assert.is(second.boots, 2, 'the counter written on host 1 was read back on host 2: the data moved with the VM')
  const now = await rbd.lockHolder(POOL, IMAGE)
  assert.ok(now != null && now.address !== holder.address, `host 2 holds the lock now: ${JSON.stringify(now)}`)

  // the stale host's VM is deleted there; host 2's stop releases the image
  await h1.cleanup(VM_ID)
  await h2.stop(VM_ID)
  await h2.cleanup(VM_ID)
  await rbd.blocklistRm(holder.address)
  await rbd.remove(POOL, IMAGE)
  assert.not.ok(await rbd.exists(POOL, IMAGE))
})

function killOurQemus (): void {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (cmd.startsWith('qemu-system') && cmd.includes(root)) process.kill(Number(name), 'SIGKILL')
    } catch {}
  }
}
process.on('exit', () => { killOurQemus(); rmSync(root, { recursive: true, force: true }) })

test.after(async () => {
  for (const d of drivers) await d.close().catch(() => {})
  killOurQemus()
  await ceph?.destroy()
  rmSync(root, { recursive: true, force: true })
  console.log(`  guest-rbd test took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
})

test.run()
