// Console log reading and following, on a file written by the test.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { followConsole, readConsole } from '../../node/qemu/console-log.ts'
import { waitForText } from '../../node/qemu/file-tail.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { checkVmId, runtimePaths } from '../../node/qemu/paths.ts'
import { parseReadyMarker } from '../../node/qemu/tiny-guest.ts'

const dir = mkdtempSync(join(tmpdir(), 'blx-console-'))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('readConsole: whole, tail, absent', async () => {
  const p = join(dir, 'a.log')
  writeFileSync(p, 'line one\nline two\n')
  assert.equal(await readConsole(p), { text: 'line one\nline two\n', end: 18 })
  assert.equal(await readConsole(p, { tailBytes: 9 }), { text: 'line two\n', end: 18 })
  assert.equal(await readConsole(join(dir, 'absent.log')), { text: '', end: 0 })
})

test('followConsole: existing text, then appended pieces, ends after `until` with the last bytes', async () => {
  const p = join(dir, 'b.log')
  writeFileSync(p, 'boot\n')
  let exit: () => void = () => {}
  const until = new Promise<void>((resolve) => { exit = resolve })
  const got: string[] = []
  const done = (async () => { for await (const c of followConsole(p, { until })) got.push(c) })()
  await sleep(50)
  appendFileSync(p, 'BLIXARD-GUEST-UP vm ')
  await sleep(50)
  appendFileSync(p, 'none\n')
  await sleep(50)
  appendFileSync(p, 'BLIXARD-GUEST-POWEROFF\n')
  exit() // the last line may land just as qemu exits: it is still read
  await done
  assert.is(got.join(''), 'boot\nBLIXARD-GUEST-UP vm none\nBLIXARD-GUEST-POWEROFF\n')
  assert.ok(got.length >= 2, 'streamed in pieces')
})

test('followConsole: an abort signal ends it', async () => {
  const p = join(dir, 'c.log')
  writeFileSync(p, 'x\n')
  const ac = new AbortController()
  const got: string[] = []
  const done = (async () => { for await (const c of followConsole(p, { until: new Promise(() => {}), signal: ac.signal })) got.push(c) })()
  await sleep(30)
  ac.abort()
  await done
  assert.equal(got, ['x\n'])
})

test('waitForText: sees a marker written in two pieces only once the line is whole; abortWhen and timeout reject', async () => {
  const p = join(dir, 'd.log')
  const waiting = waitForText(p, parseReadyMarker, { timeoutMs: 3000 })
  await sleep(30)
  writeFileSync(p, 'BLIXARD-GUEST-UP vm 10.0.')
  await sleep(60)
  appendFileSync(p, '0.2 uptime=1\r\n')
  assert.equal(await waiting, { hostname: 'vm', ip: '10.0.0.2' })
  const early = waitForText(join(dir, 'e.log'), parseReadyMarker, { timeoutMs: 3000, abortWhen: sleep(20).then(() => new QemuError('BootFailed', 'exited')) })
  try { await early; assert.unreachable() } catch (e) { assert.is((e as QemuError).kind, 'BootFailed') }
  try { await waitForText(join(dir, 'e.log'), parseReadyMarker, { timeoutMs: 50 }); assert.unreachable() } catch (e) { assert.is((e as QemuError).kind, 'Timeout') }
})

test('vm ids cannot escape the data dir', () => {
  for (const bad of ['..', '../x', 'a/b', '', '.hidden', 'a b', 'a,b']) {
    try { runtimePaths('/d', bad); assert.unreachable(bad) } catch (e) { assert.is((e as QemuError).kind, 'InvalidSpec', bad) }
  }
  assert.is(checkVmId('vm-1.a_b'), 'vm-1.a_b')
  assert.is(runtimePaths('/d', 'vm-1').qmpSock, '/d/vms/vm-1/qmp.sock')
})

test.after(() => { rmSync(dir, { recursive: true, force: true }) })
test.run()
