// storage/state-dir.ts: a state directory that was open when the machine went down (another boot
// id, not marked clean) is moved aside, keeping only the newest such copy; one a process left open
// on this boot, or one closed cleanly, is kept; a directory without a RUN file is kept as before.
// And a store a child process cannot read through (real LMDB files, damaged) is moved aside too.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { RUN_FILE, closeStateDir, closeStateStore, openStateDir, openStateStore, readThrough } from '../../storage/state-dir.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { tempDir } from './tmpdir.ts'

const A = 'aaaaaaaa-0000-0000-0000-000000000001'
const B = 'bbbbbbbb-0000-0000-0000-000000000002'
const run = (dir: string): string => readFileSync(join(dir, RUN_FILE), 'utf8')
/** the decision table's tests: every store reads through */
const readable = (): null => null

function stateWith (marker: string, runLine: string | null): string {
  const dir = join(tempDir(), 'state')
  mkdirSync(dir)
  writeFileSync(join(dir, 'data.mdb'), marker)
  if (runLine !== null) writeFileSync(join(dir, RUN_FILE), runLine)
  return dir
}

test('a new directory is created and marked open by this boot', () => {
  const dir = join(tempDir(), 'state')
  assert.is(openStateDir(dir, A, new Date(), readable), null)
  assert.is(run(dir), `${A} open\n`)
  closeStateDir(dir, A)
  assert.is(run(dir), `${A} clean\n`)
})

test('open under another boot: moved aside with the reason, and a fresh directory in its place', () => {
  const dir = stateWith('old', `${A} open\n`)
  const m = openStateDir(dir, B, new Date('2026-12-07T08:00:00.000Z'), readable)
  assert.ok(m !== null)
  assert.is(m.movedTo, `${dir}.unclean-2026-12-07T08-00-00-000Z`)
  assert.match(m.why, /open when the machine last went down/)
  assert.is(readFileSync(join(m.movedTo, 'data.mdb'), 'utf8'), 'old', 'the old store is kept for a post-mortem')
  assert.not.ok(existsSync(join(dir, 'data.mdb')), 'the store starts empty')
  assert.is(run(dir), `${B} open\n`)
})

test('open under this boot (only the process died), clean under another, or no RUN file: kept', () => {
  for (const [what, line, boot] of [['process crash', `${A} open\n`, A], ['clean stop, then a reboot', `${A} clean\n`, B], ['no RUN file', null, B], ['no boot id known', ' open\n', B]] as const) {
    const dir = stateWith('kept', line)
    assert.is(openStateDir(dir, boot, new Date(), readable), null, what)
    assert.is(readFileSync(join(dir, 'data.mdb'), 'utf8'), 'kept', what)
    assert.is(run(dir), `${boot} open\n`, what)
  }
})

test('only the newest copy moved aside is kept', () => {
  const dir = stateWith('first', `${A} open\n`)
  const first = openStateDir(dir, B, new Date('2026-12-07T08:00:00.000Z'), readable)
  writeFileSync(join(dir, 'data.mdb'), 'second')
  const second = openStateDir(dir, A, new Date('2026-12-07T09:00:00.000Z'), readable)
  assert.ok(first !== null && second !== null)
  assert.not.ok(existsSync(first.movedTo), 'the older copy is gone')
  assert.is(readFileSync(join(second.movedTo, 'data.mdb'), 'utf8'), 'second')
  const parent = join(dir, '..')
  assert.equal(readdirSync(parent).filter((f) => f.startsWith('state')).sort(), ['state', `state.unclean-2026-12-07T09-00-00-000Z`])
})

test('the store: a stop that flushed marks the directory clean; a store left open by another boot starts empty', () => {
  const data = tempDir()
  const kv = openStateStore(data, undefined, A)
  kv.transaction((tx) => { tx.put('meta', 'x', 1) })
  closeStateStore(kv, data, (err) => { throw err }, A)
  assert.is(run(join(data, 'state')), `${A} clean\n`)
  const again = openStateStore(data, undefined, B)
  assert.is(again.transaction((tx) => tx.get<number>('meta', 'x')), 1, 'flushed and clean: kept after a reboot')
  again.close() // not a clean stop
  const moved: string[] = []
  const fresh = openStateStore(data, (m) => moved.push(m.movedTo), A)
  assert.is(moved.length, 1)
  assert.is(fresh.transaction((tx) => tx.get<number>('meta', 'x')), undefined, 'left open under boot B: rebuilt empty under boot A')
  fresh.close()
})

function realStore (records: number): string {
  const dir = join(tempDir(), 'state')
  const kv = LmdbKv.open(dir)
  kv.transaction((tx) => { for (let i = 0; i < records; i++) tx.put('vms', `vm-${String(i).padStart(6, '0')}`, { i, pad: 'x'.repeat(300) }) })
  kv.close()
  return dir
}

test('read-through: a sound store reads through and is kept, on this boot and after a clean stop', () => {
  const dir = realStore(5000)
  assert.is(readThrough(dir), null)
  writeFileSync(join(dir, RUN_FILE), `${A} open\n`)
  assert.is(openStateDir(dir, A), null)
  const kv = LmdbKv.open(dir)
  assert.equal(kv.transaction((tx) => tx.get('vms', 'vm-004999')), { i: 4999, pad: 'x'.repeat(300) })
  kv.close()
})

test('read-through: a data.mdb of garbage (which takes a reader down at open) is moved aside even on this boot', () => {
  const dir = realStore(100)
  writeFileSync(join(dir, 'data.mdb'), Buffer.alloc(statSync(join(dir, 'data.mdb')).size, 0xa5))
  writeFileSync(join(dir, RUN_FILE), `${A} open\n`)
  const m = openStateDir(dir, A)
  assert.ok(m !== null, 'moved aside')
  assert.match(m.why, /cannot be read through \(reading it killed the reader with SIGSEGV\)/)
  assert.not.ok(existsSync(join(dir, 'data.mdb')))
})

test('read-through: a truncated data.mdb (which takes a reader down with SIGBUS) is found out', () => {
  const dir = realStore(5000)
  truncateSync(join(dir, 'data.mdb'), Math.floor(statSync(join(dir, 'data.mdb')).size / 2))
  const problem = readThrough(dir)
  assert.ok(problem !== null, 'damage found')
  assert.match(problem, /killed the reader with SIG(BUS|SEGV)/)
})

test.run()
