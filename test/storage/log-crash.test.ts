// Durability across SIGKILL: a child appends with sync and reports each synced index; we kill it
// mid-write, reopen, and every index it reported must be there, intact.
// (SIGKILL loses the process, not the page cache: power loss is argued from the fdatasync per
// commit, see storage/wal-log-store.ts, not tested here.)
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { WalLogStore } from '../../storage/wal-log-store.ts'
import { payloadFor } from './crash-payload.ts'
import { tempDir } from './tmpdir.ts'

const child = fileURLToPath(new URL('./log-crash-child.ts', import.meta.url))

/** Run the child until it has reported at least `minSynced` more indexes (plus a random extra
 * delay so the kill lands anywhere in a write), SIGKILL it, return the highest reported index. */
function runAndKill (dir: string, minSynced: number, extraMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir, '8'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let reported = 0
    let first = -1
    let buf = ''
    let killing = false
    let err = ''
    p.stderr.on('data', (d: Buffer) => { err += d.toString() })
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop() ?? ''
      for (const l of lines) {
        const n = Number(l)
        if (first < 0) first = n
        reported = Math.max(reported, n)
      }
      if (!killing && reported - first >= minSynced) {
        killing = true
        setTimeout(() => p.kill('SIGKILL'), extraMs)
      }
    })
    p.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${err}`))
      else resolve(reported)
    })
  })
}

test('every index reported synced survives SIGKILL, across repeated crashes', async () => {
  const dir = tempDir()
  let prev = 0
  for (let round = 0; round < 4; round++) {
    const reported = await runAndKill(dir, 200, (round * 7) % 13)
    assert.ok(reported > prev, `round ${round}: the child made progress (${reported} > ${prev})`)
    const s = WalLogStore.open(dir)
    assert.ok(s.lastIndex() >= reported, `round ${round}: last ${s.lastIndex()} >= reported ${reported}`)
    const es = s.entries(1, s.lastIndex() + 1)
    assert.is(es.length, s.lastIndex())
    for (const e of es) {
      assert.ok(Buffer.from(e.data).equals(payloadFor(e.index)), `entry ${e.index} intact`)
    }
    assert.ok(s.initialState().hardState.commit >= reported, 'hard state as recent as the last reported sync')
    s.close()
    prev = reported
  }
})

test.run()
