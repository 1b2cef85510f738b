// The tls transport of live migration with real parts: two libp2p hosts on 127.0.0.1 (cluster key,
// Noise) hand over a fresh key and the port, and two real tiny-guest QEMUs under TCG migrate over
// their own TCP with TLS-PSK (node/migration/tls.ts). A source with a wrong key gets nothing (the
// guest runs on where it was); one with the key from the handshake moves it, and the heartbeat goes
// on. The handshake refuses a stranger and a source asking for the other transport; a target
// daemon that goes away shows as a lost control stream on the source.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { testHost, until } from '../net/helpers.ts'
import { buildQemuArgv, tscKhzFromCpuinfo } from '../../node/qemu/cmdline.ts'
import { buildTinyGuest, parseHeartbeats, parseReadyMarker, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { waitForText } from '../../node/qemu/file-tail.ts'
import { QmpClient } from '../../node/qemu/qmp.ts'
import { incomingArgs, queryMigrate, runState, setMigrationParameters, waitForMigration } from '../../node/qemu/migrate.ts'
import { MigrationStreams, MigrationStreamError } from '../../node/migration/stream.ts'
import { AES_FIRST_PRIORITY, DEFAULT_MULTIFD_CHANNELS, PSK_IDENTITY, clearTls, credsId, hostTlsPriority, listenTls, migrateTls, migrationAddress, newPsk, parseTlsOffer, tcpUri, tlsPriorityFor, writePskDir } from '../../node/migration/tls.ts'
import { multifdFromEnv } from '../../node/migration/service.ts'

const MEMORY_MIB = 96
const HEARTBEAT_MS = 100

interface Qemu { dir: string, child: ChildProcess, qmp: QmpClient, serialLog: string }
const procs: Qemu[] = []
process.on('exit', () => { for (const q of procs) q.child.kill('SIGKILL') })
let guest: TinyGuest

async function launch (name: string, defer: boolean): Promise<Qemu> {
  const dir = await mkdtemp(join(tmpdir(), `blx-mtls-${name}-`))
  const serialLog = join(dir, 'serial.log')
  const qmpSock = join(dir, 'qmp.sock')
  const tscKhz = tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'))
  const { binary, args } = buildQemuArgv(
    { vmId: 'mtls', vcpus: 1, memoryMiB: MEMORY_MIB, boot: tinyGuestBoot(guest, { hostname: 'mtls', heartbeatMs: HEARTBEAT_MS }) },
    { accel: 'tcg', tscKhz }, { serialSock: join(dir, 'serial.sock'), serialLog, qmpSock })
  const child = spawn(binary, [...args, ...(defer ? incomingArgs('defer') : [])], { stdio: ['ignore', 'ignore', 'inherit'] })
  const qmp = await QmpClient.connect(qmpSock, { timeoutMs: 10_000 })
  const q = { dir, child, qmp, serialLog }
  procs.push(q)
  return q
}

test('a peer\'s offer is checked field by field; addresses are IPs, never names', () => {
  const key = newPsk()
  // an older target's offer names no multifd: one stream
  assert.equal(parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key }), { host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key, multifd: 0 })
  assert.equal(parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key, multifd: 2 }).multifd, 2)
  assert.throws(() => parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key, multifd: 99 }), /multifd must be an integer 0\.\.8: 99/)
  assert.throws(() => parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key, multifd: '2' }), /multifd must be an integer/)
  assert.is(multifdFromEnv({}), DEFAULT_MULTIFD_CHANNELS)
  assert.is(multifdFromEnv({ BLIXARD_MIGRATION_MULTIFD: '0' }), 0)
  assert.throws(() => multifdFromEnv({ BLIXARD_MIGRATION_MULTIFD: 'two' }), /BLIXARD_MIGRATION_MULTIFD must be an integer 0\.\.8/)
  // AES-GCM first where the CPU has AES-NI and carry-less multiply, QEMU's default elsewhere
  assert.is(tlsPriorityFor('processor\t: 0\nflags\t\t: fpu sse2 aes avx pclmulqdq\n'), AES_FIRST_PRIORITY)
  assert.is(tlsPriorityFor('flags\t\t: fpu sse2 avx\n'), undefined)
  assert.is(tlsPriorityFor(''), undefined)
  assert.throws(() => parseTlsOffer({ host: 'evil.example', port: 4444, identity: PSK_IDENTITY, key }), /host must be an IP address/)
  assert.throws(() => parseTlsOffer({ host: '10.0.0.2', port: 0, identity: PSK_IDENTITY, key }), /port must be an integer/)
  assert.throws(() => parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: 'a,b', key }), /identity must match/)
  assert.throws(() => parseTlsOffer({ host: '10.0.0.2', port: 4444, identity: PSK_IDENTITY, key: 'x' }), /key must be 64 hex/)
  assert.is(tcpUri('::1', 5), 'tcp:[::1]:5')
  // the node's own address, as its peers reach it: not loopback when it has another, never a wildcard
  assert.is(migrationAddress([multiaddr('/ip4/127.0.0.1/tcp/1'), multiaddr('/ip4/10.77.0.2/tcp/1')]), '10.77.0.2')
  assert.is(migrationAddress([multiaddr('/ip4/0.0.0.0/tcp/1'), multiaddr('/ip4/127.0.0.1/tcp/1')]), '127.0.0.1')
  assert.is(migrationAddress([]), null)
})

test('handshake: the named source gets the offer; a stranger and the other transport are refused; a target gone shows', async () => {
  const src = await testHost()
  const dst = await testHost()
  const stranger = await testHost()
  const dstStreams = new MigrationStreams(dst)
  await dstStreams.start()
  const srcStreams = new MigrationStreams(src)
  const strangerStreams = new MigrationStreams(stranger)
  try {
    for (const h of [src, stranger]) await h.dial(dst.getMultiaddrs()[0])
    const offer = { host: '127.0.0.1', port: 4444, identity: PSK_IDENTITY, key: newPsk(), multifd: 2 }
    const answered = dstStreams.expect({ id: 'm1', allow: (p) => p.equals(src.peerId), offer: async () => offer, timeoutMs: 20_000 })
    answered.catch(() => {})
    const refused = await strangerStreams.handshakeTls({ id: 'm1', peer: dst.peerId }).then(() => null, (e: unknown) => e)
    assert.ok(refused instanceof MigrationStreamError && refused.kind === 'Refused', String(refused))
    assert.match((refused as Error).message, /may not open migration m1/)
    const wrong = await srcStreams.send({ id: 'm1', peer: dst.peerId, listenSocket: join(tmpdir(), `blx-mtls-${process.pid}.sock`) })
    const wrongEnd = await wrong.done.then(() => null, (e: unknown) => e)
    assert.match(String(wrongEnd), /asked for transport "stream"; this target prepared tls/)
    // the refusals did not use up the expectation: the named source still gets its offer
    const hs = await srcStreams.handshakeTls({ id: 'm1', peer: dst.peerId })
    assert.equal(hs.offer, offer)
    await answered
    assert.is(hs.lost(), null, 'the control stream stays open while QEMU migrates')
    await dst.stop()
    await until(() => hs.lost() != null, 10_000, 'the source sees the target gone')
    assert.match(hs.lost() ?? '', /control stream/)
  } finally {
    await dstStreams.stop().catch(() => {})
    await Promise.allSettled([src, dst, stranger].map(async (h) => { await h.stop() }))
  }
})

test('QEMU over its own TLS on multifd channels (the default): a wrong key moves nothing; the key from the handshake moves the guest, which counts on', async () => {
  guest = await buildTinyGuest()
  const src = await launch('src', false)
  const dst = await launch('dst', true)
  try {
    await waitForText(src.serialLog, parseReadyMarker, { timeoutMs: 90_000 })
    await until(() => parseHeartbeats(readFileSync(src.serialLog, 'utf8')).length >= 3, 20_000, 'heartbeats on the source')
    const key = newPsk()
    const pskDir = await writePskDir(dst.dir, PSK_IDENTITY, key)
    // the key's file: 0600 in a 0700 directory of its own
    assert.is((await stat(pskDir)).mode & 0o777, 0o700)
    assert.is((await stat(join(pskDir, 'keys.psk'))).mode & 0o777, 0o600)
    assert.is(await readFile(join(pskDir, 'keys.psk'), 'utf8'), `${PSK_IDENTITY}:${key}\n`)
    const multifd = DEFAULT_MULTIFD_CHANNELS
    const priority = hostTlsPriority()
    const port = await listenTls(dst.qmp, { host: '127.0.0.1', pskDir, credsId: credsId(), multifd, priority })
    await setMigrationParameters(src.qmp, {})

    // someone who reached the port without the key: the TLS handshake fails, the guest stays
    const bad = credsId()
    await migrateTls(src.qmp, { host: '127.0.0.1', port, identity: PSK_IDENTITY, key: newPsk(), multifd }, { keyParent: src.dir, credsId: bad, priority })
    const failed = await waitForMigration(src.qmp, { pollMs: 20, timeoutMs: 30_000 }).then(() => null, (e: unknown) => e)
    assert.match(String(failed), /migration failed/)
    assert.is(await runState(src.qmp), 'running')
    // nothing reached the target: it still waits for a migration, no byte of memory counted
    assert.is(await runState(dst.qmp), 'inmigrate')
    await clearTls(src.qmp, bad)

    // the right key: the move completes, the target runs the guest, its counter continues
    const good = credsId()
    await migrateTls(src.qmp, { host: '127.0.0.1', port, identity: PSK_IDENTITY, key, multifd }, { keyParent: src.dir, credsId: good, priority })
    const p = await waitForMigration(src.qmp, { pollMs: 20, timeoutMs: 60_000 })
    assert.is(p.status, 'completed')
    const last = Math.max(...parseHeartbeats(readFileSync(src.serialLog, 'utf8')))
    await until(async () => await runState(dst.qmp) === 'running', 10_000, 'target running')
    await until(() => parseHeartbeats(readFileSync(dst.serialLog, 'utf8')).length >= 3, 20_000, 'heartbeats on the target')
    const first = parseHeartbeats(readFileSync(dst.serialLog, 'utf8'))[0]
    assert.ok(first > 1 && first <= last + 2, `the counter went on: ${last} on the source, ${first} first on the target`)
    assert.is((await queryMigrate(dst.qmp)).status, 'completed')
    // the move went over the multifd channels: QEMU counts the bytes they carried
    assert.ok(p.multifdBytes > 32 * 1048576, `multifd carried the pages: ${p.multifdBytes}`)
    console.log(`  TLS-PSK migration of ${MEMORY_MIB} MiB on ${multifd} multifd channels (priority ${priority ?? 'QEMU default'}): total ${p.totalTimeMs} ms, downtime ${p.downtimeMs} ms, ${(p.transferredBytes / 1048576).toFixed(1)} MiB`)
  } finally {
    for (const q of [src, dst]) { q.child.kill('SIGKILL'); await q.qmp.close().catch(() => {}); await rm(q.dir, { recursive: true, force: true }) }
  }
})

test.run()
