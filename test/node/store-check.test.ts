// A node with bad data in its own Raft store (a real LMDB store, corrupted here) refuses to start
// with one paragraph naming the file and the way out and exit code STORE_CORRUPT_EXIT, instead of
// a stack trace in a restart loop.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { open } from 'lmdb'
import { LmdbLogStore } from '../../storage/lmdb-log-store.ts'
import { encodeEnvelope } from '../../storage/state-machine.ts'
import { encodeCbor } from '../../storage/codec.ts'
import { CorruptStoreError, STORE_CORRUPT_EXIT, checkLogStore, openCheckedLogStore } from '../../node/store-check.ts'
import { ROOT } from '../cluster/harness.ts'

const conf = { voters: ['a'], learners: [] }
const good = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: '12D3KooWA', name: 'a' }, at: 1, key: 'k' })

function fresh (): string {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-storecheck-'))
  const s = LmdbLogStore.open(join(dir, 'raft'), { initialConf: conf })
  s.save({ hardState: { term: 2, vote: 'a', commit: 2 }, entries: [{ term: 2, index: 1, type: 'normal', data: new Uint8Array(0) }, { term: 2, index: 2, type: 'normal', data: good }] })
  s.close()
  return dir
}

/** writes raw bytes under `key` of the store's `db` ('log' keyed by index, 'meta' by name) */
function corrupt (dir: string, db: 'log' | 'meta', key: number | string, value: Uint8Array): void {
  const env = open({ path: join(dir, 'raft'), maxDbs: 4, encoding: 'binary' })
  const d = env.openDB<Uint8Array, number | string>(db, { encoding: 'binary' })
  d.putSync(key, value)
  void env.close()
}

const garbage = new Uint8Array(64).map((_, i) => (i * 53 + 3) & 0xff)
const entryBytes = (data: Uint8Array): Uint8Array => { const b = new Uint8Array(9 + data.byteLength); new DataView(b.buffer).setFloat64(1, 2); b.set(data, 9); return b }

test('a sane store opens and checks clean', () => {
  const dir = fresh()
  const s = openCheckedLogStore(dir)
  assert.is(checkLogStore(s), null)
  s.close()
  rmSync(dir, { recursive: true, force: true })
})

const cases: Array<[string, (dir: string) => void, RegExp]> = [
  ['an undecodable entry', (d) => { corrupt(d, 'log', 2, entryBytes(garbage)) }, /log entry 2/],
  ['a garbage snapshot', (d) => { corrupt(d, 'meta', 'snapshot', encodeCbor({ meta: { index: 5, term: 2, conf }, data: garbage })) }, /snapshot at index 5/],
  ['a hard state with term 2^53-1', (d) => { corrupt(d, 'meta', 'hardState', encodeCbor({ term: Number.MAX_SAFE_INTEGER, vote: null, commit: 0 })) }, /hard state term/],
  ['a hard state committing beyond the log', (d) => { corrupt(d, 'meta', 'hardState', encodeCbor({ term: 2, vote: null, commit: 99 })) }, /commit 99/],
  ['undecodable hard state bytes', (d) => { corrupt(d, 'meta', 'hardState', garbage) }, /cannot be read/]
]
for (const [name, damage, why] of cases) {
  test(`openCheckedLogStore refuses ${name}`, () => {
    const dir = fresh()
    damage(dir)
    try {
      openCheckedLogStore(dir).close()
      assert.unreachable('opened')
    } catch (e) {
      assert.instance(e, CorruptStoreError)
      assert.match((e as Error).message, why)
      assert.match((e as Error).message, join(dir, 'raft', 'data.mdb'))
    } finally { rmSync(dir, { recursive: true, force: true }) }
  })
}

test('blixard-node on a corrupt store exits with STORE_CORRUPT_EXIT and one clear paragraph, every time', () => {
  const dir = fresh()
  corrupt(dir, 'log', 2, entryBytes(garbage))
  for (let run = 0; run < 2; run++) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'node/main-node.ts'), '--data-dir', dir, '--name', 'x'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
    assert.is(r.status, STORE_CORRUPT_EXIT, r.stderr)
    assert.match(r.stderr, /blixard-node: the Raft store .*data\.mdb holds bad data \(log entry 2/)
    assert.match(r.stderr, /move its data directory aside/)
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace')
  }
  rmSync(dir, { recursive: true, force: true })
})

test.run()
