// Volumes against a real single-host Ceph, a real state machine, the real RPC handlers and the
// real volume reconciler (node/volumes/reconciler.ts): a handler only records the change; the
// reconciler on the node with Ceph makes the RBD image match and reports through the state machine.
// Create through a node without Ceph while another has it (image made, volume ready); create when
// no node has Ceph (refused, nothing recorded); resize, snapshot, clone, delete reach the image; an
// image someone else made under the volume's name is neither adopted nor removed; a crash between
// making the image and reporting converges on the next pass.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createResourceApi } from '../../node/api-resources.ts'
import { VolumeReconciler, OWNER_KEY, ownerTag } from '../../node/volumes/reconciler.ts'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { HypervisorCapability } from '../../protocols/model.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { RbdClient } from '../../storage/rbd.ts'
import type { RpcCallContext } from '../../node/net/rpc.ts'
import { createLogger } from '../../node/log.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'

let ceph: TestCeph | null = null
let rbd: RbdClient
const h = harness()
const write = async (cmd: Command): Promise<unknown> => {
  const r = h.run(cmd)
  if (!r.ok) throw new BlixardError(r.error.kind, r.error.message)
  return r.value
}
// every node's handlers are the same now: none of them touches Ceph
const api = createResourceApi({ sm: h.sm, read: async () => {}, barrier: async () => {}, write, defaultPool: () => 'rbd' })
// the handlers never look at the caller's connection
const ctx = { peer: 'test', signal: new AbortController().signal } as unknown as RpcCallContext
const log = createLogger({ test: 'volume-api' }, { level: 'warn' })
/** the reconciler of the node with Ceph ('n-ceph'), and one of a node without it: never acts */
let withCeph: VolumeReconciler
let bare: VolumeReconciler
const reports: Command[] = []
const propose = async (env: { cmd: Command }): Promise<ApplyResult> => { reports.push(env.cmd); return h.run(env.cmd) }

function node (id: string, caps: HypervisorCapability[]): Command {
  const c = registerNode(id) as Extract<Command, { type: 'RegisterNode' }>
  return { ...c, node: { ...c.node, capabilities: caps } }
}

async function kindOf (p: unknown): Promise<string> {
  try { await p; return 'ok' } catch (e) { return (e as { kind?: string }).kind ?? String(e) }
}

const phase = (name: string): string => h.sm.getVolume(name)?.phase ?? 'gone'

test.before(async () => {
  ceph = await startTestCeph()
  console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
  withCeph = new VolumeReconciler({ self: () => 'n-ceph', sm: h.sm, rbd, propose, log })
  bare = new VolumeReconciler({ self: () => 'n-bare', sm: h.sm, rbd, propose, log })
})

test('no node can reach Ceph: create and clone are refused at once, saying what to do, and nothing is recorded', async () => {
  assert.ok(h.run(node('n-bare', ['qemu'])).ok)
  let err: unknown = null
  try { await api['volume.create']!({ name: 'nowhere', sizeGiB: 1 }, ctx) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError && err.kind === 'NoCapacity', String(err))
  assert.match((err as BlixardError).message, /no node in the cluster can reach Ceph.*nothing was recorded.*ceph\.conf.*--ceph-conf.*BLIXARD_CEPH_CONF/)
  assert.is(h.sm.getVolume('nowhere'), undefined)
  assert.equal(h.sm.listVolumes(), [])
  assert.not.ok(await rbd.exists('rbd', 'nowhere'))
})

test('created through a node without Ceph while another has it: the reconciler there makes the image, the volume is ready', async () => {
  assert.ok(h.run(node('n-ceph', ['qemu', 'rbd'])).ok)
  const t = Date.now()
  const v = await api['volume.create']!({ name: 'golden', sizeGiB: 1 }, ctx)
  assert.equal([v.name, v.pool, v.sizeGiB, v.phase], ['golden', 'rbd', 1, 'pending'])
  assert.not.ok(await rbd.exists('rbd', 'golden'), 'the handler itself makes no image')
  await bare.pass()
  assert.is(phase('golden'), 'pending', 'a node without Ceph does nothing')
  assert.not.ok(await rbd.exists('rbd', 'golden'))
  await withCeph.pass()
  assert.is(phase('golden'), 'ready')
  const info = await rbd.info('rbd', 'golden')
  assert.is(info.sizeBytes, 1024 ** 3)
  assert.ok(info.features.includes('exclusive-lock') && info.features.includes('layering'))
  assert.is(await rbd.metaGet('rbd', 'golden', OWNER_KEY), ownerTag(h.sm.getVolume('golden')!))
  assert.equal(reports.map((c) => c.type === 'ReportVolume' ? [c.name, c.node, c.outcome] : null), [['golden', 'n-ceph', 'ready']])
  console.log(`  create to ready in ${Date.now() - t} ms`)
})

test('resize, snapshot and clone reach the image; delete removes it and then the record', async () => {
  assert.is((await api['volume.resize']!({ volume: 'golden', sizeGiB: 2 }, ctx)).phase, 'pending')
  await withCeph.pass()
  assert.is(phase('golden'), 'ready')
  assert.is((await rbd.info('rbd', 'golden')).sizeBytes, 2 * 1024 ** 3)
  assert.is(await kindOf(api['volume.resize']!({ volume: 'golden', sizeGiB: 1 }, ctx)), 'InvalidSpec', 'shrink refused')
  await api['volume.snapshot']!({ volume: 'golden', snapshot: 'v1' }, ctx)
  // a clone recorded while its parent's snapshot is still pending waits for it
  const c = await api['volume.clone']!({ volume: 'golden', snapshot: 'v1', name: 'vm-disk-1', sizeGiB: 3 }, ctx)
  assert.equal([c.parent, c.phase], [{ volume: 'golden', snapshot: 'v1' }, 'pending'])
  await withCeph.pass() // golden's snapshot (the clone's task, planned while golden was pending, waits)
  assert.equal([phase('golden'), phase('vm-disk-1')], ['ready', 'pending'])
  await withCeph.pass()
  assert.equal([phase('golden'), phase('vm-disk-1')], ['ready', 'ready'])
  const snaps = await rbd.snapshotList('rbd', 'golden')
  assert.ok(snaps.length === 1 && snaps[0].name === 'v1' && snaps[0].protected, JSON.stringify(snaps))
  const ci = await rbd.info('rbd', 'vm-disk-1')
  assert.ok(ci.parent?.image === 'golden' && ci.parent.snapshot === 'v1' && ci.sizeBytes === 3 * 1024 ** 3, JSON.stringify(ci))
  assert.is(await kindOf(api['volume.delete']!({ volume: 'golden' }, ctx)), 'InUse', 'a volume with a clone stays')
  // attached to a VM: delete refused, image kept
  assert.ok(h.run({ type: 'CreateVm', id: 'vm-a', spec: spec('a', { volumes: ['vm-disk-1'] }) }).ok)
  assert.is(await kindOf(api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)), 'InUse')
  assert.ok(h.run({ type: 'DeleteVm', id: 'vm-a' }).ok)
  await api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)
  assert.is(phase('vm-disk-1'), 'deleting')
  assert.ok(await rbd.exists('rbd', 'vm-disk-1'), 'the record goes only once the image is gone')
  assert.is(await kindOf(api['volume.delete']!({ volume: 'golden' }, ctx)), 'InUse', 'its clone is still being deleted')
  await withCeph.pass()
  assert.is(phase('vm-disk-1'), 'gone')
  assert.not.ok(await rbd.exists('rbd', 'vm-disk-1'))
  await api['volume.delete']!({ volume: 'golden' }, ctx)
  await withCeph.pass()
  assert.not.ok(await rbd.exists('rbd', 'golden'))
  assert.equal(h.sm.listVolumes(), [])
})

test('an image someone else made under the name: the volume fails with the reason, and its delete leaves that image alone', async () => {
  await rbd.createImage('rbd', 'taken2', 1)
  await rbd.metaSet('rbd', 'taken2', OWNER_KEY, 'someone-else@1')
  await api['volume.create']!({ name: 'taken2', sizeGiB: 1 }, ctx)
  await withCeph.pass()
  const v = h.sm.getVolume('taken2')!
  assert.is(v.phase, 'failed')
  assert.match(v.reason ?? '', /already has an RBD image taken2 that this volume did not make \(it was made for someone-else@1\).*rbd rm rbd\/taken2/)
  // a VM cannot be created on a volume whose image was never made
  assert.is(h.run({ type: 'CreateVm', id: 'vm-b', spec: spec('b', { volumes: ['taken2'] }) }).ok, false)
  await api['volume.delete']!({ volume: 'taken2' }, ctx)
  await withCeph.pass()
  assert.is(phase('taken2'), 'gone', 'the failed record is gone')
  assert.ok(await rbd.exists('rbd', 'taken2'), 'someone else\'s image is left alone')
  assert.match(JSON.stringify(reports.at(-1)), /was not made by this volume.*left alone/)
  await rbd.remove('rbd', 'taken2')
})

test('a crash after the image was made and before the report: the next pass adopts it (tagged) and reports ready', async () => {
  await api['volume.create']!({ name: 'crashy', sizeGiB: 1 }, ctx)
  const v = h.sm.getVolume('crashy')!
  // what the reconciler had done before it died: the image, its tag, no report
  await rbd.createImage('rbd', 'crashy', 1)
  await rbd.metaSet('rbd', 'crashy', OWNER_KEY, ownerTag(v))
  await withCeph.pass()
  assert.is(phase('crashy'), 'ready')
  assert.is((await rbd.info('rbd', 'crashy')).sizeBytes, 1024 ** 3)
  await api['volume.delete']!({ volume: 'crashy' }, ctx)
  await withCeph.pass()
  assert.not.ok(await rbd.exists('rbd', 'crashy'))
})

test.after(async () => { await withCeph?.stop(); await ceph?.destroy() })

test.run()
