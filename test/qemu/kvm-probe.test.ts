// The KVM probe's test guest dies with the process that started it: a daemon stopped or SIGKILLed
// while its probe waits for a guest that never boots (a /dev/kvm that cannot run it) must not leave
// QEMU running for good, nor a directory that fools or clutters the next probe.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { probeKvm, resetKvmProbe } from '../../node/qemu/kvm-probe.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Running (not gone, not a zombie awaiting its reaper)? */
function alive (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch { return false }
}

async function until (cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) { if (cond()) return true; await new Promise((resolve) => setTimeout(resolve, 50)) }
  return cond()
}

test('a SIGKILLed prober takes its never-booting probe guest with it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-kvm-probe-test-'))
  try {
    // a "QEMU" that says its pid and then hangs, printing no ready marker (as a guest KVM cannot run)
    const qemu = join(dir, 'qemu-hangs')
    const pidFile = join(dir, 'pid')
    writeFileSync(qemu, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 600\n`)
    chmodSync(qemu, 0o755)
    const kvm = join(dir, 'kvm') // readable and writable: the probe goes on to its test boot
    writeFileSync(kvm, '')
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      const { probeKvm } = await import(${JSON.stringify(new URL('../../node/qemu/kvm-probe.ts', import.meta.url).href)})
      await probeKvm({ kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd', qemuBinary: ${JSON.stringify(qemu)}, devKvm: ${JSON.stringify(kvm)}, timeoutMs: 600000, dir: ${JSON.stringify(join(dir, 'probe'))} })
    `], { stdio: ['ignore', 'ignore', 'inherit'] })
    const exited = new Promise((resolve) => child.on('exit', resolve))
    assert.ok(await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 20_000), 'the probe started its guest')
    const guest = Number(readFileSync(pidFile, 'utf8').trim())
    assert.ok(alive(guest), 'the guest runs while the probe waits')
    child.kill('SIGKILL')
    await exited
    const gone = await until(() => !alive(guest), 5_000)
    if (!gone) process.kill(guest, 'SIGKILL')
    assert.ok(gone, `the probe guest (pid ${guest}) outlived the process that probed`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a probe given a directory empties it first and removes it after: one cut short by its process\'s death leaves only that directory, and its stale console cannot pass for a KVM boot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-kvm-probe-test-'))
  try {
    const probeDir = join(dir, 'data', 'kvm-probe') // as the daemon's driver passes it: inside its data directory
    const qemu = join(dir, 'qemu-hangs')
    const pidFile = join(dir, 'pid')
    writeFileSync(qemu, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 600\n`)
    chmodSync(qemu, 0o755)
    const kvm = join(dir, 'kvm')
    writeFileSync(kvm, '')
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      const { probeKvm } = await import(${JSON.stringify(new URL('../../node/qemu/kvm-probe.ts', import.meta.url).href)})
      await probeKvm({ kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd', qemuBinary: ${JSON.stringify(qemu)}, devKvm: ${JSON.stringify(kvm)}, timeoutMs: 600000, dir: ${JSON.stringify(probeDir)} })
    `], { stdio: ['ignore', 'ignore', 'inherit'] })
    const exited = new Promise((resolve) => child.on('exit', resolve))
    assert.ok(await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 20_000), 'the probe started its guest')
    const guest = Number(readFileSync(pidFile, 'utf8').trim())
    child.kill('SIGKILL')
    await exited
    if (!await until(() => !alive(guest), 5_000)) process.kill(guest, 'SIGKILL')
    assert.ok(existsSync(probeDir), 'a probe killed mid-boot leaves its directory (nothing runs its cleanup)')
    // what it left, at its worst: a console that shows the guest's ready marker
    writeFileSync(join(probeDir, 'serial.log'), 'BLIXARD-GUEST-UP stale none\n')
    // the next start probes with a QEMU that cannot boot anything: KVM must not be taken as usable
    const fails = join(dir, 'qemu-fails')
    writeFileSync(fails, '#!/bin/sh\necho "no KVM here" >&2\nexit 1\n')
    chmodSync(fails, 0o755)
    resetKvmProbe()
    const r = await probeKvm({ kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd', qemuBinary: fails, devKvm: kvm, timeoutMs: 10_000, dir: probeDir })
    resetKvmProbe()
    assert.is(r.accel, 'tcg', `the stale console passed for a KVM boot: ${JSON.stringify(r)}`)
    assert.match(r.reason ?? '', /no KVM here|exited/)
    assert.not.ok(existsSync(probeDir), 'the probe removes its directory when it ends')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
