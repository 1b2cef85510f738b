// The WAL's own failure cases on real files: a torn last batch (cut short, zeros, a bad checksum at
// the very end) is dropped and the log goes on from the batch before; damage anywhere else is
// refused with the segment and byte named; a crash between the snapshot file and the record that
// follows it is repaired on open as save() would have; segments roll and dead ones are deleted.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { appendFileSync, mkdirSync, readFileSync, readdirSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Entry } from '../../protocols/raft/types.ts'
import { LogDurabilityError, WalLogStore } from '../../storage/wal-log-store.ts'
import { tempDir } from './tmpdir.ts'

const conf = { voters: ['a'], learners: [] }
const ent = (index: number, term = 1, size = 10): Entry => ({ index, term, type: 'normal', data: new Uint8Array(size).fill(index & 255) })
const range = (from: number, n: number, term = 1): Entry[] => Array.from({ length: n }, (_, k) => ent(from + k, term))
const segs = (dir: string): string[] => readdirSync(dir).filter(f => f.startsWith('wal-')).sort()
const lastSeg = (dir: string): string => join(dir, segs(dir).at(-1)!)
const indexes = (s: WalLogStore): number[] => s.entries(s.firstIndex(), s.lastIndex() + 1).map(e => e.index)

/** a store with entries 1..5 saved in one batch and 6..8 in a second, the second the last thing written */
function twoBatches (): { dir: string, before: number } {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf })
  s.save({ entries: range(1, 5), hardState: { term: 1, vote: 'a', commit: 5 } })
  const before = statSync(lastSeg(dir)).size
  s.save({ entries: range(6, 3) })
  s.close()
  return { dir, before }
}

for (const [name, damage] of [
  ['cut short', (f: string, before: number) => { truncateSync(f, statSync(f).size - 5); void before }],
  ['with only its header', (f: string, before: number) => { truncateSync(f, before + 6) }],
  ['zeroed (the file grew, its data never reached the disk)', (f: string, before: number) => { const b = readFileSync(f); b.fill(0, before); writeFileSync(f, b) }],
  ['failing its checksum at the end of the file', (f: string) => { const b = readFileSync(f); b[b.length - 2] ^= 1; writeFileSync(f, b) }]
] as Array<[string, (f: string, before: number) => void]>) {
  test(`a torn last batch (${name}) is dropped, the file cut back, and appends go on`, () => {
    const { dir, before } = twoBatches()
    damage(lastSeg(dir), before)
    const s = WalLogStore.open(dir)
    assert.equal(indexes(s), [1, 2, 3, 4, 5])
    assert.equal(s.initialState().hardState, { term: 1, vote: 'a', commit: 5 })
    assert.is(statSync(lastSeg(dir)).size, before, 'the torn bytes are cut off')
    s.save({ entries: range(6, 2, 2) })
    s.close()
    const r = WalLogStore.open(dir)
    assert.equal(r.entries(1, 8).map(e => [e.index, e.term]), [[1, 1], [2, 1], [3, 1], [4, 1], [5, 1], [6, 2], [7, 2]])
    r.close()
  })
}

test('a bad checksum with a batch after it is corruption, not a torn write: refused, naming the segment and byte', () => {
  const { dir, before } = twoBatches()
  const f = lastSeg(dir)
  const b = readFileSync(f)
  b[before - 3] ^= 1 // inside the first batch of entries, which the second follows
  writeFileSync(f, b)
  assert.throws(() => WalLogStore.open(dir), (e: unknown) => e instanceof Error && /WAL segment wal-0000000000000001\.log is corrupt at byte \d+: checksum mismatch/.test(e.message))
  assert.is(readFileSync(f).length, b.length, 'nothing was cut')
})

test('a torn batch in a segment that is not the last is corruption', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf, segmentBytes: 200 })
  for (let i = 1; i <= 20; i++) s.save({ entries: [ent(i, 1, 40)] })
  s.close()
  assert.ok(segs(dir).length >= 3, `several segments (${segs(dir).join(' ')})`)
  const first = join(dir, segs(dir)[0])
  truncateSync(first, statSync(first).size - 4)
  assert.throws(() => WalLogStore.open(dir), (e: unknown) => e instanceof Error && /wal-0000000000000001\.log is corrupt at byte \d+: a batch that runs past the end/.test(e.message))
})

test('a missing segment between two others is refused', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf, segmentBytes: 200 })
  for (let i = 1; i <= 20; i++) s.save({ entries: [ent(i, 1, 40)] })
  s.close()
  const all = segs(dir)
  unlinkSync(join(dir, all[1]))
  assert.throws(() => WalLogStore.open(dir), (e: unknown) => e instanceof Error && /WAL segment .* is missing/.test(e.message))
})

test('segments roll past segmentBytes and the dead ones are deleted after compaction; a reopen reads the same log', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf, segmentBytes: 4096 })
  let most = 0
  for (let i = 1; i <= 3000; i++) {
    s.save({ entries: [ent(i, 1 + Math.floor(i / 1000), 50)], hardState: { term: 1 + Math.floor(i / 1000), vote: 'a', commit: i - 1 } })
    if (i % 500 === 0) s.compact(i - 10, conf, new Uint8Array([i & 255]), 20)
    most = Math.max(most, segs(dir).length)
  }
  // ~100 bytes a save, 500 saves between compactions: ~13 segments of 4 KiB live at most; never all 3000 saves' worth (~75)
  assert.ok(most <= 20, `dead segments are deleted (${most} at most at once)`)
  assert.is(s.firstIndex(), 2971)
  const want = s.entries(2971, 3001).map(e => [e.index, e.term, e.data[0]])
  s.close()
  const r = WalLogStore.open(dir)
  assert.is(r.firstIndex(), 2971)
  assert.is(r.snapshot().meta.index, 2990)
  assert.equal(r.entries(2971, 3001).map(e => [e.index, e.term, e.data[0]]), want)
  assert.equal(r.initialState().hardState, { term: 4, vote: 'a', commit: 2999 })
  r.close()
})

test('a crash after compact() replaced the snapshot file but before its record reached the WAL: the log restarts after the snapshot', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf })
  s.save({ entries: range(1, 10), hardState: { term: 1, vote: 'a', commit: 10 } })
  const before = statSync(lastSeg(dir)).size
  s.compact(6, conf, new Uint8Array([6]), 2)
  s.close()
  truncateSync(lastSeg(dir), before) // the BASE record never made it
  const r = WalLogStore.open(dir)
  assert.is(r.snapshot().meta.index, 6)
  assert.is(r.firstIndex(), 7)
  assert.equal(indexes(r), [7, 8, 9, 10])
  r.close()
})

test('the same crash around a snapshot install that the log disagrees with: none of the old entries stay', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf })
  s.save({ entries: range(1, 10), hardState: { term: 1, vote: 'a', commit: 3 } })
  const before = statSync(lastSeg(dir)).size
  s.save({ snapshot: { meta: { index: 8, term: 5, conf }, data: new Uint8Array([8]) } })
  s.close()
  truncateSync(lastSeg(dir), before)
  const r = WalLogStore.open(dir)
  assert.is(r.snapshot().meta.index, 8)
  assert.is(r.lastIndex(), 8)
  assert.equal(r.entries(9, 9), [])
  assert.is(r.term(8), 5)
  r.close()
})

test('an install the log disagrees with, then appends after it, replays to the new log (not the old entries below it)', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf, segmentBytes: 300 })
  s.save({ entries: range(1, 10) })
  s.save({ snapshot: { meta: { index: 8, term: 5, conf }, data: new Uint8Array([8]) } })
  s.save({ entries: range(9, 4, 5) })
  s.close()
  const r = WalLogStore.open(dir)
  assert.equal(r.entries(9, 13).map(e => [e.index, e.term]), [[9, 5], [10, 5], [11, 5], [12, 5]])
  assert.is(r.firstIndex(), 9)
  r.close()
})

test('a store that never finished its creation (segments, no snapshot file) starts empty', () => {
  const dir = tempDir()
  appendFileSync(join(dir, 'wal-0000000000000001.log'), Buffer.from('half a creation'))
  const s = WalLogStore.open(dir, { initialConf: conf })
  assert.is(s.lastIndex(), 0)
  assert.equal(s.initialState().conf, conf)
  s.close()
})

test('a snapshot that cannot be written fails the save as a durability error; the store takes no more writes; a reopen has the log before it', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir, { initialConf: conf })
  s.save({ entries: range(1, 6), hardState: { term: 1, vote: 'a', commit: 6 } })
  mkdirSync(join(dir, 'snapshot.tmp')) // the temporary file cannot be created: EISDIR
  assert.throws(() => { s.compact(4, conf, new Uint8Array([4])) }, (e: unknown) => e instanceof LogDurabilityError && /snapshot write failed/.test((e as Error).message))
  assert.throws(() => { s.save({ entries: range(7, 1) }) }, (e: unknown) => e instanceof LogDurabilityError && /restart to recover/.test((e as Error).message))
  s.close()
  const r = WalLogStore.open(dir)
  assert.equal(indexes(r), [1, 2, 3, 4, 5, 6])
  assert.is(r.snapshot().meta.index, 0)
  r.close()
})

test.run()
