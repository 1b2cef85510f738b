import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { testHost, CLUSTER_KEY } from './helpers.ts'
import { newClusterKey, readClusterKey, writeClusterKey, ClusterKeyError, keygenMain } from '../../node/keygen.ts'
import { loadOrCreateIdentity, IdentityError } from '../../node/identity.ts'
import { dialableAddr } from '../../node/net/host.ts'

let dir = ''
test.before(async () => { dir = await mkdtemp(join(tmpdir(), 'blixard-host-')) })
test.after(async () => { await rm(dir, { recursive: true, force: true }) })

test('two hosts with the same cluster key connect and ping', async () => {
  const a = await testHost()
  const b = await testHost()
  try {
    const rtt = await b.services.ping.ping(dialableAddr(a))
    assert.ok(rtt >= 0)
    assert.is(b.getConnections(a.peerId).length, 1)
    assert.ok(a.getMultiaddrs()[0].toString().startsWith('/ip4/127.0.0.1/tcp/'))
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('a host with another cluster key never completes a connection, and fails in bounded time', async () => {
  const a = await testHost()
  const b = await testHost({ clusterKey: newClusterKey(), dialTimeoutMs: 2000 })
  try {
    const t0 = Date.now()
    let failed = false
    try { await b.dial(dialableAddr(a)) } catch { failed = true }
    const took = Date.now() - t0
    console.log(`  wrong-key dial failed after ${took} ms`)
    assert.ok(failed, 'dial with the wrong key must fail')
    assert.ok(took < 4000, `took ${took} ms`)
    assert.is(a.getConnections().length, 0)
    assert.is(b.getConnections().length, 0)
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('bootstrap addresses connect a host without an explicit dial', async () => {
  const a = await testHost()
  const b = await testHost({ bootstrap: [dialableAddr(a).toString()] })
  try {
    const t0 = Date.now()
    while (b.getConnections(a.peerId).length === 0) {
      if (Date.now() - t0 > 5000) assert.unreachable('bootstrap did not connect')
      await new Promise(r => setTimeout(r, 20))
    }
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

test('identity persists in the data dir with mode 0600', async () => {
  const d = join(dir, 'node1')
  const first = await loadOrCreateIdentity(d)
  assert.ok(first.created)
  assert.is((await stat(join(d, 'identity.key'))).mode & 0o777, 0o600)
  const again = await loadOrCreateIdentity(d)
  assert.not.ok(again.created)
  assert.is(peerIdFromPrivateKey(again.privateKey).toString(), peerIdFromPrivateKey(first.privateKey).toString())
  await chmod(join(d, 'identity.key'), 0o644)
  await loadOrCreateIdentity(d)
  assert.is((await stat(join(d, 'identity.key'))).mode & 0o777, 0o600)
  await writeFile(join(d, 'identity.key'), 'garbage')
  try { await loadOrCreateIdentity(d); assert.unreachable() } catch (err) { assert.instance(err, IdentityError) }
})

test('keygen writes a pnet key, refuses to overwrite, and bad key files are named', async () => {
  const p = join(dir, 'cluster.key')
  await writeClusterKey(p)
  assert.is((await stat(p)).mode & 0o777, 0o600)
  const text = (await readFile(p, 'utf8'))
  assert.match(text, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
  assert.equal(await readClusterKey(p), new Uint8Array(await readFile(p)))
  try { await writeClusterKey(p); assert.unreachable() } catch (err) { assert.instance(err, ClusterKeyError); assert.match((err as Error).message, 'already exists') }
  await writeFile(join(dir, 'bad.key'), 'nope')
  try { await readClusterKey(join(dir, 'bad.key')); assert.unreachable() } catch (err) { assert.match((err as Error).message, 'not a cluster key') }
  assert.is(CLUSTER_KEY.byteLength, 95)
  // the `blixard keygen PATH` entry point
  const out: string[] = []
  const write = process.stdout.write.bind(process.stdout)
  const ewrite = process.stderr.write.bind(process.stderr)
  process.stdout.write = ((c: string) => { out.push(c); return true }) as typeof process.stdout.write
  process.stderr.write = ((c: string) => { out.push(c); return true }) as typeof process.stderr.write
  try {
    assert.is(await keygenMain([join(dir, 'cli.key')]), 0)
    assert.is(await keygenMain([join(dir, 'cli.key')]), 1)
    assert.is(await keygenMain([]), 2)
  } finally {
    process.stdout.write = write
    process.stderr.write = ewrite
  }
  assert.ok(out[0].includes('wrote a new cluster key'))
  assert.ok(out[1].includes('already exists'))
  assert.ok(out[2].includes('usage: blixard keygen PATH'))
  assert.is((await readClusterKey(join(dir, 'cli.key'))).byteLength, 95)
})

test.run()
