// The lazy listings (StateMachine.each / eachVm) that list answers are drawn from: across page
// boundaries they give exactly what the whole-table listings give, on LMDB and in memory, and a
// caller that stops early has read only the pages it used.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Kv, RangeOptions, Table } from '../../storage/kv.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../../storage/state-machine.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { spec } from './sm-fixtures.ts'
import { tempDir } from './tmpdir.ts'

// ids that sort in byte order against their prefixes, past the BMP, and across two pages of 64
const ids = [
  ...Array.from({ length: 150 }, (_, i) => `vm-${String(i).padStart(3, '0')}`),
  'vm-', 'vm-0', 'vm-00', 'vm-\u00e9', 'vm-\uffff', 'vm-\u{1f600}', 'a', 'z'
]
const vm = (id: string, node: string | null): VmRecord => ({
  id, spec: spec(`n-${id}`), generation: 1, desired: 'running', assignedNode: node,
  status: { phase: 'pending', reason: '', node: null, at: 1 }, createdAt: 1, updatedAt: 1
})

for (const [name, make] of [['MemoryKv', () => new MemoryKv()], ['LmdbKv', () => LmdbKv.open(tempDir())]] as Array<[string, () => Kv]>) {
  test(`${name}: each/eachVm list what listVms lists, in order, across pages`, () => {
    const kv = make()
    kv.transaction((tx) => { ids.forEach((id, i) => tx.put('vms', id, vm(id, i % 3 === 0 ? null : 'n1'))) })
    const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
    assert.equal([...sm.eachVm()].map(v => v.id), sm.listVms().map(v => v.id))
    assert.is(sm.listVms().length, ids.length)
    assert.equal([...sm.eachVm({ node: null })].map(v => v.id), sm.listVms({ node: null }).map(v => v.id))
    assert.equal([...sm.each('vms')], sm.listVms())
    assert.equal([...sm.each('nodes')], [])
    kv.close()
  })
}

test('a caller that stops after 10 VMs has read one page, not the table', () => {
  const kv = new MemoryKv()
  kv.transaction((tx) => { for (let i = 0; i < 1000; i++) tx.put('vms', `vm-${String(i).padStart(4, '0')}`, vm(`vm-${i}`, null)) })
  let rows = 0
  const counting = new Proxy(kv, {
    get (target, prop, recv) {
      if (prop === 'range') return <T>(t: Table, o?: RangeOptions): Array<[string, T]> => { const r = target.range<T>(t, o); rows += r.length; return r }
      const v = Reflect.get(target, prop, recv) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
  const sm = new StateMachine(counting, UNCHECKED_AUTHORITY)
  let n = 0
  for (const _ of sm.eachVm()) if (++n === 10) break
  assert.ok(rows <= 64, `${rows} rows decoded for 10 VMs`)
})

test.run()
