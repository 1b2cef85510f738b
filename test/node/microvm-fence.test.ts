// Fencing guests on the NixOS path (systemd microvm@NAME units): systemd does not run here, so a
// recording executor answers `systemctl show` the way systemd does and records every command, as
// the net-host tests do with `ip`. The function under test is the one the daemon's fence, the
// cleanup of a host rejoining after its lease expired, and the fence watchdog all call
// (killAllGuests); the watchdog is also run as the real process with a recording `systemctl` script.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { killAllGuests, formatHeartbeat, monotonicMs } from '../../node/fence-watchdog.ts'
import { GUESTS_SUBDIR, microvmGuests, stopMicrovmGuests, type SystemctlRunner } from '../../node/ha/microvm-fence.ts'

/** systemd as far as the fence sees it: unit → ActiveState; records every argv. */
function recorder (states: Record<string, string>, failStop: string[] = []): { run: SystemctlRunner, calls: string[] } {
  const calls: string[] = []
  const run: SystemctlRunner = async (argv) => {
    calls.push(argv.join(' '))
    const unit = argv[2]
    const name = /^microvm@(.+)\.service$/.exec(unit)?.[1] ?? ''
    if (argv[1] === 'show') {
      const active = states[name] ?? 'inactive'
      return `LoadState=loaded\nActiveState=${active}\nSubState=${active === 'active' ? 'running' : 'dead'}\nMainPID=0\nExecMainStatus=0\nResult=success\n`
    }
    if (argv[1] === 'stop') {
      if (failStop.includes(name)) throw new Error(`${argv.join(' ')}: Access denied`)
      states[name] = 'inactive'
      return ''
    }
    throw new Error(`unexpected: ${argv.join(' ')}`)
  }
  return { run, calls }
}

async function dataDir (guests: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bx-microvm-fence-'))
  for (const g of guests) await mkdir(join(dir, GUESTS_SUBDIR, g), { recursive: true })
  return dir
}

test('the fence stops this host\'s running microvm@ units, leaves stopped ones and names that are not units', async () => {
  const dir = await dataDir(['web-1', 'db', 'idle', 'Not_A_Unit'])
  try {
    assert.equal(await microvmGuests(dir), ['db', 'idle', 'web-1'])
    const sys = recorder({ 'web-1': 'active', db: 'activating', idle: 'inactive', other: 'active' })
    const stopped = await killAllGuests(dir, sys.run)
    assert.equal(stopped.sort(), ['microvm@db', 'microvm@web-1'])
    const stops = sys.calls.filter((c) => c.includes(' stop ')).sort()
    assert.equal(stops, ['systemctl stop microvm@db.service', 'systemctl stop microvm@web-1.service'])
    assert.not.ok(sys.calls.some((c) => c.includes('microvm@other')), 'a unit this host did not render is not ours to stop')
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test('a stop that fails does not spare the others and is reported; a show that fails still stops', async () => {
  const dir = await dataDir(['a', 'b', 'c'])
  try {
    const sys = recorder({ a: 'active', b: 'active', c: 'active' }, ['a'])
    const base = sys.run
    const run: SystemctlRunner = async (argv) => { if (argv[1] === 'show' && argv[2] === 'microvm@c.service') throw new Error('bus timeout'); return await base(argv) }
    const errors: string[] = []
    const stopped = await stopMicrovmGuests(dir, run, (n, e) => errors.push(`${n}: ${e.message}`))
    assert.equal(stopped.sort(), ['b', 'c'])
    assert.equal(errors, ['a: systemctl stop microvm@a.service: Access denied'])
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test('a host with no NixOS-path guests runs no systemctl at all', async () => {
  const dir = await dataDir([])
  try {
    const sys = recorder({})
    assert.equal(await killAllGuests(dir, sys.run), [])
    assert.equal(sys.calls, [])
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test('the fence watchdog process stops the microvm@ units at the deadline (a recording systemctl)', async () => {
  const dir = await dataDir(['web-1'])
  try {
    const log = join(dir, 'systemctl.log')
    const fake = join(dir, 'systemctl')
    // answers `show` as an active unit, records every call
    await writeFile(fake, `#!/bin/sh\necho "$*" >> ${log}\n[ "$1" = show ] && printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\n'\nexit 0\n`)
    await chmod(fake, 0o755)
    const hb = join(dir, 'hb')
    await writeFile(hb, formatHeartbeat(monotonicMs() + 300))
    const w = spawn(process.execPath, ['--import', 'tsx', 'node/fence-watchdog.ts', dir, hb, `--systemctl=${fake}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    w.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const code = await new Promise<number | null>((resolve) => w.on('exit', resolve))
    assert.is(code, 0)
    assert.equal((await readFile(log, 'utf8')).trim().split('\n').filter((l) => l.startsWith('stop')), ['stop microvm@web-1.service'])
    assert.match(err, /lease deadline passed with no renewal: .*microvm@web-1/)
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test.run()
