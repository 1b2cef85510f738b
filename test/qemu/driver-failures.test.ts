// The driver's failure paths, without booting anything: fake qemu binaries that
// cannot start, exit at once, or never become ready.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver, type QemuLaunchSpec } from '../../node/qemu/driver.ts'
import { QemuError } from '../../node/qemu/errors.ts'

const root = mkdtempSync(join(tmpdir(), 'blx-qf-'))
const bin = join(root, 'bin')
mkdirSync(bin)
let n = 0

/** a fake qemu-system-x86_64 running this shell body */
function fakeQemu (body: string): string {
  const dir = join(bin, String(n++))
  mkdirSync(dir)
  const p = join(dir, 'qemu-system-x86_64')
  writeFileSync(p, `#!/bin/sh\n${body}\n`)
  chmodSync(p, 0o755)
  return p
}

function driverWith (qemuBinary: string, extra: Partial<ConstructorParameters<typeof QemuDriver>[0]> = {}): QemuDriver {
  return new QemuDriver({ dataDir: join(root, `data${n++}`), accel: 'tcg', tscKhz: null, qemuBinary, ...extra })
}

const spec = (vmId: string): QemuLaunchSpec => ({ vmId, generation: 2, vcpus: 1, memoryMiB: 96, readiness: 'marker', boot: { kernel: '/nonexistent/vmlinuz' } })

async function kindOf (p: Promise<unknown>): Promise<string> {
  try { await p } catch (e) { assert.instance(e, QemuError); return (e as QemuError).kind }
  return 'resolved'
}

test('a qemu binary that does not exist: SpawnFailed, recorded as crashed', async () => {
  const d = driverWith(join(root, 'no-such-qemu'))
  assert.is(await kindOf(d.start(spec('v1'))), 'SpawnFailed')
  const st = await d.status('v1')
  assert.ok(st.state === 'crashed' && /cannot run/.test(st.exit.reason), JSON.stringify(st))
  await d.close()
})

test('qemu that exits at once: failed, with its stderr in the reason', async () => {
  const d = driverWith(fakeQemu('echo "qemu-system-x86_64: -drive id=d0: Could not open \'/x\': No such file or directory" >&2; exit 1'))
  const failed = d.waitForEvent('v2', (e) => e.type === 'failed' || e.type === 'stopped' || e.type === 'running', 5000)
  await d.start(spec('v2'))
  const e = await failed
  assert.is(e.type, 'failed')
  assert.match(e.type === 'failed' ? e.reason : '', /^qemu exited with code 1 before the guest was ready: .*Could not open '\/x'/)
  assert.ok(e.type === 'failed' && e.generation === 2 && e.exit.code === 1)
  await d.close()
})

test('a guest that never prints the marker is killed at the boot timeout and reported failed', async () => {
  const d = driverWith(fakeQemu('exec sleep 30'), { bootTimeoutMs: 300 })
  const failed = d.waitForEvent('v3', (e) => e.type === 'failed' || e.type === 'running', 5000)
  const { pid } = await d.start(spec('v3'))
  const e = await failed
  assert.ok(e.type === 'failed' && /guest not ready within 300 ms \(no ready marker/.test(e.reason), JSON.stringify(e))
  assert.throws(() => process.kill(pid, 0))
  await d.close()
})

test('stop without a QMP socket: SIGKILL after the stop timeout, reported as a stop', async () => {
  const d = driverWith(fakeQemu('exec sleep 30'))
  const events: string[] = []
  d.onEvent((e) => events.push(e.type))
  await d.start(spec('v4'))
  const t0 = Date.now()
  const exit = await d.stop('v4', { timeoutMs: 400 })
  assert.ok(Date.now() - t0 >= 390)
  assert.is(exit.outcome, 'stopped')
  assert.is(exit.reason, 'killed after the power-down timeout')
  assert.is(exit.signal, 'SIGKILL')
  assert.equal(events, ['starting', 'stopping', 'stopped'])
  await d.close()
})

test('unknown VMs: status/logs NotFound, stop/kill NotRunning, cleanup is a no-op, list empty; a closed driver refuses work', async () => {
  const d = driverWith(fakeQemu('exit 0'))
  assert.is(await kindOf(d.status('nope')), 'NotFound')
  assert.is(await kindOf((async () => { for await (const _ of d.logs('nope')) { /* drain */ } })()), 'NotFound')
  assert.is(await kindOf(d.stop('nope')), 'NotRunning')
  assert.is(await kindOf(d.kill('nope')), 'NotRunning')
  await d.cleanup('nope')
  assert.equal(await d.list(), [])
  assert.is(await kindOf(d.start({ ...spec('bad'), memoryMiB: 16 })), 'InvalidSpec')
  assert.not.ok(existsSync(join(d.dataDir, 'vms', 'bad')), 'an invalid spec creates nothing')
  await d.close()
  assert.is(await kindOf(d.start(spec('v5'))), 'Closed')
})

test('a qemu that died while no driver watched is reported once, from its stale pid file', async () => {
  const d = driverWith(fakeQemu('exec sleep 30'))
  const { pid } = await d.start(spec('v6'))
  await d.close()
  process.kill(pid, 'SIGKILL')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const d2 = new QemuDriver({ dataDir: d.dataDir, accel: 'tcg', tscKhz: null })
  const seen: string[] = []
  d2.onEvent((e) => { seen.push(`${e.type}:${e.type === 'failed' ? e.reason : ''}`) })
  const st = await d2.status('v6')
  assert.ok(st.state === 'crashed' && /not watching/.test(st.exit.reason), JSON.stringify(st))
  await d2.status('v6')
  assert.equal(seen, ['failed:qemu ended while blixard-node was not watching (exit status unknown)'])
  assert.not.ok(existsSync(join(d.dataDir, 'vms', 'v6', 'qemu.pid')))
  assert.ok(JSON.parse(readFileSync(join(d.dataDir, 'vms', 'v6', 'exit.json'), 'utf8')) != null)
  await d2.close()
})

test.after(() => { rmSync(root, { recursive: true, force: true }) })
test.run()
