// The migration data path with real parts: two libp2p hosts on 127.0.0.1 (cluster key, Noise)
// and real tiny-guest QEMUs under TCG. A running 128 MiB guest moves through /blixard/migrate/1;
// a third host that is not the named source is refused; then the same guest moves again directly
// QEMU to QEMU over a loopback unix socket, the physical limit here, and both sets of figures print.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { createConnection, createServer } from 'node:net'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testHost, until } from '../net/helpers.ts'
import { buildQemuArgv, tscKhzFromCpuinfo } from '../../node/qemu/cmdline.ts'
import { buildTinyGuest, parseHeartbeats, parseReadyMarker, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { waitForText } from '../../node/qemu/file-tail.ts'
import { QmpClient } from '../../node/qemu/qmp.ts'
import { cancelMigration, incomingArgs, localMigrationUri, parseQueryMigrate, queryMigrate, runState, startMigration, waitForMigration, type MigrationProgress } from '../../node/qemu/migrate.ts'
import { MigrationStreams, MigrationStreamError } from '../../node/migration/stream.ts'

const MEMORY_MIB = 128
const BOOT_TIMEOUT_MS = 60_000
const MIGRATE_TIMEOUT_MS = 60_000
// the guest's own console heartbeat (blix.heartbeat): a counter every 100 ms
const HEARTBEAT_MS = 100

interface Qemu { dir: string, child: ChildProcess, qmp: QmpClient, serialLog: string, serialSock: string }
const procs: Qemu[] = []
// a test that dies half-way must not leave guests behind
process.on('exit', () => { for (const q of procs) q.child.kill('SIGKILL') })
let guest: TinyGuest

const ticks = parseHeartbeats

async function launch (name: string, incoming: ((dir: string) => string) | null): Promise<Qemu & { incomingUri: string | null }> {
  const dir = await mkdtemp(join(tmpdir(), `blx-mig-${name}-`))
  const serialLog = join(dir, 'serial.log')
  const serialSock = join(dir, 'serial.sock')
  const qmpSock = join(dir, 'qmp.sock')
  const tscKhz = tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'))
  // the same machine on both sides (same devices, same order): only -incoming differs
  const { binary, args } = buildQemuArgv(
    { vmId: 'mig', vcpus: 1, memoryMiB: MEMORY_MIB, boot: tinyGuestBoot(guest, { hostname: 'mig', heartbeatMs: HEARTBEAT_MS }) },
    { accel: 'tcg', tscKhz }, { serialSock, serialLog, qmpSock })
  const incomingUri = incoming != null ? incoming(dir) : null
  const child = spawn(binary, [...args, ...(incomingUri != null ? incomingArgs(incomingUri) : [])], { stdio: ['ignore', 'ignore', 'inherit'] })
  const qmp = await QmpClient.connect(qmpSock, { timeoutMs: 10_000 })
  const q = { dir, child, qmp, serialLog, serialSock, incomingUri }
  procs.push(q)
  return q
}

function figures (p: MigrationProgress): string {
  return `downtime ${p.downtimeMs} ms, total ${p.totalTimeMs} ms, setup ${p.setupTimeMs} ms, ${(p.transferredBytes / 1048576).toFixed(1)} MiB at ${p.mbps?.toFixed(0)} Mbit/s`
}

test('migration URIs stay on this host: a LAN address, exec: or a relative path is refused', () => {
  assert.is(localMigrationUri('unix:/run/x/in.sock'), 'unix:/run/x/in.sock')
  assert.is(localMigrationUri('tcp:127.0.0.1:4444'), 'tcp:127.0.0.1:4444')
  for (const bad of ['tcp:0.0.0.0:4444', 'tcp:10.0.0.5:4444', 'tcp:[::]:4444', 'exec:cat > /tmp/x', 'unix:rel.sock', 'unix:/a,b', 'fd:3']) {
    assert.throws(() => localMigrationUri(bad), /migration/, bad)
  }
})

test('query-migrate replies parse into progress, failures keep QEMU\'s reason', () => {
  const p = parseQueryMigrate({ status: 'active', 'expected-downtime': 120, 'total-time': 400, ram: { transferred: 1000, remaining: 500, total: 2000, 'dirty-pages-rate': 30, mbps: 800.5 } })
  assert.equal([p.status, p.transferredBytes, p.remainingBytes, p.totalBytes, p.dirtyPagesRate, p.expectedDowntimeMs, p.downtimeMs, p.mbps], ['active', 1000, 500, 2000, 30, 120, null, 800.5])
  const f = parseQueryMigrate({ status: 'failed', 'error-desc': 'Unable to write to socket' })
  assert.equal([f.status, f.error, f.transferredBytes], ['failed', 'Unable to write to socket', 0])
  assert.throws(() => parseQueryMigrate('nope'), /not an object/)
})

test('a running 128 MiB guest migrates through a libp2p stream; a peer not named is refused; direct loopback for comparison', async () => {
  guest = await buildTinyGuest()
  const [src, dst, intruder] = await Promise.all([testHost(), testHost(), testHost()])
  const streams = [src, dst, intruder].map((h) => new MigrationStreams(h))
  try {
    for (const s of streams) await s.start()
    await src.dial(dst.getMultiaddrs()[0])
    await intruder.dial(dst.getMultiaddrs()[0])

    const a = await launch('a', null)
    await waitForText(a.serialLog, parseReadyMarker, { timeoutMs: BOOT_TIMEOUT_MS })
    await waitForText(a.serialLog, (t) => ticks(t).length >= 3 ? true : null, { timeoutMs: 20_000 })

    const b = await launch('b', (dir) => `unix:${join(dir, 'in.sock')}`)
    assert.is(await runState(b.qmp), 'inmigrate')
    const targetSocket = (b.incomingUri ?? '').slice('unix:'.length)
    const accepted = streams[1].expect({ id: 'mig-1', allow: (p) => p.equals(src.peerId), targetSocket })
    accepted.catch(() => {}) // awaited below; a failure must not crash the run before the cleanup

    // a cluster member that is not the named source: refused, and the expectation survives it
    const stranger = await streams[2].send({ id: 'mig-1', peer: dst.peerId, listenSocket: join(a.dir, 'intruder.sock') })
    const fake = createConnection(join(a.dir, 'intruder.sock'))
    fake.on('error', () => {})
    fake.write('QEVM not really a migration')
    try {
      await stranger.done
      assert.unreachable('the stranger must be refused')
    } catch (err) {
      assert.instance(err, MigrationStreamError)
      assert.is((err as MigrationStreamError).kind, 'Refused')
      assert.match((err as Error).message, /may not open migration mig-1/)
    }
    fake.destroy()
    assert.is(await runState(b.qmp), 'inmigrate', 'the target QEMU saw none of the stranger\'s bytes')

    // a source QEMU that never connects: the listener gives up instead of waiting forever (the
    // target expects this move, so the stream itself opens: the source opens it while QEMU connects)
    const idleTarget = createServer(() => {}).listen(join(a.dir, 'idle-target.sock')) // a target QEMU that listens
    const idleExpected = streams[1].expect({ id: 'mig-idle', allow: (p) => p.equals(src.peerId), targetSocket: join(a.dir, 'idle-target.sock') })
    idleExpected.catch(() => {}) // nothing ever arrives: it ends with the source's stream
    const idle = await streams[0].send({ id: 'mig-idle', peer: dst.peerId, listenSocket: join(a.dir, 'idle.sock'), acceptTimeoutMs: 200 })
    try {
      await idle.done
      assert.unreachable('no QEMU connected')
    } catch (err) {
      assert.is((err as MigrationStreamError).kind, 'Timeout')
    }
    idleTarget.close()

    // through the stream
    const out = join(a.dir, 'out.sock')
    const { done } = await streams[0].send({ id: 'mig-1', peer: dst.peerId, listenSocket: out })
    const samples: MigrationProgress[] = []
    await startMigration(a.qmp, localMigrationUri(`unix:${out}`))
    const viaStream = await waitForMigration(a.qmp, { timeoutMs: MIGRATE_TIMEOUT_MS, onProgress: (p) => { samples.push(p) } })
    const [sent, received] = await Promise.all([done, accepted])
    await until(async () => await runState(b.qmp) === 'running', 10_000, 'target running')
    assert.is(await runState(a.qmp), 'postmigrate')
    assert.ok(sent.sentBytes >= viaStream.transferredBytes, `the stream carried ${sent.sentBytes} bytes, QEMU sent ${viaStream.transferredBytes} of RAM`)
    assert.is(received.receivedBytes, sent.sentBytes, 'every byte the source wrote reached the target QEMU')
    const active = samples.filter((p) => p.status === 'active')
    assert.ok(active.some((p) => p.remainingBytes > 0 && p.expectedDowntimeMs != null), 'progress showed remaining bytes and an expected downtime')

    // the guest kept running: its counter goes on on the target, from where it was, not from 0
    const lastOnA = Math.max(...ticks(await readFile(a.serialLog, 'utf8')))
    const onB = await waitForText(b.serialLog, (t) => { const xs = ticks(t); return xs.length >= 5 ? xs : null }, { timeoutMs: 20_000 })
    assert.ok(onB[0] > 0 && onB[0] <= lastOnA + 2, `the counter continued: last ${lastOnA} on the source, first ${onB[0]} on the target`)
    assert.ok(onB.every((x, i) => i === 0 || x === onB[i - 1] + 1), `the counter counts on: ${onB.join(',')}`)

    // direct: the same guest from b into c over a loopback unix socket, no libp2p
    a.child.kill('SIGKILL')
    const c = await launch('c', (dir) => `unix:${join(dir, 'in.sock')}`)
    await startMigration(b.qmp, c.incomingUri ?? '')
    const direct = await waitForMigration(b.qmp, { timeoutMs: MIGRATE_TIMEOUT_MS })
    await until(async () => await runState(c.qmp) === 'running', 10_000, 'direct target running')
    const lastOnB = Math.max(...ticks(await readFile(b.serialLog, 'utf8')))
    const onC = await waitForText(c.serialLog, (t) => { const xs = ticks(t); return xs.length >= 2 ? xs : null }, { timeoutMs: 20_000 })
    assert.ok(onC[0] > lastOnA && onC[0] <= lastOnB + 2, `the counter continued on c: ${lastOnB} → ${onC[0]}`)

    // cancel: c migrates into a socket nobody reads, stalls, is cancelled and keeps the guest running
    const sink = createServer({ pauseOnConnect: true }, () => {})
    const sinkPath = join(c.dir, 'sink.sock')
    await new Promise<void>((resolve) => { sink.listen(sinkPath, resolve) })
    await startMigration(c.qmp, `unix:${sinkPath}`)
    await until(async () => (await queryMigrate(c.qmp)).status === 'active', 10_000, 'migration into the sink active')
    await cancelMigration(c.qmp)
    await until(async () => (await queryMigrate(c.qmp)).status === 'cancelled', 10_000, 'migration cancelled')
    assert.is(await runState(c.qmp), 'running', 'a cancelled migration leaves the guest running on its source')
    sink.close()

    console.log(`  via libp2p stream: ${figures(viaStream)}; stream ${sent.sentBytes} bytes in ${sent.durationMs.toFixed(0)} ms, ${sent.pauses + received.pauses} backpressure pauses`)
    console.log(`  direct unix socket: ${figures(direct)}`)
    console.log(`  ratio total-time stream/direct: ${((viaStream.totalTimeMs ?? 0) / (direct.totalTimeMs ?? 1)).toFixed(2)}`)
    // generous bounds: a loaded 2-core machine, TCG
    for (const p of [viaStream, direct]) {
      assert.ok(p.downtimeMs != null && p.downtimeMs < 5_000, `downtime ${p.downtimeMs} ms`)
      assert.ok(p.totalTimeMs != null && p.totalTimeMs < MIGRATE_TIMEOUT_MS, `total ${p.totalTimeMs} ms`)
    }
  } finally {
    for (const q of procs) { q.child.kill('SIGKILL'); await q.qmp.close().catch(() => {}) }
    for (const s of streams) await s.stop()
    await Promise.all([src, dst, intruder].map(async (h) => { await h.stop() }))
    for (const q of procs) await rm(q.dir, { recursive: true, force: true })
  }
})

test.run()
