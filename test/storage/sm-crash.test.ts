// A state machine on LmdbKv (lazy mode) killed with SIGKILL mid-apply reopens at an applied index
// no lower than the last one it reported, with exactly the state a clean replay reaches there.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'
import { commandFor } from './crash-payload.ts'
import { tempDir } from './tmpdir.ts'

const child = fileURLToPath(new URL('./sm-crash-child.ts', import.meta.url))

function runAndKill (dir: string, minApplied: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let reported = 0
    let first = -1
    let buf = ''
    let killing = false
    let err = ''
    p.stderr.on('data', (d: Buffer) => { err += d.toString() })
    p.stdout.on('data', (d: Buffer) => {
      const lines = (buf + d.toString()).split('\n')
      buf = lines.pop() ?? ''
      for (const l of lines) {
        const n = Number(l)
        if (first < 0) first = n
        reported = Math.max(reported, n)
      }
      if (!killing && reported - first >= minApplied) { killing = true; p.kill('SIGKILL') }
    })
    p.on('exit', (code, signal) => signal === 'SIGKILL' ? resolve(reported) : reject(new Error(`child exited ${code}: ${err}`)))
  })
}

test('SIGKILL mid-apply: restart resumes exactly where the replay says', async () => {
  const dir = tempDir()
  const replay = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  for (let round = 0; round < 3; round++) {
    const reported = await runAndKill(dir, 300)
    const kv = LmdbKv.open(dir, { sync: 'lazy' })
    const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
    assert.ok(sm.applied() >= reported, `applied ${sm.applied()} >= reported ${reported}`)
    for (let i = replay.applied() + 1; i <= sm.applied(); i++) replay.apply(i, encodeEnvelope({ cmd: commandFor(i), at: i, key: `k${i % 50}` }))
    assert.is(sm.fullStateHash(), replay.fullStateHash(), `round ${round}: same state as a clean replay to ${sm.applied()}`)
    kv.close()
  }
})

test.run()
