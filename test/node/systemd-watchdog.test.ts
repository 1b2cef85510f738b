// The daemon's systemd watchdog pings (node/ha/systemd-watchdog.ts) through a stand-in
// systemd-notify on PATH that records its arguments: every WATCHDOG_USEC/2, naming the daemon's pid;
// none when systemd did not ask, or asked another process.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startSystemdWatchdog } from '../../node/ha/systemd-watchdog.ts'
import { silentLogger } from '../../node/log.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test('pings systemd-notify every WATCHDOG_USEC/2 with the daemon pid, only when asked', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bx-sdwd-'))
  const log = join(dir, 'pings')
  await writeFile(join(dir, 'systemd-notify'), `#!/bin/sh\necho "$@" >> ${log}\n`)
  await chmod(join(dir, 'systemd-notify'), 0o755)
  const path = process.env.PATH
  process.env.PATH = `${dir}:${path ?? ''}`
  try {
    const none = startSystemdWatchdog({}, silentLogger)
    const other = startSystemdWatchdog({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: String(process.pid + 1) }, silentLogger)
    await sleep(300)
    none(); other()
    assert.is(await readFile(log, 'utf8').catch(() => null), null, 'no ping when not asked')
    const stop = startSystemdWatchdog({ WATCHDOG_USEC: '2000000', WATCHDOG_PID: String(process.pid) }, silentLogger)
    await sleep(2_300) // one at start, one at 1 s, one at 2 s
    stop()
    await sleep(200)
    const lines = (await readFile(log, 'utf8')).trim().split('\n')
    assert.ok(lines.length >= 2 && lines.length <= 3, lines.join('|'))
    for (const l of lines) assert.is(l, `--pid=${process.pid} WATCHDOG=1`)
  } finally {
    process.env.PATH = path
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
