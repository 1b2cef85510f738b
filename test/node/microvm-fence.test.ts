// Fencing guests on the NixOS path (systemd microvm@NAME units): systemd does not run here, so a
// recording executor answers `systemctl show` the way systemd does and records every command, as
// the net-host tests do with `ip`. The function under test is the one the daemon's fence, the
// cleanup of a host rejoining after its lease expired, and the fence watchdog all call
// (killAllGuests); the watchdog is also run as the real process with a recording `systemctl` script,
// one whose `stop` hangs until the unit is SIGKILLed: the fence must escalate within its stop budget.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { killAllGuests, formatHeartbeat, monotonicMs, parseWatchdogArgs, WATCHDOG_POLL_MS } from '../../node/fence-watchdog.ts'
import { DEFAULT_STOP_BUDGET_MS, GUESTS_SUBDIR, microvmGuests, stopBudget, stopMicrovmGuests, type SystemctlRunner } from '../../node/ha/microvm-fence.ts'
import { DEFAULT_LEASE, fenceStopBudgetMs } from '../../node/core/lease-rules.ts'

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
    if (argv[1] === 'kill') { states[/^microvm@(.+)\.service$/.exec(argv[3])?.[1] ?? ''] = 'failed'; return '' }
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

test('a stop that fails is reported and followed by SIGKILL at once, and does not spare the others; a show that fails still stops', async () => {
  const dir = await dataDir(['a', 'b', 'c'])
  try {
    const sys = recorder({ a: 'active', b: 'active', c: 'active' }, ['a'])
    const base = sys.run
    const run: SystemctlRunner = async (argv) => { if (argv[1] === 'show' && argv[2] === 'microvm@c.service') throw new Error('bus timeout'); return await base(argv) }
    const errors: string[] = []
    const stopped = await stopMicrovmGuests(dir, run, (n, e) => errors.push(`${n}: ${e.message}`), stopBudget(10_000))
    assert.equal(stopped.sort((x, y) => x.name.localeCompare(y.name)), [{ name: 'a', how: 'killed' }, { name: 'b', how: 'stopped' }, { name: 'c', how: 'stopped' }])
    assert.equal(errors, ['a: stop failed (systemctl stop microvm@a.service: Access denied): sending SIGKILL'])
    assert.ok(sys.calls.includes('systemctl kill --signal=SIGKILL microvm@a.service'))
    assert.not.ok(sys.calls.some((c) => c.includes('kill') && !c.includes('microvm@a')), 'only the unit whose stop failed is killed')
  } finally { await rm(dir, { recursive: true, force: true }) }
})

/** systemd's stop job as the fence sees it: `stop` returns only once the unit's processes are gone (a SIGKILL, or never) */
function hangingStop (killTakes: boolean): { run: SystemctlRunner, calls: Array<{ argv: string, at: number }> } {
  const calls: Array<{ argv: string, at: number }> = []
  let active = true
  let release: () => void = () => {}
  const gone = new Promise<void>((resolve) => { release = resolve })
  const run: SystemctlRunner = async (argv) => {
    calls.push({ argv: argv.join(' '), at: performance.now() })
    if (argv[1] === 'show') return `ActiveState=${active ? 'deactivating' : 'failed'}\nSubState=${active ? 'stop-sigterm' : 'failed'}\n`
    if (argv[1] === 'stop') { await gone; return '' }
    if (argv[1] === 'kill') { if (killTakes) { active = false; release() } return '' }
    throw new Error(`unexpected: ${argv.join(' ')}`)
  }
  return { run, calls }
}

test('a stop that hangs (a guest ignoring its shutdown) is escalated to SIGKILL half way through the budget, and done within it', async () => {
  const dir = await dataDir(['slow'])
  try {
    const sys = hangingStop(true)
    const budget = stopBudget(400)
    const t0 = performance.now()
    const stopped = await stopMicrovmGuests(dir, sys.run, () => {}, budget)
    const took = performance.now() - t0
    assert.equal(stopped, [{ name: 'slow', how: 'killed' }])
    const stop = sys.calls.find((c) => c.argv.startsWith('systemctl stop'))!
    const kill = sys.calls.find((c) => c.argv === 'systemctl kill --signal=SIGKILL microvm@slow.service')
    assert.ok(kill != null, sys.calls.map((c) => c.argv).join('\n'))
    assert.ok(kill.at - stop.at >= budget.graceMs - 5 && kill.at - stop.at <= budget.graceMs + 100, `SIGKILL after the grace of ${budget.graceMs} ms: ${Math.round(kill.at - stop.at)} ms`)
    assert.ok(took <= budget.totalMs, `done within the budget of ${budget.totalMs} ms: ${Math.round(took)} ms`)
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test('a unit that outlives even SIGKILL is reported when the budget ends, naming it; the fence does not wait longer', async () => {
  const dir = await dataDir(['stuck', 'fine'])
  try {
    const stuck = hangingStop(false)
    const fine = recorder({ fine: 'active' })
    const run: SystemctlRunner = async (argv) => argv[2] === 'microvm@stuck.service' || argv[3] === 'microvm@stuck.service' ? await stuck.run(argv) : await fine.run(argv)
    const errors: string[] = []
    const t0 = performance.now()
    const stopped = await stopMicrovmGuests(dir, run, (n, e) => errors.push(`${n}: ${e.message}`), stopBudget(300))
    const took = performance.now() - t0
    assert.equal(stopped, [{ name: 'fine', how: 'stopped' }])
    assert.is(errors.length, 1)
    assert.match(errors[0], /^stuck: microvm@stuck\.service not seen stopped within the fence's budget of 300 ms \(stop not finished after 150 ms; SIGKILL sent\)/)
    assert.ok(took <= 300 + 150, `gave up at the budget's end: ${Math.round(took)} ms`)
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test('the fence stop budget follows the lease settings: the real gap between the host fencing and the earliest mark-down, on a slow clock', () => {
  // defaults: (1 000 + 1 000 / 1.01) × 0.99
  assert.is(fenceStopBudgetMs(DEFAULT_LEASE), 1_970)
  assert.is(fenceStopBudgetMs({ ...DEFAULT_LEASE, fenceMarginMs: 500, downMarginMs: 500, driftRatio: 0 }), 1_000)
  assert.equal(stopBudget(1_870), { graceMs: 935, totalMs: 1_870 })
  assert.ok(DEFAULT_STOP_BUDGET_MS <= fenceStopBudgetMs(DEFAULT_LEASE) - WATCHDOG_POLL_MS, 'the budget used without settings fits the defaults')
})

test('the watchdog\'s command line: a bad option or budget is refused naming it', () => {
  assert.equal(parseWatchdogArgs(['/d', '/d/hb', '--stop-budget-ms=900']), { dataDir: '/d', heartbeat: '/d/hb', systemctl: 'systemctl', stopBudgetMs: 900 })
  assert.equal(parseWatchdogArgs(['/d', '/d/hb', '--stop-budget-ms=-1']), { error: '--stop-budget-ms must be a non-negative integer of ms, got "-1"' })
  assert.equal(parseWatchdogArgs(['/d', '/d/hb', '--stop-budget=9']), { error: 'unknown option "--stop-budget=9"' })
  assert.equal(parseWatchdogArgs(['/d']), { error: 'a data dir and a heartbeat file are required' })
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

test('the fence watchdog process escalates a hanging `systemctl stop` to `systemctl kill --signal=SIGKILL` within its budget (a recording systemctl)', async () => {
  const dir = await dataDir(['web-1'])
  try {
    const log = join(dir, 'systemctl.log')
    const state = join(dir, 'state')
    const fake = join(dir, 'systemctl')
    await writeFile(state, 'active\n')
    // like systemd: `stop` returns once the unit's processes are gone, which only `kill` achieves here
    // (capped at 10 s so that a broken fence cannot leave it behind); each call logged with its time
    await writeFile(fake, [
      '#!/bin/sh',
      `echo "$(date +%s%3N) $*" >> ${log}`,
      `case "$1" in`,
      `  show) printf 'ActiveState=%s\\n' "$(cat ${state})" ;;`,
      `  kill) echo failed > ${state} ;;`,
      `  stop) i=0; while [ "$(cat ${state})" = active ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done ;;`,
      'esac',
      'exit 0', ''
    ].join('\n'))
    await chmod(fake, 0o755)
    const hb = join(dir, 'hb')
    const BUDGET = 800
    await writeFile(hb, formatHeartbeat(monotonicMs() + 300))
    const w = spawn(process.execPath, ['--import', 'tsx', 'node/fence-watchdog.ts', dir, hb, `--systemctl=${fake}`, `--stop-budget-ms=${BUDGET}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    w.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const code = await new Promise<number | null>((resolve) => w.on('exit', resolve))
    assert.is(code, 0)
    const calls = (await readFile(log, 'utf8')).trim().split('\n').map((l) => { const [at, ...rest] = l.split(' '); return { at: Number(at), argv: rest.join(' ') } })
    const stop = calls.find((c) => c.argv.startsWith('stop '))
    const kill = calls.find((c) => c.argv.startsWith('kill '))
    assert.ok(stop != null && kill != null, calls.map((c) => c.argv).join('\n'))
    assert.is(kill.argv, 'kill --signal=SIGKILL microvm@web-1.service')
    // a shell script's start is late on a loaded host: the bound is the budget plus that slack
    console.log(`  stop → SIGKILL ${kill.at - stop.at} ms (grace ${BUDGET / 2} ms, budget ${BUDGET} ms)`)
    assert.ok(kill.at - stop.at <= BUDGET + 1_000, `SIGKILL within the budget: ${kill.at - stop.at} ms`)
    assert.match(err, /lease deadline passed with no renewal: .*microvm@web-1 \(SIGKILLed\)/)
  } finally { await rm(dir, { recursive: true, force: true }) }
})

test.run()
