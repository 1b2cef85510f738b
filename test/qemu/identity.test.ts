// A clone's new identity without a reboot: guest A (on a TAP in a bridge in a network namespace this
// test makes) is saved to a file and keeps running; a second QEMU with A's devices but its own TAP and
// MAC resumes from that state, then is told its identity on the serial console (identityLine: the
// tiny guest's blix-identity). It reports the new hostname, address and MAC, and both guests answer
// ping from the namespace, each at its own address, the clone with its new MAC in the namespace's
// neighbour table. About 40 s under TCG.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver, type QemuLaunchSpec } from '../../node/qemu/driver.ts'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { buildTinyGuest, identityLine, parseIdentities, parseReadyMarker, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { loadState, saveState } from '../../node/qemu/snapshot.ts'
import { writeSerial } from '../../node/console-proxy.ts'
import { silentLogger } from '../../node/log.ts'
import { waitFor } from '../cluster/harness.ts'

const NS = `blxid${process.pid % 100000}`
const dataDir = mkdtempSync(join(tmpdir(), 'blx-ident-'))
const A = 'ident-a'
const B = 'ident-b'
const MAC_A = '02:b1:00:00:0a:01'
const MAC_B = '02:b1:00:00:0b:02'
let guest: TinyGuest
let d: QemuDriver
const ip = (...a: string[]): string => execFileSync('ip', a, { stdio: 'pipe' }).toString()
const serial = (vm: string): string => { try { return readFileSync(runtimePaths(dataDir, vm).serialLog, 'utf8') } catch { return '' } }
const ping = (addr: string): string => {
  try { return execFileSync('ip', ['netns', 'exec', NS, 'busybox', 'ping', '-c', '3', '-W', '2', addr], { stdio: 'pipe', timeout: 30_000 }).toString() } catch (e) { return String((e as { stdout?: Buffer }).stdout ?? e) }
}

test.before(async () => {
  guest = await buildTinyGuest()
  ip('netns', 'add', NS)
  ip('-n', NS, 'link', 'set', 'lo', 'up')
  ip('-n', NS, 'link', 'add', 'br0', 'type', 'bridge')
  ip('-n', NS, 'addr', 'add', '10.77.12.1/24', 'dev', 'br0')
  ip('-n', NS, 'link', 'set', 'br0', 'up')
  for (const t of ['blxi-a', 'blxi-b']) {
    ip('-n', NS, 'tuntap', 'add', 'dev', t, 'mode', 'tap')
    ip('-n', NS, 'link', 'set', t, 'master', 'br0')
    ip('-n', NS, 'link', 'set', t, 'up')
  }
  d = new QemuDriver({ dataDir, accel: 'tcg', log: silentLogger, spawnPrefix: ['ip', 'netns', 'exec', NS], network: { async removeTap () {} } })
})
test.after(async () => {
  for (const vm of [A, B]) await d.cleanup(vm).catch(() => {})
  await d.close()
  try { execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }) } catch {}
  rmSync(dataDir, { recursive: true, force: true })
})

test('a guest resumed from another\'s memory takes its own hostname, address and MAC; both answer at their own address', async () => {
  const spec: QemuLaunchSpec = { vmId: A, generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', nics: [{ tap: 'blxi-a', mac: MAC_A }], boot: tinyGuestBoot(guest, { hostname: A, ip: '10.77.12.2/24', gw: '10.77.12.1' }) }
  await d.start(spec)
  await d.waitForEvent(A, (e) => e.type === 'running', 150_000)
  assert.equal(parseReadyMarker(serial(A)), { hostname: A, ip: '10.77.12.2' })
  const file = join(dataDir, 'state.bin')
  await saveState(await d.qmp(A), file, join(dataDir, 'save.sock'))

  // the clone: A's devices, its own TAP and MAC, A's memory
  const sock = join(runtimePaths(dataDir, B).dir, 'restore.sock')
  const t0 = Date.now()
  await d.start({ ...spec, vmId: B, nics: [{ tap: 'blxi-b', mac: MAC_B }], readiness: 'qmp', incoming: sock })
  await loadState(async () => await d.qmp(B), file, sock)
  await writeSerial(runtimePaths(dataDir, B).serialSock, Buffer.from(identityLine({ hostname: B, ip: '10.77.12.3/24', gw: '10.77.12.1', mac: MAC_B })), B)
  const id = await waitFor('the clone\'s new identity on its console', 30_000, () => parseIdentities(serial(B))[0] ?? null)
  console.log(`  resume + identity ${Date.now() - t0} ms: ${JSON.stringify(id)}`)
  assert.equal(id, { hostname: B, ip: '10.77.12.3', mac: MAC_B })

  for (const addr of ['10.77.12.2', '10.77.12.3']) assert.match(ping(addr), /3 packets transmitted, 3 packets received/, `ping ${addr}`)
  assert.match(ip('-n', NS, 'neigh', 'show', '10.77.12.3'), new RegExp(`lladdr ${MAC_B}`), 'the clone answers with its own MAC')
  assert.match(ip('-n', NS, 'neigh', 'show', '10.77.12.2'), new RegExp(`lladdr ${MAC_A}`), 'the original keeps its own')
})

test('identityLine: one word per field, a MAC of six hex pairs, else InvalidSpec', () => {
  assert.is(identityLine({ hostname: 'b', ip: null, gw: null, mac: null }), 'blix-identity b none none none\n')
  for (const bad of [{ hostname: 'a b' }, { hostname: 'x;reboot' + ' y' }, { mac: '02:b1:00:00:0b' }, { mac: 'zz:b1:00:00:0b:02' }, { ip: '10.0.0.1/24\npoweroff' }]) {
    assert.throws(() => identityLine({ hostname: 'b', ip: null, gw: null, mac: null, ...bad }), /must be/)
  }
})

test.run()
