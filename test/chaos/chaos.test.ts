// The Jepsen-style run, short (test/chaos/jepsen.ts): 3 real nodes in network namespaces under
// kill -9, SIGSTOP, a cut-off leader and kill-all, with clients reading, writing and
// compare-and-setting VM records; every history must be linearizable, no acknowledged create
// may be answered NotFound, every node alive at the end. The checker itself is shown to reject a
// stale read and a lost write on hand-made histories. `npm run chaos -- --minutes N` runs longer.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkLinearizable } from '../../sim/checkers/linearizability.ts'
import { REGISTER_MODEL, staleNotFound } from './register-model.ts'
import type { ChaosOp } from './register-model.ts'
import { runChaos } from './jepsen.ts'

let id = 0
const op = (kind: ChaosOp['kind'], call: number, ret: number | null, out: ChaosOp['out'], extra: Partial<ChaosOp> = {}): ChaosOp =>
  ({ id: id++, client: 0, kind, reg: 'r', call, ret, out, node: 0, ...extra })

test('the checker accepts a linearizable history with concurrent and unknown operations', () => {
  const h = [
    op('create', 0, 10, { ok: true, gen: 1, value: 200 }, { value: 200 }),
    op('write', 11, null, null, { value: 300 }), // unknown outcome
    op('read', 12, 20, { ok: true, gen: 1, value: 200 }),
    op('read', 21, 30, { ok: true, gen: 2, value: 300 }),
    op('cas', 31, 40, { ok: false, error: 'Conflict' }, { value: 400, expect: 1 }),
    op('cas', 41, 50, { ok: true, gen: 3, value: 500 }, { value: 500, expect: 2 }),
    op('read', 45, 60, { ok: true, gen: 3, value: 500 })
  ]
  assert.is(checkLinearizable(h, REGISTER_MODEL), 'ok')
})

test('the checker rejects a stale read', () => {
  const h = [
    op('create', 0, 10, { ok: true, gen: 1, value: 200 }, { value: 200 }),
    op('write', 11, 20, { ok: true, gen: 2, value: 300 }, { value: 300 }),
    op('read', 21, 30, { ok: true, gen: 1, value: 200 }) // after the write was acknowledged
  ]
  assert.is(checkLinearizable(h, REGISTER_MODEL), 'violation')
})

test('the checker rejects a lost acknowledged write and a cas that succeeded twice', () => {
  const lost = [
    op('create', 0, 10, { ok: true, gen: 1, value: 200 }, { value: 200 }),
    op('cas', 11, 20, { ok: true, gen: 2, value: 300 }, { value: 300, expect: 1 }),
    op('read', 30, 40, { ok: true, gen: 1, value: 200 })
  ]
  assert.is(checkLinearizable(lost, REGISTER_MODEL), 'violation')
  const twice = [
    op('create', 0, 10, { ok: true, gen: 1, value: 200 }, { value: 200 }),
    op('cas', 11, 20, { ok: true, gen: 2, value: 300 }, { value: 300, expect: 1 }),
    op('cas', 12, 21, { ok: true, gen: 2, value: 400 }, { value: 400, expect: 1 })
  ]
  assert.is(checkLinearizable(twice, REGISTER_MODEL), 'violation')
})

test('a NotFound after an acknowledged create is reported', () => {
  const h = [
    op('create', 0, 10, { ok: true, gen: 1, value: 200 }, { value: 200 }),
    op('write', 5, 8, { ok: false, error: 'NotFound' }, { value: 1 }), // concurrent: fine
    op('write', 11, 20, { ok: false, error: 'NotFound' }, { value: 300 })
  ]
  assert.equal(staleNotFound(h).map((o) => o.call), [11])
})

test('3 real nodes under kill -9, SIGSTOP, a cut-off leader and kill-all: linearizable, nothing lost', async () => {
  const r = await runChaos({ nodes: 3, workloadMs: 40_000, clients: 6, registers: 4, seed: 1, log: (l) => { console.log(`  ${l}`) } })
  console.log(`  chaos: ${r.ops} ops (${r.ok} ok, ${r.unknown} writes with unknown outcome), faults ${JSON.stringify(r.faults)}, ${(r.elapsedMs / 1000).toFixed(1)} s`)
  assert.equal(r.nonLinearizable, [], 'every register history is linearizable')
  assert.equal(r.staleNotFound.map((o) => `${o.kind} ${o.reg} at ${o.call} on n${o.node + 1}`), [], 'no NotFound for an acknowledged create')
  assert.equal(r.deadNodes, [], 'every node alive at the end')
  assert.is(r.finalReadsMissing, 0, 'every node answered the final reads')
  assert.ok(r.ok > 100, `the workload made progress (${r.ok} ok ops)`)
  assert.ok(Object.values(r.faults).reduce((a, b) => a + b, 0) >= 5, 'the nemesis acted')
})

test.run()
