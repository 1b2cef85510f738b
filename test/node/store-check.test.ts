// A node with bad data in its own Raft store (a real WAL store, with bad contents or damaged bytes)
// refuses to start with one paragraph naming the directory and the way out and exit code
// STORE_CORRUPT_EXIT, instead of a stack trace in a restart loop. And a log kept by the LMDB store
// of earlier releases is migrated on open, entries and hard state intact.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rmLmdbKey, writeLmdbLog } from '../storage/lmdb-log-fixture.ts'
import { WalLogStore } from '../../storage/wal-log-store.ts'
import type { Entry, HardState, Snapshot } from '../../protocols/raft/types.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { CorruptStoreError, STORE_CORRUPT_EXIT, checkLogStore, openCheckedLogStore } from '../../node/store-check.ts'
import { DirLockedError } from '../../storage/dir-lock.ts'
import { ROOT } from '../cluster/harness.ts'

const conf = { voters: ['a'], learners: [] }
const good = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: '12D3KooWA', name: 'a' }, at: 1, key: 'k' })
const ENTRIES: Entry[] = [{ term: 2, index: 1, type: 'normal', data: new Uint8Array(0) }, { term: 2, index: 2, type: 'normal', data: good }]

function fresh (then?: { entries?: Entry[], hardState?: HardState, snapshot?: Snapshot }): string {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-storecheck-'))
  const s = WalLogStore.open(join(dir, 'raft'), { initialConf: conf })
  s.save({ hardState: { term: 2, vote: 'a', commit: 2 }, entries: ENTRIES })
  if (then != null) s.save(then)
  s.close()
  return dir
}

/** flips one byte in the middle of the store's first segment (inside a batch that is not the last) */
function flipByte (dir: string): void {
  const seg = readdirSync(join(dir, 'raft')).filter(f => f.startsWith('wal-')).sort()[0]
  const file = join(dir, 'raft', seg)
  const b = readFileSync(file)
  b[20] ^= 0x40
  writeFileSync(file, b)
}

const garbage = new Uint8Array(64).map((_, i) => (i * 53 + 3) & 0xff)

test('a sane store opens and checks clean', () => {
  const dir = fresh()
  const s = openCheckedLogStore(dir)
  assert.is(checkLogStore(s), null)
  s.close()
  rmSync(dir, { recursive: true, force: true })
})

const cases: Array<[string, () => string, RegExp]> = [
  ['an undecodable entry', () => fresh({ entries: [{ term: 2, index: 2, type: 'normal', data: garbage }] }), /log entry 2/],
  ['a garbage snapshot', () => fresh({ snapshot: { meta: { index: 5, term: 2, conf }, data: garbage } }), /snapshot at index 5/],
  ['a hard state with term 2^53-1', () => fresh({ hardState: { term: Number.MAX_SAFE_INTEGER, vote: null, commit: 0 } }), /hard state term/],
  ['a hard state committing beyond the log', () => fresh({ hardState: { term: 2, vote: null, commit: 99 } }), /commit 99/],
  ['a damaged byte inside the WAL', () => { const d = fresh({ hardState: { term: 3, vote: null, commit: 2 } }); flipByte(d); return d }, /cannot be read: .*corrupt at byte 0: checksum mismatch/]
]
for (const [name, make, why] of cases) {
  test(`openCheckedLogStore refuses ${name}`, () => {
    const dir = make()
    try {
      openCheckedLogStore(dir).close()
      assert.unreachable('opened')
    } catch (e) {
      assert.instance(e, CorruptStoreError)
      assert.match((e as Error).message, why)
      assert.match((e as Error).message, join(dir, 'raft'))
    } finally { rmSync(dir, { recursive: true, force: true }) }
  })
}

test('an LMDB log of an earlier release is migrated on open: snapshot, entries and hard state carried over, the LMDB files gone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-storecheck-'))
  const es: Entry[] = Array.from({ length: 2500 }, (_, k) => ({ term: 3, index: k + 1, type: 'normal' as const, data: k === 0 ? new Uint8Array(0) : good }))
  const snapData = new StateMachine(new MemoryKv()).snapshot()
  // as an earlier release left it after compacting at 1000 with 100 kept: 901..2500 stored
  mkdirSync(join(dir, 'raft'))
  writeLmdbLog(join(dir, 'raft'), { snapshot: { meta: { index: 1000, term: 3, conf }, data: snapData }, offset: 900, offsetTerm: 3, hardState: { term: 3, vote: 'a', commit: 2400 }, entries: es.slice(900) })
  const migrated: unknown[] = []
  const s = openCheckedLogStore(dir, (m) => migrated.push(m))
  try {
    assert.equal(migrated, [{ snapshotIndex: 1000, entries: 1500, lastIndex: 2500, commit: 2400 }])
    assert.is(s.snapshot().meta.index, 1000)
    assert.ok(Buffer.from(s.snapshot().data).equals(snapData), 'the snapshot data byte for byte')
    assert.is(s.firstIndex(), 1001, 'the entries kept behind the snapshot are not carried over')
    assert.is(s.lastIndex(), 2500)
    assert.equal(s.initialState().hardState, { term: 3, vote: 'a', commit: 2400 })
    assert.equal(s.entries(1001, 2501).map(e => [e.index, e.term, Buffer.from(e.data).equals(good)]), es.slice(1000).map(e => [e.index, 3, true]))
    assert.not.ok(existsSync(join(dir, 'raft', 'data.mdb')), 'the LMDB log is gone')
    assert.not.ok(existsSync(join(dir, 'raft', 'wal.migrating')), 'no temporary directory left')
  } finally { s.close() }
  // and the next open is an ordinary one
  const again = openCheckedLogStore(dir, (m) => migrated.push(m))
  assert.is(again.lastIndex(), 2500)
  again.close()
  assert.is(migrated.length, 1)
  rmSync(dir, { recursive: true, force: true })
})

test('an LMDB log that cannot be migrated (a hole, a bad snapshot record) is refused naming data.mdb and what is wrong, and left as it was', () => {
  const cases: Array<[string, (dir: string) => void, RegExp]> = [
    ['a hole', (d) => writeLmdbLog(d, { snapshot: { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) }, offset: 0, offsetTerm: 0, entries: [1, 2, 4].map((index) => ({ index, term: 1, type: 'normal' as const, data: good })) }), /hole at 3/],
    ['no snapshot record', (d) => { writeLmdbLog(d, { snapshot: { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) }, offset: 0, offsetTerm: 0, entries: [] }); rmLmdbKey(d, 'snapshot') }, /no snapshot record/]
  ]
  for (const [what, make, why] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'blixard-storecheck-'))
    mkdirSync(join(dir, 'raft'))
    make(join(dir, 'raft'))
    const before = readFileSync(join(dir, 'raft', 'data.mdb'))
    try {
      openCheckedLogStore(dir).close()
      assert.unreachable(`${what}: opened`)
    } catch (e) {
      assert.instance(e, CorruptStoreError, what)
      assert.match((e as Error).message, join(dir, 'raft', 'data.mdb'))
      assert.match((e as Error).message, why)
    }
    assert.ok(readFileSync(join(dir, 'raft', 'data.mdb')).equals(before), `${what}: the LMDB log is untouched`)
    assert.not.ok(existsSync(join(dir, 'raft', 'snapshot')), `${what}: no WAL took its place`)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('an LMDB log is migrated under the directory lock: while another live process holds it, the open is refused and nothing moves', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-storecheck-'))
  mkdirSync(join(dir, 'raft'))
  writeLmdbLog(join(dir, 'raft'), { snapshot: { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) }, offset: 0, offsetTerm: 0, entries: [{ index: 1, term: 1, type: 'normal', data: good }] })
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
    const { lockDir } = await import(${JSON.stringify(new URL('../../storage/dir-lock.ts', import.meta.url).href)})
    lockDir(process.argv[1]); process.stdout.write('locked\\n'); process.stdin.on('data', () => process.exit(0))
  `, join(dir, 'raft')], { stdio: ['pipe', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('locked')) resolve() }))
  try {
    assert.throws(() => openCheckedLogStore(dir), (e: unknown) => e instanceof DirLockedError && e.pid === child.pid)
    assert.ok(existsSync(join(dir, 'raft', 'data.mdb')), 'the LMDB log is still there')
    assert.not.ok(existsSync(join(dir, 'raft', 'snapshot')), 'no WAL was made beside it')
  } finally {
    child.stdin.write('go\n')
    await new Promise((resolve) => child.on('exit', resolve))
  }
  const s = openCheckedLogStore(dir)
  assert.is(s.lastIndex(), 1, 'migrated once the other process let go')
  s.close()
  rmSync(dir, { recursive: true, force: true })
})

test('blixard-node on a corrupt store exits with STORE_CORRUPT_EXIT and one clear paragraph, every time', () => {
  const dir = fresh({ entries: [{ term: 2, index: 2, type: 'normal', data: garbage }] })
  for (let run = 0; run < 2; run++) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'node/main-node.ts'), '--data-dir', dir, '--name', 'x'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
    assert.is(r.status, STORE_CORRUPT_EXIT, r.stderr)
    assert.match(r.stderr, /blixard-node: the Raft store .*raft holds bad data \(log entry 2/)
    assert.match(r.stderr, /move its data directory aside/)
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace')
  }
  rmSync(dir, { recursive: true, force: true })
})

test.run()
