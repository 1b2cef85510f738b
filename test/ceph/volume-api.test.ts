// The volume RPC handlers against a real single-host Ceph and a real state machine:
// create, resize, snapshot (protected), clone from the snapshot, refusals (attached,
// cloned, shrink), rollback of the Raft record when Ceph refuses, delete.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createResourceApi } from '../../node/api-resources.ts'
import type { Command } from '../../protocols/commands.ts'
import { RbdClient } from '../../storage/rbd.ts'
import type { RpcCallContext } from '../../node/net/rpc.ts'
import { harness, spec } from '../storage/sm-fixtures.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'
import { BlixardError } from '../../protocols/errors.ts'

let ceph: TestCeph | null = null
let rbd: RbdClient
const h = harness()
const write = async (cmd: Command): Promise<unknown> => {
  const r = h.run(cmd)
  if (!r.ok) throw new BlixardError(r.error.kind, r.error.message)
  return r.value
}
let api: ReturnType<typeof createResourceApi>
// the handlers never look at the caller's connection
const ctx = { peer: 'test', signal: new AbortController().signal } as unknown as RpcCallContext

async function kindOf (p: unknown): Promise<string> {
  try { await p; return 'ok' } catch (e) { return (e as { kind?: string }).kind ?? String(e) }
}

test.before(async () => {
  ceph = await startTestCeph()
  console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
  api = createResourceApi({ sm: h.sm, read: async () => {}, barrier: async () => {}, write, ceph: () => ({ rbd, pool: 'rbd' }) })
})

test('volume lifecycle through the RPC handlers: Raft record and RBD image agree', async () => {
  const t = Date.now()
  const v = await api['volume.create']!({ name: 'golden', sizeGiB: 1 }, ctx)
  assert.equal([v.name, v.pool, v.sizeGiB], ['golden', 'rbd', 1])
  const info = await rbd.info('rbd', 'golden')
  assert.is(info.sizeBytes, 1024 ** 3)
  assert.ok(info.features.includes('exclusive-lock') && info.features.includes('layering'))
  assert.is((await api['volume.resize']!({ volume: 'golden', sizeGiB: 2 }, ctx)).sizeGiB, 2)
  assert.is((await rbd.info('rbd', 'golden')).sizeBytes, 2 * 1024 ** 3)
  assert.is(await kindOf(api['volume.resize']!({ volume: 'golden', sizeGiB: 1 }, ctx)), 'InvalidSpec', 'shrink refused')
  await api['volume.snapshot']!({ volume: 'golden', snapshot: 'v1' }, ctx)
  const snaps = await rbd.snapshotList('rbd', 'golden')
  assert.ok(snaps.length === 1 && snaps[0].name === 'v1' && snaps[0].protected)
  const c = await api['volume.clone']!({ volume: 'golden', snapshot: 'v1', name: 'vm-disk-1', sizeGiB: 3 }, ctx)
  assert.equal(c.parent, { volume: 'golden', snapshot: 'v1' })
  const ci = await rbd.info('rbd', 'vm-disk-1')
  assert.ok(ci.parent?.image === 'golden' && ci.parent.snapshot === 'v1' && ci.sizeBytes === 3 * 1024 ** 3, JSON.stringify(ci))
  assert.is(await kindOf(api['volume.delete']!({ volume: 'golden' }, ctx)), 'InUse', 'a volume with a clone stays')
  // attached to a VM: delete refused, image kept
  assert.ok(h.run({ type: 'CreateVm', id: 'vm-a', spec: spec('a', { volumes: ['vm-disk-1'] }) }).ok)
  assert.is(await kindOf(api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)), 'InUse')
  assert.ok(await rbd.exists('rbd', 'vm-disk-1'))
  assert.ok(h.run({ type: 'DeleteVm', id: 'vm-a' }).ok)
  await api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)
  await api['volume.delete']!({ volume: 'golden' }, ctx)
  assert.not.ok(await rbd.exists('rbd', 'vm-disk-1'))
  assert.not.ok(await rbd.exists('rbd', 'golden'))
  assert.equal(h.sm.listVolumes(), [])
  console.log(`  lifecycle (create, resize, snapshot, clone, refusals, deletes) in ${Date.now() - t} ms`)
})

test('Ceph refuses (the image already exists): the Raft record is rolled back', async () => {
  await rbd.createImage('rbd', 'taken', 1)
  assert.is(await kindOf(api['volume.create']!({ name: 'taken', sizeGiB: 1 }, ctx)), 'AlreadyExists')
  assert.is(h.sm.getVolume('taken'), undefined)
  await rbd.remove('rbd', 'taken')
  // the Raft side refuses a duplicate before Ceph is asked
  await api['volume.create']!({ name: 'once', sizeGiB: 1 }, ctx)
  assert.is(await kindOf(api['volume.create']!({ name: 'once', sizeGiB: 1 }, ctx)), 'AlreadyExists')
  assert.ok(await rbd.exists('rbd', 'once'))
  await api['volume.delete']!({ volume: 'once' }, ctx)
})

test('a node without Ceph refuses to create a volume or a clone, and records nothing', async () => {
  const bare = createResourceApi({ sm: h.sm, read: async () => {}, barrier: async () => {}, write, ceph: () => null })
  let err: unknown = null
  try { await bare['volume.create']!({ name: 'nowhere', sizeGiB: 1 }, ctx) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError && err.kind === 'Unavailable', String(err))
  assert.match((err as BlixardError).message, /no Ceph configured.*volume nowhere: nothing was recorded.*\[ceph\]/)
  assert.is(h.sm.getVolume('nowhere'), undefined)
  await api['volume.create']!({ name: 'parent', sizeGiB: 1 }, ctx)
  await api['volume.snapshot']!({ volume: 'parent', snapshot: 's' }, ctx)
  assert.is(await kindOf(bare['volume.clone']!({ volume: 'parent', snapshot: 's', name: 'child' }, ctx)), 'Unavailable')
  assert.is(h.sm.getVolume('child'), undefined)
  assert.not.ok(await rbd.exists('rbd', 'child'))
  await api['volume.delete']!({ volume: 'parent' }, ctx)
})

test.after(async () => { await ceph?.destroy() })

test.run()
