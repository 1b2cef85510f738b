// Live migration across hosts on the VXLAN overlay (issue 15 item 4), with real parts: three
// network namespaces stand in for hosts A, B and C on one underlay switch (10.83.1.0/24), each
// with the product's VXLAN network (node/net-host: bridge + VXLAN device + flood list). A tiny
// guest G (10.63.0.2) runs on A; a guest P on C pings G without end (blix.pingloop). G then moves
// live from A to B the way the product moves it: B's QEMU listens with TLS-PSK on B's underlay
// address (not loopback), A's QEMU migrates to it over the underlay (multifd channels, as the product does), then B's QEMU announces the
// guest (announce-self) and A's QEMU and TAP go. What must show: P's pings to G resume on B (the
// network learned the new place: C's bridge now sends G's MAC over the VXLAN to B, not to A), G's
// heartbeat counter goes on (no reboot), and G kept its MAC and address (same TAP name and MAC on B).
// Namespaces are prefixed mo<pid>, torn down always.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NetnsSwitch } from '../cluster/netns-switch.ts'
import { until } from '../net/helpers.ts'
import { HostNet, type VmNic } from '../../node/net-host/host-net.ts'
import { vxlanName } from '../../node/net-host/names.ts'
import { buildQemuArgv, tscKhzFromCpuinfo } from '../../node/qemu/cmdline.ts'
import { buildTinyGuest, parseHeartbeats, parsePongs, parseReadyMarker, tinyGuestBoot, type TinyGuest, type TinyGuestParams } from '../../node/qemu/tiny-guest.ts'
import { QmpClient } from '../../node/qemu/qmp.ts'
import { announceSelf, incomingArgs, runState, setMigrationParameters, waitForMigration } from '../../node/qemu/migrate.ts'
import { DEFAULT_MULTIFD_CHANNELS, PSK_IDENTITY, credsId, hostTlsPriority, listenTls, migrateTls, newPsk, removePskDir, writePskDir } from '../../node/migration/tls.ts'

const MEMORY_MIB = 96
const HEARTBEAT_MS = 100
const BOOT_WAIT_MS = 120_000
/** how long after the switchover P's pings to G may stay unanswered: the announcement goes out
 * within 50 ms; a loaded test machine needs some seconds to run three TCG guests */
const RESUME_WAIT_MS = 30_000
/** P's ping loop tries every 200 ms (build-tiny-guest.sh) */
const PING_TRY_MS = 200
const VNI = 4343
const G_IP = '10.63.0.2'
const P_IP = '10.63.0.3'
const tag = `mo${process.pid % 100000}`
const sw = new NetnsSwitch(tag, '10.83.1')
const root = mkdtempSync(join(tmpdir(), 'blx-movl-'))
const tscKhz = tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'))
const rec = { name: 'movenet', kind: { type: 'vxlan' as const, vni: VNI } }

interface Host { ns: string, ip: string, net: HostNet }
interface Guest { name: string, dir: string, child: ChildProcess, qmp: QmpClient, serialLog: string }
const guests: Guest[] = []
let guest: TinyGuest

const hosts: Host[] = ['a', 'b', 'c'].map((h, i) => {
  const ns = `${tag}${h}`
  const ip = sw.addr(i + 1)
  return { ns, ip, net: new HostNet({ netns: ns, underlayIp: ip }) }
})
const [A, B, C] = hosts

function leaveNothing (): void {
  for (const g of guests) g.child.kill('SIGKILL')
  sw.teardown()
  rmSync(root, { recursive: true, force: true })
}
process.on('exit', leaveNothing)

const consoleOf = (g: Guest): string => { try { return readFileSync(g.serialLog, 'utf8') } catch { return '' } }

/** A tiny guest's QEMU inside a host's namespace, on `nic` (its TAP there). */
async function launch (name: string, host: Host, nic: VmNic, params: TinyGuestParams, incoming: boolean): Promise<Guest> {
  const dir = join(root, name)
  rmSync(dir, { recursive: true, force: true })
  execFileSync('mkdir', ['-p', dir])
  const serialLog = join(dir, 'serial.log')
  const qmpSock = join(dir, 'qmp.sock')
  const { binary, args } = buildQemuArgv(
    { vmId: params.hostname ?? name, vcpus: 1, memoryMiB: MEMORY_MIB, boot: tinyGuestBoot(guest, params), nics: [{ tap: nic.tap, mac: nic.mac }] },
    { accel: 'tcg', tscKhz }, { serialSock: join(dir, 'serial.sock'), serialLog, qmpSock })
  // `ip netns exec` execs QEMU: the child is QEMU itself, its TAP and its sockets in the host's namespace
  const child = spawn('ip', ['netns', 'exec', host.ns, binary, ...args, ...(incoming ? incomingArgs('defer') : [])], { stdio: ['ignore', 'ignore', 'inherit'] })
  const qmp = await QmpClient.connect(qmpSock, { timeoutMs: 10_000 })
  const g = { name, dir, child, qmp, serialLog }
  guests.push(g)
  return g
}

test.before(async () => {
  guest = await buildTinyGuest()
  sw.up()
  for (const [i, h] of hosts.entries()) sw.attach(h.ns, `${tag}p${i}`, i + 1)
  for (const h of hosts) await h.net.ensureNetwork(rec, hosts.filter((o) => o !== h).map((o) => o.ip))
})

test.after(() => { leaveNothing() })

test('a guest moved live from A to B over the underlay keeps its address: pings from a guest on C resume, C\'s bridge sends to B', async () => {
  const t0 = Date.now()
  const gNicA = await A.net.ensureTap('vm-mv', 0, rec)
  const gNicB = await B.net.ensureTap('vm-mv', 0, rec)
  // the VM's interface is the same on every host: same TAP name, same MAC (names.ts derives both from the id)
  assert.equal([gNicB.tap, gNicB.mac], [gNicA.tap, gNicA.mac])
  const pNic = await C.net.ensureTap('vm-pg', 0, rec)
  const gParams = { hostname: 'vm-mv', ip: `${G_IP}/24`, heartbeatMs: HEARTBEAT_MS }
  const src = await launch('g-src', A, gNicA, gParams, false)
  const pinger = await launch('pinger', C, pNic, { hostname: 'vm-pg', ip: `${P_IP}/24`, pingLoop: G_IP }, false)
  await until(() => parseReadyMarker(consoleOf(src)) != null && parseReadyMarker(consoleOf(pinger)) != null, BOOT_WAIT_MS, 'both guests up')
  await until(() => parsePongs(consoleOf(pinger), G_IP).length >= 3, BOOT_WAIT_MS, 'P\'s pings answered by G on A')
  const fdb = (): string => execFileSync('bridge', ['-n', C.ns, 'fdb', 'show', 'dev', vxlanName(VNI)], { encoding: 'utf8' })
  // the VXLAN device's own entry for G's MAC (`self`, with the underlay address it sends to)
  const gOnC = (): string | undefined => fdb().split('\n').find((l) => l.startsWith(gNicA.mac) && l.includes(' dst '))
  assert.match(gOnC() ?? '', new RegExp(`dst ${A.ip.replace(/\./g, '\\.')}`), `C learned G behind A: ${fdb()}`)

  // the target listens on B's own underlay address, TLS with a fresh key; A's QEMU migrates there
  const dst = await launch('g-dst', B, gNicB, gParams, true)
  const key = newPsk()
  const pskDir = await writePskDir(dst.dir, PSK_IDENTITY, key)
  // the product's defaults: multifd channels, AES-GCM first where the CPU has AES-NI
  const multifd = DEFAULT_MULTIFD_CHANNELS
  const priority = hostTlsPriority()
  const port = await listenTls(dst.qmp, { host: B.ip, pskDir, credsId: credsId(), multifd, priority })
  await setMigrationParameters(src.qmp, {})
  await migrateTls(src.qmp, { host: B.ip, port, identity: PSK_IDENTITY, key, multifd }, { keyParent: src.dir, credsId: credsId(), priority })
  const p = await waitForMigration(src.qmp, { pollMs: 20, timeoutMs: 60_000 })
  assert.is(p.status, 'completed')
  await removePskDir(pskDir)
  const lastTry = Math.max(...parsePongs(consoleOf(pinger), G_IP))
  const lastBeat = Math.max(...parseHeartbeats(consoleOf(src)))
  await until(async () => await runState(dst.qmp) === 'running', 10_000, 'G running on B')
  // what the product does at switchover (node/migration/service.ts): the target announces the
  // guest, the source's QEMU quits and its TAP goes
  await announceSelf(dst.qmp)
  src.child.kill('SIGKILL')
  await A.net.removeTap(gNicA.tap)

  await until(() => parsePongs(consoleOf(pinger), G_IP).filter((n) => n > lastTry).length >= 3, RESUME_WAIT_MS, 'P\'s pings answered again, by G on B')
  const tries = parsePongs(consoleOf(pinger), G_IP)
  const firstAfter = tries.find((n) => n > lastTry) ?? NaN
  // C's bridge learned G's MAC behind B's underlay address: the traffic goes to the new host
  assert.match(gOnC() ?? '', new RegExp(`dst ${B.ip.replace(/\./g, '\\.')}`), `C learned G behind B: ${fdb()}`)
  // the guest was not rebooted: its counter goes on from where it was on A
  await until(() => parseHeartbeats(consoleOf(dst)).length >= 3, 20_000, 'heartbeats on B')
  const firstBeat = parseHeartbeats(consoleOf(dst))[0]
  assert.ok(firstBeat > 1 && firstBeat <= lastBeat + 2, `the counter went on: ${lastBeat} on A, ${firstBeat} first on B`)
  assert.match(execFileSync('ip', ['-n', B.ns, 'link', 'show', gNicB.tap], { encoding: 'utf8' }), new RegExp(`master ${gNicB.bridge}`))
  console.log(`  overlay move A → B: QEMU total ${p.totalTimeMs} ms, downtime ${p.downtimeMs} ms, ${(p.transferredBytes / 1048576).toFixed(1)} MiB over ${B.ip} on ${multifd} multifd channels; P's pings: last answer on A at try ${lastTry}, first on B at try ${firstAfter} (${firstAfter - lastTry - 1} tries unanswered, ~${(firstAfter - lastTry) * PING_TRY_MS} ms); ${((Date.now() - t0) / 1000).toFixed(1)} s in all`)
  for (const g of [dst, pinger]) { g.child.kill('SIGKILL'); await g.qmp.close().catch(() => {}) }
  await src.qmp.close().catch(() => {})
})

test.run()
