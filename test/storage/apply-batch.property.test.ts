// applyBatch: a batch of committed entries in one store transaction gives exactly the results
// and the state of applying them one by one, on LmdbKv (what nodes run) and MemoryKv (the
// simulator), whatever the batch boundaries; a rejected command inside a batch leaves nothing.
// Also the savepoint itself (OverlayTx): reads see its writes, ranges merge, commit and drop.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { OverlayTx } from '../../storage/overlay-tx.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'
import { envelopeArb } from './command-arbitraries.ts'
import { tempDir, removeDir } from './tmpdir.ts'
import { seededSigner } from '../../protocols/auth.ts'

/** admins are real (Ed25519) peer ids */
const [PA, PB] = [1, 2].map((n) => seededSigner(new Uint8Array(32).fill(n)).peerId)

const seqArb = fc.array(envelopeArb(), { minLength: 1, maxLength: 60 })

/** Cuts `n` items into consecutive batches at the given (sorted, deduplicated) points. */
function cut<T> (items: T[], points: number[]): T[][] {
  const out: T[][] = []
  let from = 0
  for (const p of [...new Set(points.map((x) => x % (items.length + 1)))].sort((a, b) => a - b)) {
    if (p > from) { out.push(items.slice(from, p)); from = p }
  }
  if (from < items.length) out.push(items.slice(from))
  return out
}

test('batches of any shape equal one-by-one apply: same results, same full state hash (LmdbKv and MemoryKv)', () => {
  fc.assert(fc.property(seqArb, fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (envs, points, lmdb) => {
    const dirs: string[] = []
    const open = (): StateMachine => {
      if (!lmdb) return new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
      const d = tempDir(); dirs.push(d)
      return new StateMachine(LmdbKv.open(d), UNCHECKED_AUTHORITY)
    }
    try {
      const one = open()
      const many = open()
      // gaps in the indexes (conf entries are not applied) and the leader's empty no-op too
      const entries = envs.map((env, i) => ({ index: 2 * i + 3, data: encodeEnvelope(env), key: env.key }))
      entries.push({ index: 2 * envs.length + 4, data: new Uint8Array(0), key: undefined })
      const expected = entries.map((e) => one.apply(e.index, e.data))
      const got = cut(entries, points).flatMap((b) => many.applyBatch(b))
      assert.equal(got, expected)
      assert.is(many.fullStateHash(), one.fullStateHash())
      assert.is(many.applied(), one.applied())
      // the whole thing retried in one batch: a command with a key answers its key's first result
      const first = new Map<string, unknown>()
      for (const [i, e] of entries.entries()) if (e.key !== undefined && !first.has(e.key)) first.set(e.key, expected[i])
      const modelHash = many.stateHash()
      const base = many.applied()
      const again = many.applyBatch(entries.map((e, i) => ({ index: base + 1 + i, data: e.data })))
      for (const [i, e] of entries.entries()) if (e.key !== undefined) assert.equal(again[i], first.get(e.key))
      if (entries.every((e) => e.key !== undefined || e.data.byteLength === 0)) assert.is(many.stateHash(), modelHash, 'retries change nothing')
    } finally {
      for (const d of dirs) removeDir(d)
    }
  }), { numRuns: 80 })
})

test('indexes at or below applied inside a batch answer Conflict and change nothing', () => {
  const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  const env = { cmd: { type: 'AddAdmin' as const, peerId: PA, name: 'a' }, at: 1, key: 'k1' }
  const r = sm.applyBatch([{ index: 5, data: encodeEnvelope(env) }, { index: 5, data: encodeEnvelope({ ...env, key: 'k2' }) }, { index: 4, data: new Uint8Array(0) }])
  assert.is(r[0].ok, true)
  assert.equal(r.slice(1).map((x) => x.ok ? 'ok' : x.error.kind), ['Conflict', 'Conflict'])
  assert.is(sm.applied(), 5)
  assert.is(sm.listAdmins().length, 1)
})

test('a store failure inside a batch leaves nothing of it (LmdbKv)', () => {
  const d = tempDir()
  const kv = LmdbKv.open(d)
  const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
  sm.apply(1, encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: PA, name: 'a' }, at: 1, key: 'a' }))
  const before = sm.fullStateHash()
  const realPutRaw = kv.putRaw.bind(kv)
  let calls = 0
  kv.putRaw = (t, k, b) => { if (++calls > 3) throw new Error('disk full'); realPutRaw(t, k, b) }
  assert.throws(() => sm.applyBatch([
    { index: 2, data: encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: PB, name: 'b' }, at: 2, key: 'b' }) },
    { index: 3, data: encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: '12D3KooWC', name: 'c' }, at: 3, key: 'c' }) }
  ]), /disk full/)
  kv.putRaw = realPutRaw
  assert.is(sm.applied(), 1)
  assert.is(sm.fullStateHash(), before)
  kv.close()
  removeDir(d)
})

test('OverlayTx: reads see its writes over the base; range merges, honours start/end/limit; drop discards; commit writes through', () => {
  const kv = new MemoryKv()
  for (const k of ['a', 'b', 'c', 'd']) kv.put('nodes', k, { v: k })
  kv.transaction((tx) => {
    const o = new OverlayTx(tx)
    o.delete('nodes', 'a')
    o.put('nodes', 'bb', { v: 'bb' })
    o.put('nodes', 'c', { v: 'C' })
    assert.is(o.get('nodes', 'a'), undefined)
    assert.equal(o.get('nodes', 'c'), { v: 'C' })
    assert.equal(o.get('nodes', 'd'), { v: 'd' })
    assert.equal(o.range('nodes').map(([k]) => k), ['b', 'bb', 'c', 'd'])
    assert.equal(o.range('nodes', { limit: 2 }).map(([k]) => k), ['b', 'bb'], 'the limit counts after the deletion')
    assert.equal(o.range('nodes', { start: 'bb', end: 'd' }), [['bb', { v: 'bb' }], ['c', { v: 'C' }]])
    assert.equal(o.rawRange('nodes').map(([k]) => k), ['b', 'bb', 'c', 'd'])
    assert.equal(o.range('vms'), [], 'an untouched table reads through')
    // dropped: the base never saw any of it
    assert.equal(tx.range('nodes').map(([k]) => k), ['a', 'b', 'c', 'd'])
    const v = o.get<{ v: string }>('nodes', 'c')!
    v.v = 'mutated'
    assert.equal(o.get('nodes', 'c'), { v: 'C' }, 'values read back are copies')
    const o2 = new OverlayTx(tx)
    o2.delete('nodes', 'b')
    o2.put('nodes', 'e', 1)
    o2.clear('vms')
    o2.commit()
  })
  assert.equal(kv.range('nodes').map(([k]) => k), ['a', 'c', 'd', 'e'])
})

test.run()
