// The fence watchdog as a real process against a real (idle, paused, no-machine) QEMU: it leaves the
// guest alone while the heartbeat is refreshed, SIGKILLs it soon after the deadline passes with no
// refresh (the daemon kill -9'd or stopped), and exits without killing on `stop`.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { guestName, optValue } from '../../node/qemu/cmdline.ts'
import { formatHeartbeat, monotonicMs, parseHeartbeat, WATCHDOG_POLL_MS } from '../../node/fence-watchdog.ts'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

async function idleQemu (dataDir: string, vmId: string): Promise<ChildProcess> {
  const p = runtimePaths(dataDir, vmId)
  await mkdir(p.dir, { recursive: true })
  const q = spawn('qemu-system-x86_64', ['-machine', 'none', '-S', '-nodefaults', '-display', 'none', '-name', guestName(vmId), '-qmp', `unix:${optValue(p.qmpSock)},server=on,wait=off`], { stdio: 'ignore' })
  await writeFile(p.pidFile, `${q.pid ?? -1}\n`)
  await sleep(300)
  assert.ok(q.pid != null && alive(q.pid), 'qemu started')
  return q
}

function watchdog (dataDir: string, hb: string): { proc: ChildProcess, exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'node/fence-watchdog.ts', dataDir, hb], { stdio: ['ignore', 'ignore', 'inherit'] })
  return { proc, exited: new Promise(resolve => proc.on('exit', code => resolve(code))) }
}

test('heartbeat format', () => {
  assert.equal(parseHeartbeat(formatHeartbeat(1234.7)), { kind: 'deadline', at: 1234 })
  assert.equal(parseHeartbeat('stop\n'), { kind: 'stop' })
  assert.is(parseHeartbeat('deadline soon').kind, 'bad')
})

test('kills the guest within a poll of the deadline once the heartbeat stops; not before', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bx-fence-'))
  const hb = join(dir, 'fence.hb')
  const q = await idleQemu(dir, 'vm1')
  try {
    await writeFile(hb, formatHeartbeat(monotonicMs() + 1_500))
    const w = watchdog(dir, hb)
    // refreshed like a live daemon for 3 s: the guest lives
    for (let i = 0; i < 6; i++) { await sleep(500); await writeFile(hb, formatHeartbeat(monotonicMs() + 1_500)) }
    assert.ok(alive(q.pid!), 'guest alive while renewed')
    const deadline = monotonicMs() + 1_500 // the last written deadline, within a ms
    // the daemon "dies": no more refreshes
    while (alive(q.pid!) && monotonicMs() < deadline + 3_000) await sleep(20)
    const killedAt = monotonicMs()
    assert.ok(!alive(q.pid!) || q.exitCode !== null || q.signalCode !== null, 'guest killed')
    assert.ok(killedAt >= deadline - 50, `not before the deadline (${killedAt - deadline} ms)`)
    assert.ok(killedAt <= deadline + WATCHDOG_POLL_MS + 1_000, `soon after the deadline (${killedAt - deadline} ms)`)
    assert.is(await w.exited, 0)
  } finally {
    q.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
})

test('`stop` makes it exit and leave the guest running', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bx-fence-'))
  const hb = join(dir, 'fence.hb')
  const q = await idleQemu(dir, 'vm2')
  try {
    await writeFile(hb, formatHeartbeat(monotonicMs() + 1_000))
    const w = watchdog(dir, hb)
    await sleep(300)
    await writeFile(hb, 'stop\n')
    assert.is(await w.exited, 0)
    await sleep(1_000)
    assert.ok(alive(q.pid!), 'guest left alone')
  } finally {
    q.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
