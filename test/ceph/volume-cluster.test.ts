// Volumes through 3 real blixard-node processes and the real single-host Ceph: where the CLI's
// call lands no longer decides whether an image is made. With no node configured for Ceph,
// `volume create` is refused at once (exit 4, naming the config key) and nothing is recorded; once
// one node (node 2) has a ceph.conf, a create sent to node 0 (no Ceph) makes the image in the pool
// and `--wait` sees the volume ready; resize and delete, sent to node 1 (no Ceph), reach the image;
// a create Ceph cannot carry out ends failed with the reason under --wait, and can be deleted.
// Ports 17780-17782 (metrics 17880-17882).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, runCli } from '../cluster/harness.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { startTestCeph, type TestCeph } from './single-host-ceph.ts'

const c = new TestCluster({ nodes: 3, basePort: 17780 }, 'vol-cluster')
const VOL = `vc${process.pid % 10000}`
let ceph: TestCeph | null = null
let rbd: RbdClient
let failed = false

function guard (name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try { await fn() } catch (err) { failed = true; throw err }
  })
}

test.before(async () => {
  ceph = await startTestCeph()
  console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
  await c.prepare()
  for (const i of [0, 1, 2]) c.start(i)
  await waitFor('3 nodes registered under one leader', 90_000, async () => await c.agreed([0, 1, 2], 3) != null && (await (await c.client(0)).call('node.list', {})).length === 3, 250)
})
test.after(async () => {
  if (failed) console.log(c.logTails())
  await c.stop()
  await ceph?.destroy()
})

guard('no node has Ceph: volume create is refused at once with what to do, and nothing is recorded', async () => {
  const t = Date.now()
  const r = await runCli(['volume', 'create', VOL, '--size', '1', '--wait'], c.cliEnv(0))
  console.log(`  refused in ${Date.now() - t} ms (CLI process included)`)
  assert.is(r.code, 4, r.stderr)
  assert.match(r.stderr, /no node in the cluster can reach Ceph/)
  assert.match(r.stderr, /nothing was recorded/)
  assert.match(r.stderr, /ceph\.conf.*--ceph-conf.*BLIXARD_CEPH_CONF/)
  // the same refusal over RPC, without the CLI process's start
  const cl = await c.client(1)
  const t1 = Date.now()
  const kind = await cl.call('volume.create', { name: VOL, sizeGiB: 1 }).then(() => 'ok', (e: { kind?: string }) => e.kind)
  console.log(`  refused over RPC in ${Date.now() - t1} ms`)
  assert.is(kind, 'NoCapacity')
  assert.equal(await cl.call('volume.list', {}), [])
  assert.not.ok(await rbd.exists('rbd', VOL))
})

guard('node 2 gets a ceph.conf: a create sent to node 0 (no Ceph) makes the image, and --wait sees it ready', async () => {
  c.kill(2, 'SIGTERM')
  await c.exited(2)
  c.start(2, ['--ceph-conf', ceph!.conf, '--ceph-keyring', ceph!.keyring, '--ceph-id', 'admin'])
  const n2 = c.nodes[2].peerId
  await waitFor('node 2 advertises rbd', 60_000, async () => (await (await c.client(0)).call('node.show', { node: n2 })).capabilities.includes('rbd'), 250)
  const t = Date.now()
  const r = await runCli(['volume', 'create', VOL, '--size', '1', '--wait', '--json'], c.cliEnv(0))
  assert.is(r.code, 0, r.stderr)
  const v = r.json as { name: string, phase: string, pool: string }
  assert.equal([v.name, v.phase, v.pool], [VOL, 'ready', 'rbd'])
  console.log(`  volume create --wait through a node without Ceph: ready in ${Date.now() - t} ms`)
  assert.is((await rbd.info('rbd', VOL)).sizeBytes, 1024 ** 3)
  const events = await (await c.client(0)).call('volume.show', { volume: VOL })
  assert.is(events.phase, 'ready')
})

guard('resize and delete sent to node 1 (no Ceph) reach the image', async () => {
  const cl = await c.client(1)
  const r = await cl.call('volume.resize', { volume: VOL, sizeGiB: 2 })
  assert.is(r.phase, 'pending')
  await waitFor('resized volume ready', 60_000, async () => (await cl.call('volume.show', { volume: VOL })).phase === 'ready', 250)
  assert.is((await rbd.info('rbd', VOL)).sizeBytes, 2 * 1024 ** 3)
  const d = await runCli(['volume', 'delete', VOL, '--wait'], c.cliEnv(1))
  assert.is(d.code, 0, d.stderr)
  assert.match(d.stdout, /deleted/)
  assert.not.ok(await rbd.exists('rbd', VOL))
  assert.equal(await cl.call('volume.list', {}), [])
})

guard('a create Ceph refuses: --wait shows the reason (exit 1); the failed volume is deleted, someone else\'s image left alone', async () => {
  const other = `${VOL}x`
  await rbd.createImage('rbd', other, 1)
  await rbd.metaSet('rbd', other, 'blixard.volume', 'someone-else@1')
  const r = await runCli(['volume', 'create', other, '--size', '1', '--wait'], c.cliEnv(0))
  assert.is(r.code, 1, r.stderr)
  assert.match(r.stdout, new RegExp(`volume ${other} failed: .*already has an RBD image ${other} that this volume did not make`))
  assert.match(r.stdout, new RegExp(`blixard volume delete ${other} removes the record`))
  const d = await runCli(['volume', 'delete', other, '--wait'], c.cliEnv(0))
  assert.is(d.code, 0, d.stderr)
  assert.equal(await (await c.client(0)).call('volume.list', {}), [])
  assert.ok(await rbd.exists('rbd', other), 'the image it did not make is still there')
  await rbd.remove('rbd', other)
})

test.run()
