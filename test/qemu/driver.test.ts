// The QEMU driver with real guests (the tiny guest; TCG where KVM is unusable):
// boot to the ready marker, graceful stop, crash detection, re-adoption after a
// daemon restart, cleanup, and a guest on a TAP in a bridge in a network namespace.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { QemuDriver, type QemuLaunchSpec, type VmEvent } from '../../node/qemu/driver.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { probeKvm, resetKvmProbe } from '../../node/qemu/kvm-probe.ts'
import { bareBoot } from '../../node/qemu/bare-boot.ts'
import { readCmdline } from '../../node/qemu/proc.ts'
import { buildTinyGuest, parseDiskBoots, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { tscKhzFromCpuinfo, type Accel } from '../../node/qemu/cmdline.ts'
import { createLogger, silentLogger } from '../../node/log.ts'

const run = promisify(execFile)
/** a TCG boot takes 2-3 s on an idle host; shared CI machines can be many times slower */
const BOOT_WAIT_MS = 150_000
const dataDir = mkdtempSync(join(tmpdir(), 'blx-qemu-'))
const NS = `blxq${process.pid % 100000}`
let guest: TinyGuest
let accel: Accel
const drivers: QemuDriver[] = []
const t0 = Date.now()

function driver (extra: Partial<ConstructorParameters<typeof QemuDriver>[0]> = {}): QemuDriver {
  const log = process.env.BLIXARD_TEST_LOG != null ? createLogger({ driver: drivers.length }) : silentLogger
  const d = new QemuDriver({ dataDir, accel, stopTimeoutMs: 20_000, log, ...extra })
  drivers.push(d)
  return d
}

function record (d: QemuDriver): VmEvent[] {
  const out: VmEvent[] = []
  d.onEvent((e) => out.push(e))
  return out
}

function spec (vmId: string, extra: Partial<QemuLaunchSpec> = {}, params: Parameters<typeof tinyGuestBoot>[1] = {}): QemuLaunchSpec {
  return { vmId, generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: vmId, ...params }), ...extra }
}

/** live qemu processes whose command line points into this test's data dir */
function ourQemus (): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8')
      if (cmd.startsWith('qemu-system') && cmd.includes(dataDir)) out.push(Number(name))
    } catch {}
  }
  return out
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return (readFileSync(`/proc/${pid}/cmdline`, 'utf8')) !== '' } catch { return false }
}

async function until (what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test.before(async () => {
  const built = await buildTinyGuest()
  guest = built
  console.log(`  tiny guest: ${built.output}`)
})

test('KVM probe: a real test boot decides; the result is cached per process', async () => {
  resetKvmProbe()
  const fake = await probeKvm({ ...guest, devKvm: '/nonexistent/kvm' })
  assert.is(fake.accel, 'tcg')
  assert.match(fake.reason ?? '', /\/nonexistent\/kvm not usable \(ENOENT\)/)
  resetKvmProbe()
  const logged: string[] = []
  const log = { debug () {}, info (m: string) { logged.push(m) }, warn (m: string) { logged.push(m) }, error () {}, child () { return log } }
  const r = await probeKvm({ ...guest, log })
  accel = r.accel
  if (r.accel === 'tcg') {
    assert.ok(r.reason != null && r.reason.length > 0)
    assert.equal(logged, [`KVM unusable: ${r.reason ?? ''}; using TCG`])
  } else assert.is(r.reason, null)
  console.log(`  accelerator: ${r.accel}${r.reason != null ? ` — KVM unusable: ${r.reason}` : ''} (probe ${r.ms} ms)`)
  const again = await probeKvm({ ...guest, devKvm: '/nonexistent/kvm' })
  assert.is(again, r, 'second call returns the cached result')
  assert.is(logged.length, 1, 'logged once')
})

// shared by the first tests: one guest booted, followed, stopped, restarted, killed
const A = 'vm-a'
let d1: QemuDriver
let events1: VmEvent[]
let follow: Promise<string>

test('boot: starting → running on the ready marker in serial.log', async () => {
  d1 = driver()
  events1 = record(d1)
  const disk = join(dataDir, 'a-disk.img')
  writeFileSync(disk, '')
  truncateSync(disk, 8 * 1024 * 1024)
  const running = d1.waitForEvent(A, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS)
  const tb = Date.now()
  const { pid, accel: used } = await d1.start(spec(A, { generation: 3, drives: [{ kind: 'file', path: disk }] }, { ip: '10.99.0.2/24', disk: true }))
  assert.is(used, accel)
  const e = await running
  console.log(`  ${A}: spawn to running ${Date.now() - tb} ms`)
  assert.equal(e, { type: 'running', vmId: A, generation: 3, pid, ip: '10.99.0.2', adopted: false })
  assert.equal(events1.map((x) => x.type), ['starting', 'running'])
  const log = readFileSync(join(dataDir, 'vms', A, 'serial.log'), 'utf8')
  assert.match(log, /BLIXARD-GUEST-UP vm-a 10\.99\.0\.2 /)
  assert.is(parseDiskBoots(log), 1)
  const st = await d1.status(A)
  assert.ok(st.state === 'running' && st.pid === pid && st.ready && st.generation === 3)
  assert.equal(JSON.parse(readFileSync(join(dataDir, 'vms', A, 'qemu.pid'), 'utf8')), pid)
  const spec0 = JSON.parse(readFileSync(join(dataDir, 'vms', A, 'spec.json'), 'utf8')) as { argv: string[] }
  assert.equal(await readCmdline(pid), spec0.argv, 'spec.json records the exact argv')
  // logs: whole console now; follow keeps going until the guest ends
  let whole = ''
  for await (const chunk of d1.logs(A)) whole += chunk
  assert.match(whole, /BLIXARD-GUEST-UP/)
  follow = (async () => { let s = ''; for await (const c of d1.logs(A, { follow: true, tailBytes: 10 })) s += c; return s })()
  try { await d1.start(spec(A)); assert.unreachable('second start') } catch (err) {
    assert.instance(err, QemuError)
    assert.is((err as QemuError).kind, 'AlreadyRunning')
  }
  assert.equal(ourQemus(), [pid], 'exactly one qemu')
})

test('graceful stop: ACPI power-down, qemu exits 0, status stopped, follow ends with the power-off line', async () => {
  const before = await d1.status(A)
  assert.is(before.state, 'running')
  const pid = before.state === 'running' ? before.pid : -1
  const ts = Date.now()
  const exit = await d1.stop(A)
  console.log(`  ${A}: graceful stop ${Date.now() - ts} ms`)
  assert.is(exit.code, 0)
  assert.is(exit.signal, null)
  assert.is(exit.outcome, 'stopped')
  assert.is(exit.shutdownReason, 'guest-shutdown')
  assert.not.ok(alive(pid))
  const st = await d1.status(A)
  assert.is(st.state, 'stopped')
  assert.equal(events1.slice(2).map((x) => x.type), ['stopping', 'stopped'])
  const tail = await follow
  assert.match(tail, /BLIXARD-GUEST-POWEROFF/)
  assert.not.match(tail, /BLIXARD-GUEST-UP/, 'tailBytes skipped the start')
  for (const f of ['qmp.sock', 'serial.sock', 'qemu.pid']) assert.not.ok(existsSync(join(dataDir, 'vms', A, f)), f)
  try { await d1.stop(A); assert.unreachable() } catch (err) { assert.is((err as QemuError).kind, 'NotRunning') }
})

test('restart keeps the disk; a new driver adopts it; kill -9 of the adopted qemu → failed', async () => {
  const running = d1.waitForEvent(A, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS)
  const { pid } = await d1.start(spec(A, { generation: 4, drives: [{ kind: 'file', path: join(dataDir, 'a-disk.img') }] }, { disk: true }))
  assert.is((await running).type, 'running')
  assert.is(parseDiskBoots(readFileSync(join(dataDir, 'vms', A, 'serial.log'), 'utf8')), 2, 'the boot counter survived on the disk')
  assert.match(readFileSync(join(dataDir, 'vms', A, 'serial.log.1'), 'utf8'), /BLIXARD-GUEST-POWEROFF/, 'previous console kept')
  await d1.close() // the daemon goes away; the guest stays
  assert.ok(alive(pid))
  const d2 = driver({ livenessPollMs: 200 })
  const ev = record(d2)
  const st = await d2.status(A)
  assert.ok(st.state === 'running' && st.pid === pid && st.generation === 4, JSON.stringify(st))
  await until('adopted running event', 5000, () => ev.some((e) => e.type === 'running'))
  const failed = d2.waitForEvent(A, (e) => e.type === 'failed' || e.type === 'stopped', 10_000)
  const tk = Date.now()
  process.kill(pid, 'SIGKILL')
  const e = await failed
  console.log(`  ${A}: crash of an adopted qemu seen after ${Date.now() - tk} ms`)
  assert.is(e.type, 'failed')
  assert.match(e.type === 'failed' ? e.reason : '', /status unknown/, 'not our child: no wait status')
  assert.is((await d2.status(A)).state, 'crashed')
  // a fresh driver reads the same verdict from exit.json
  const other = driver()
  const st2 = await other.status(A)
  assert.ok(st2.state === 'crashed' && st2.exit.at === (e.type === 'failed' ? e.exit.at : 0))
  await other.close()
})

test('daemon restart: the guest outlives its launcher, is re-adopted (same pid, never twice) and stops', async () => {
  const B = 'vm-b'
  const fixture = join(import.meta.dirname, 'fixtures', 'daemon-start.ts')
  const { stdout } = await run(process.execPath, ['--import', 'tsx', fixture, dataDir, B, guest.kernel, guest.initrd], { timeout: BOOT_WAIT_MS })
  const { pid, event } = JSON.parse(stdout) as { pid: number, event: string }
  assert.is(event, 'running')
  assert.ok(alive(pid), 'qemu survived the process that started it')
  const d2 = driver()
  const ev2 = record(d2)
  const all = await d2.list()
  const b = all.find((s) => s.vmId === B)
  assert.ok(b?.state === 'running' && b.pid === pid && b.generation === 7, JSON.stringify(b))
  await until('adopted running event', 5000, () => ev2.some((e) => e.type === 'running' && e.vmId === B))
  assert.equal(ev2.find((e) => e.vmId === B), { type: 'running', vmId: B, generation: 7, pid, ip: null, adopted: true })
  try { await d2.start(spec(B)); assert.unreachable('started twice') } catch (err) { assert.is((err as QemuError).kind, 'AlreadyRunning') }
  assert.equal(ourQemus().filter((p) => p === pid), [pid])
  assert.is(ourQemus().length, 1)
  // the same again in-process: close the driver (daemon stops), a new one adopts
  await d2.close()
  assert.ok(alive(pid))
  const d3 = driver()
  const st = await d3.status(B)
  assert.ok(st.state === 'running' && st.pid === pid)
  const exit = await d3.stop(B)
  assert.is(exit.outcome, 'stopped')
  assert.is(exit.shutdownReason, 'guest-shutdown', 'QMP works on the adopted guest')
  assert.not.ok(alive(pid))
  assert.is((await d3.status(B)).state, 'stopped')
})

test('guest on a TAP in a bridge in a network namespace answers ping; kill -9 → failed with the signal; cleanup leaves nothing', async () => {
  const D = 'vm-d'
  const tap = 'blxt-d0'
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' })
  ip('netns', 'add', NS)
  ip('-n', NS, 'link', 'set', 'lo', 'up')
  ip('-n', NS, 'link', 'add', 'br0', 'type', 'bridge')
  ip('-n', NS, 'addr', 'add', '10.77.9.1/24', 'dev', 'br0')
  ip('-n', NS, 'link', 'set', 'br0', 'up')
  ip('-n', NS, 'tuntap', 'add', 'dev', tap, 'mode', 'tap')
  ip('-n', NS, 'link', 'set', tap, 'master', 'br0')
  ip('-n', NS, 'link', 'set', tap, 'up')
  const removed: string[] = []
  const d6 = driver({
    spawnPrefix: ['ip', 'netns', 'exec', NS],
    network: { async removeTap (t, vmId) { removed.push(`${vmId}:${t}`); ip('-n', NS, 'link', 'del', t) } }
  })
  const running = d6.waitForEvent(D, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS)
  const { pid } = await d6.start(spec(D, { nics: [{ tap, mac: '02:b1:00:00:00:0d' }] }, { ip: '10.77.9.2/24', gw: '10.77.9.1' }))
  const e = await running
  assert.equal(e.type === 'running' ? e.ip : e, '10.77.9.2')
  assert.match(readFileSync(join(dataDir, 'vms', D, 'serial.log'), 'utf8'), /eth0=02:b1:00:00:00:0d/)
  const tp = Date.now()
  const { stdout } = await run('ip', ['netns', 'exec', NS, 'busybox', 'ping', '-c', '3', '-W', '2', '10.77.9.2'], { timeout: 20_000 })
  console.log(`  ${D}: ping from the namespace: ${stdout.trim().split('\n').slice(-2).join(' | ')} (${Date.now() - tp} ms)`)
  assert.match(stdout, /3 packets transmitted, 3 packets received/)
  // kill -9 of our own child: the wait status names the signal
  const failed = d6.waitForEvent(D, (x) => x.type === 'failed' || x.type === 'stopped', 10_000)
  process.kill(pid, 'SIGKILL')
  const f = await failed
  assert.ok(f.type === 'failed' && f.exit.signal === 'SIGKILL' && f.reason === 'qemu killed by SIGKILL', JSON.stringify(f))
  const st = await d6.status(D)
  assert.ok(st.state === 'crashed' && st.exit.signal === 'SIGKILL')
  await d6.cleanup(D)
  assert.equal(removed, [`${D}:${tap}`])
  assert.not.ok(alive(pid))
  assert.not.ok(existsSync(join(dataDir, 'vms', D)), 'runtime dir removed')
  assert.not.match(ip('-n', NS, '-br', 'link').toString(), new RegExp(tap), 'TAP removed')
  await d6.cleanup(D) // idempotent
  try { await d6.status(D); assert.unreachable() } catch (err) { assert.is((err as QemuError).kind, 'NotFound') }
})

test('cleanup of every VM: no qemu process and no files left', async () => {
  const d = driver()
  for (const s of await d.list()) await d.cleanup(s.vmId)
  assert.equal(readdirSync(join(dataDir, 'vms')), [])
  assert.equal(ourQemus(), [])
})

test('bareBoot: a plain qemu launch of the same guest, spawn to marker', async () => {
  const ms = await bareBoot({ ...guest, accel, tscKhz: tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8')), timeoutMs: BOOT_WAIT_MS })
  console.log(`  bare boot to marker: ${ms.toFixed(0)} ms (${accel})`)
  assert.ok(ms > 50 && ms < BOOT_WAIT_MS, String(ms))
})

/** synchronous, so it also runs from process 'exit' when a failure ends the run early */
function leaveNothing (): void {
  for (const pid of ourQemus()) { try { process.kill(pid, 'SIGKILL') } catch {} }
  try { execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }) } catch {}
  rmSync(dataDir, { recursive: true, force: true })
}
process.on('exit', leaveNothing)

test.after(async () => {
  for (const d of drivers) await d.close().catch(() => {})
  leaveNothing()
  console.log(`  driver tests took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
})

test.run()
