// MemoryKv and LmdbKv behave the same: key order, ranges, atomic transactions, copies on read.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Kv } from '../../storage/kv.ts'
import { compareKeys } from '../../storage/kv.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { OverlayTx } from '../../storage/overlay-tx.ts'
import { tempDir } from './tmpdir.ts'

const kinds: Array<[string, () => Kv]> = [
  ['MemoryKv', () => new MemoryKv()],
  ['LmdbKv', () => LmdbKv.open(tempDir(), { sync: 'never' })]
]

for (const [name, make] of kinds) {
  test(`${name}: keys come back in code point order, ranges are [start, end)`, () => {
    const kv = make()
    const keys = ['b', 'a', 'ab', 'Z', '\u00e9', '\uffff', '\u{1f600}', 'a\u0000x'.replace('\u0000', '-')]
    for (const k of keys) kv.put('nodes', k, { k })
    const got = kv.range<{ k: string }>('nodes').map(([k]) => k)
    assert.equal(got, [...keys].sort(compareKeys))
    assert.equal(kv.range('nodes', { start: 'a', end: 'b' }).map(([k]) => k), ['a', 'a-x', 'ab'])
    assert.equal(kv.range('nodes', { limit: 2 }).length, 2)
    kv.close()
  })

  test(`${name}: a transaction that throws leaves nothing behind`, () => {
    const kv = make()
    kv.put('vms', 'keep', 1)
    assert.throws(() => kv.transaction(tx => {
      tx.put('vms', 'new', 2)
      tx.delete('vms', 'keep')
      tx.put('vms', 'keep2', 3)
      assert.is(tx.get('vms', 'new'), 2, 'reads its own writes')
      throw new Error('boom')
    }), /boom/)
    assert.equal(kv.range('vms'), [['keep', 1]])
    const r = kv.transaction(tx => { tx.put('vms', 'a', { x: [1] }); tx.clear('admins'); return 7 })
    assert.is(r, 7)
    assert.equal(kv.get('vms', 'a'), { x: [1] })
    kv.close()
  })

  test(`${name}: has() answers as get() !== undefined, inside a transaction, through an overlay, and after a rollback`, () => {
    const kv = make()
    kv.put('admins', 'p', { peerId: 'p' })
    kv.put('meta', 'zero', 0)
    assert.ok(kv.has('admins', 'p'))
    assert.ok(kv.has('meta', 'zero'), 'a falsy value is present')
    assert.not.ok(kv.has('admins', 'q'))
    assert.not.ok(kv.has('nodes', 'p'), 'tables are separate')
    assert.throws(() => kv.transaction((tx) => {
      tx.put('admins', 'q', 1)
      tx.delete('admins', 'p')
      assert.ok(tx.has('admins', 'q'), 'sees its own put')
      assert.not.ok(tx.has('admins', 'p'), 'sees its own delete')
      const o = new OverlayTx(tx)
      o.put('admins', 'r', 1)
      o.delete('admins', 'q')
      assert.ok(o.has('admins', 'r'))
      assert.not.ok(o.has('admins', 'q'))
      assert.not.ok(tx.has('admins', 'r'), 'an overlay not committed is not in the base')
      o.clear('admins')
      assert.not.ok(o.has('admins', 'r'))
      throw new Error('roll back')
    }), /roll back/)
    assert.ok(kv.has('admins', 'p'))
    assert.not.ok(kv.has('admins', 'q'))
    kv.close()
  })

  test(`${name}: values read back are copies`, () => {
    const kv = make()
    const v = { list: [1, 2] }
    kv.put('volumes', 'x', v)
    v.list.push(3)
    const got = kv.get<{ list: number[] }>('volumes', 'x')
    assert.equal(got, { list: [1, 2] })
    got?.list.push(4)
    assert.equal(kv.get('volumes', 'x'), { list: [1, 2] })
    kv.close()
  })

  test(`${name}: clear and rawRange`, () => {
    const kv = make()
    kv.put('admins', 'p', 1)
    kv.put('admins', 'q', 2)
    assert.is(kv.rawRange('admins').length, 2)
    assert.ok(kv.rawRange('admins')[0][1] instanceof Uint8Array)
    kv.clear('admins')
    assert.equal(kv.range('admins'), [])
    kv.close()
  })
}

test('LmdbKv keeps its data across a reopen', () => {
  const dir = tempDir()
  let kv = LmdbKv.open(dir, { sync: 'always' })
  kv.transaction(tx => { tx.put('meta', 'applied', 42); tx.put('nodes', 'n', { id: 'n' }) })
  kv.close()
  kv = LmdbKv.open(dir)
  assert.is(kv.get('meta', 'applied'), 42)
  assert.equal(kv.get('nodes', 'n'), { id: 'n' })
  kv.close()
})

test('LmdbKv lazy: commits survive a reopen, and flush() never shows in the tables', () => {
  const dir = tempDir()
  let kv = LmdbKv.open(dir, { sync: 'lazy' })
  for (let i = 0; i < 20; i++) kv.transaction(tx => { tx.put('vms', `v${i}`, i) })
  const before = kv.rawRange('meta').length
  kv.flush()
  assert.is(kv.rawRange('meta').length, before)
  kv.close()
  kv = LmdbKv.open(dir, { sync: 'lazy' })
  assert.is(kv.range('vms').length, 20)
  kv.close()
})

test.run()
