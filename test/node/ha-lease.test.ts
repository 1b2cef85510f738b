// The two lease objects the daemon and the simulator drive (node/core/lease-holder.ts,
// node/core/lease-keeper.ts), as scripts over a fake clock and hand-made node records.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { NodeRecord } from '../../protocols/model.ts'
import type { Command } from '../../protocols/commands.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { schedulePass } from '../../node/scheduler.ts'
import { silentLogger } from '../../node/log.ts'
import { FLAP_BACKOFF_BASE_MS } from '../../storage/reschedule-rules.ts'
import { LeaseHolder } from '../../node/core/lease-holder.ts'
import { LeaseKeeper } from '../../node/core/lease-keeper.ts'
import { hostFenceAfterMs, leaderDownAfterMs } from '../../node/core/lease-rules.ts'
import type { LeaseSettings } from '../../node/core/lease-rules.ts'

const S: LeaseSettings = { leaseMs: 10_000, renewEveryMs: 2_000, driftRatio: 0.01, fenceMarginMs: 500, downMarginMs: 700 }

function rec (id: string, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id, name: id, addrs: [], labels: {}, capacity: { cpu: 1, memoryMiB: 1, diskGiB: 1 }, overcommit: { cpu: 1, memory: 1, disk: 1 },
    capabilities: [], maxVms: null, state: 'ready', registeredAt: 0, updatedAt: 0, ...over
  }
}

test('holder: no guest starts before the first acked renewal; the deadline counts from the send', () => {
  const h = new LeaseHolder(S, 1_000)
  assert.match(h.mayRun(1_000, rec('a'))!, /no lease yet/)
  assert.equal(h.plan(rec('a')), { kind: 'renew', epoch: 0 })
  assert.is(h.acked(1_500, 0), 1_500 + hostFenceAfterMs(S))
  assert.is(h.mayRun(2_000, rec('a')), null)
  // an older request acked late does not pull the deadline back
  assert.is(h.acked(1_200, 0), 1_500 + hostFenceAfterMs(S))
  assert.match(h.mayRun(1_500 + hostFenceAfterMs(S), rec('a'))!, /lease lost/)
  assert.is(h.verdict(1_500 + hostFenceAfterMs(S)).kind, 'fence')
})

test('holder: marked down → clean up before renewing with the new epoch; then ready again', () => {
  const h = new LeaseHolder(S, 0)
  h.acked(0, 0)
  const down = rec('a', { liveness: 'down', leaseEpoch: 1, downReason: 'lease expired: x' })
  assert.equal(h.plan(down), { kind: 'cleanup', epoch: 1, why: 'this node was marked down (lease expired: x)' })
  assert.match(h.mayRun(10, down)!, /marked down/)
  h.cleanedUp(1)
  assert.equal(h.plan(down), { kind: 'renew', epoch: 1 })
  h.acked(100, 1)
  assert.is(h.mayRun(200, rec('a', { leaseEpoch: 1 })), null)
  // a fresh daemon that finds itself down cleans up first too
  const fresh = new LeaseHolder(S, 0)
  assert.is(fresh.plan(down).kind, 'cleanup')
  // and one whose epoch moved while it held a lease (marked down and the replica already past it)
  const moved = new LeaseHolder(S, 0)
  moved.acked(0, 0)
  assert.is(moved.plan(rec('a', { leaseEpoch: 2 })).kind, 'cleanup')
})

test('keeper: renewals batch into one entry; the latest epoch per node wins', () => {
  const k = new LeaseKeeper('L', S)
  assert.is(k.takeBatch(), null)
  k.enqueue('a', 0); k.enqueue('b', 3); k.enqueue('a', 1)
  assert.equal(k.takeBatch(), { type: 'RenewLeases', leases: [{ node: 'a', epoch: 1 }, { node: 'b', epoch: 3 }], leaseMs: 10_000 })
  assert.is(k.takeBatch(), null)
})

test('keeper: marks down from its own election, with the seq it saw; a renewal seen in between saves the node', () => {
  const k = new LeaseKeeper('L', S)
  const after = leaderDownAfterMs(S)
  k.leadership(true, 1_000)
  const nodes = [rec('a', { leaseSeq: 4 }), rec('b', { leaseSeq: 9 })]
  assert.equal(k.due(nodes, 1_000 + after - 1, 0), [])
  // b renewed (seq 10) at 5 000 on the leader's clock
  const later = [rec('a', { leaseSeq: 4 }), rec('b', { leaseSeq: 10 })]
  k.observe(later, 5_000)
  const d = k.due(later, 1_000 + after, 1_000_000)
  assert.equal(d.map((x) => [x.cmd.node, x.cmd.epoch, x.cmd.seq]), [['a', 0, 4]])
  assert.is(d[0].cmd.expiredAt, 1_000_000, 'expiredAt is the leader wall time of the expiry')
  assert.equal(k.due(later, 1_000 + after + 100, 0), [], 'not proposed twice for one judgement')
  k.markFailed('a')
  assert.is(k.due(later, 1_000 + after + 200, 0).length, 1, 'judged again after a failed proposal')
  assert.equal(k.due(later, 5_000 + after, 0).map((x) => x.cmd.node), ['b'])
})

test('keeper: a node registered after the election counts from when it appeared, not from the election', () => {
  const k = new LeaseKeeper('L', S)
  const after = leaderDownAfterMs(S)
  k.leadership(true, 0)
  assert.equal(k.due([rec('a')], 100, 0), [])
  // b registers at 5 000 and has not renewed yet when the election's lease would have run out
  const both = [rec('a'), rec('b')]
  k.observe(both, 5_000)
  assert.equal(k.due(both, after, 0).map((x) => x.cmd.node), ['a'], 'a (there at the election) is due; b is not')
  assert.equal(k.due(both, 5_000 + after - 1, 0).map((x) => x.cmd.node), [])
  assert.equal(k.due(both, 5_000 + after, 0).map((x) => x.cmd.node), ['b'], 'b is judged from when it appeared')
})

test('keeper: a deposed leader forgets everything; a new term counts from its election again', () => {
  const k = new LeaseKeeper('L', S)
  k.leadership(true, 0)
  k.enqueue('a', 0)
  k.leadership(false, 50)
  assert.is(k.takeBatch(), null)
  assert.equal(k.due([rec('a')], 1e9, 0), [])
  k.leadership(true, 100_000)
  assert.equal(k.due([rec('a')], 100_000 + leaderDownAfterMs(S) - 1, 0), [])
  assert.is(k.due([rec('a')], 100_000 + leaderDownAfterMs(S), 0).length, 1)
  assert.equal(k.due([rec('L')], 1e9, 0), [], 'never itself')
})

test('scheduler: a VM rescheduled off a host is not placed back there within its flap backoff', async () => {
  const h = harness()
  for (const id of ['a', 'b']) assert.ok(h.run(registerNode(id)).ok)
  assert.ok(h.run({ type: 'UpdateNode', id: 'b', state: 'cordoned' }).ok) // a is then the only place
  assert.ok(h.run({ type: 'CreateVm', id: 'v1', spec: spec('v1') }).ok)
  assert.ok(h.run({ type: 'AssignVm', id: 'v1', node: 'a' }).ok)
  assert.ok(h.run({ type: 'MarkNodeDown', node: 'a', epoch: 0, seq: 0, expiredAt: 0, reason: 'test' }).ok)
  const downAt = h.index() * 1000
  assert.ok(h.run({ type: 'RenewLeases', leases: [{ node: 'a', epoch: 1 }], leaseMs: 9_000 }).ok) // back ready
  const pass = async (now: number): Promise<Command[]> => {
    const proposed: Command[] = []
    await schedulePass({ sm: h.sm, load: { hints: () => new Map() }, isLeader: () => true, propose: async (env) => { proposed.push(env.cmd); return { ok: true } }, log: silentLogger, now: () => now })
    return proposed
  }
  assert.equal(await pass(downAt + FLAP_BACKOFF_BASE_MS - 1), [], 'kept off a within the backoff')
  assert.equal((await pass(downAt + FLAP_BACKOFF_BASE_MS)).map((c) => c.type === 'AssignVm' ? c.node : null), ['a'])
})

test.run()
