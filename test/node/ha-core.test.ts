import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DEFAULT_LEASE, hostFenceAfterMs, leaderDownAfterMs, leaseSettingsProblems } from '../../node/core/lease-rules.ts'
import type { LeaseSettings } from '../../node/core/lease-rules.ts'
import { expiredNodes, nextExpiry } from '../../node/core/liveness.ts'
import type { NodeLease } from '../../node/core/liveness.ts'
import { ackRenewal, fenceVerdict } from '../../node/core/fence.ts'
import { FLAP_BACKOFF_BASE_MS, FLAP_BACKOFF_MAX_MS, flapBackoffMs, rescheduleOffDownNode } from '../../node/core/reschedule.ts'

const S: LeaseSettings = { leaseMs: 10_000, renewEveryMs: 2_000, driftRatio: 0.01, fenceMarginMs: 500, downMarginMs: 700 }

test('deadlines: host fences at lease×(1−d)−margin, leader marks down at lease×(1+d)+margin', () => {
  assert.is(hostFenceAfterMs(S), 9_400)
  assert.is(leaderDownAfterMs(S), 10_800)
})

test('safety: for every clock-rate pair within drift, the host fences (real time) before the leader may mark down', () => {
  // the host sends at real 0; the leader sees it at real `lag` ≥ 0 (later, never earlier)
  for (const d of [0, 0.005, 0.01]) {
    const s = { ...S, driftRatio: d }
    for (const hostRate of [1 - d, 1, 1 + d]) {
      for (const leaderRate of [1 - d, 1, 1 + d]) {
        for (const lag of [0, 5, 300]) {
          const hostFenceReal = hostFenceAfterMs(s) / hostRate
          const leaderDownReal = lag + leaderDownAfterMs(s) / leaderRate
          assert.ok(leaderDownReal - hostFenceReal >= s.fenceMarginMs, `d=${d} host×${hostRate} leader×${leaderRate} lag ${lag}: fence ${hostFenceReal} down ${leaderDownReal}`)
        }
      }
    }
  }
})

test('default settings: death → down decision within 15 s worst case, and they validate', () => {
  assert.equal(leaseSettingsProblems(DEFAULT_LEASE), [])
  assert.ok(leaderDownAfterMs(DEFAULT_LEASE) + DEFAULT_LEASE.renewEveryMs <= 15_000)
})

test('bad settings are named', () => {
  assert.match(leaseSettingsProblems({ ...S, driftRatio: 0.5 })[0], /driftRatio/)
  assert.match(leaseSettingsProblems({ ...S, leaseMs: -1 })[0], /leaseMs/)
  assert.match(leaseSettingsProblems({ ...S, leaseMs: 2_000 })[0], /one late renewal would fence/)
  assert.match(leaseSettingsProblems({ ...S, renewEveryMs: 0 }).join(';'), /renewEveryMs must be > 0/)
})

const lease = (node: string, over: Partial<NodeLease> = {}): NodeLease => ({ node, epoch: 1, down: false, renewedSeenAt: null, ...over })

test('liveness: a fresh leader waits a full down window from its election, whatever the old renewals say', () => {
  const base = { electedAt: 50_000, settings: S, self: 'a', leases: [lease('a'), lease('b', { renewedSeenAt: 1_000 }), lease('c')] }
  assert.equal(expiredNodes({ ...base, now: 50_000 + 10_799 }), [])
  const d = expiredNodes({ ...base, now: 50_000 + 10_800 })
  assert.equal(d.map(x => x.node), ['b', 'c'])
  assert.is(d[0].epoch, 1)
  assert.is(nextExpiry(base), 60_800)
})

test('liveness: a renewal seen after election pushes that node out; never the leader itself; down ones skipped', () => {
  const leases = [lease('a', { renewedSeenAt: 0 }), lease('b', { renewedSeenAt: 5_000, epoch: 4 }), lease('c', { renewedSeenAt: 1_000 }), lease('d', { down: true })]
  const out = expiredNodes({ now: 12_000, electedAt: 0, settings: S, self: 'a', leases })
  assert.equal(out.map(x => [x.node, x.epoch, x.expiredAt]), [['c', 1, 11_800]])
  assert.match(out[0].why, /no renewal for 11000 ms \(limit 10800 ms\)/)
  assert.equal(expiredNodes({ now: 15_800, electedAt: 0, settings: S, self: 'a', leases }).map(x => x.node), ['c', 'b'])
})

test('fence: counts from the acked renewal SEND time; from daemon start before any ack', () => {
  assert.equal(fenceVerdict(9_399, null, 0, S), { kind: 'ok', deadline: 9_400, leftMs: 1 })
  assert.is(fenceVerdict(9_400, null, 0, S).kind, 'fence')
  assert.is(fenceVerdict(12_000, 3_000, 0, S).kind, 'ok')
  const f = fenceVerdict(12_400, 3_000, 0, S)
  assert.is(f.kind, 'fence')
  if (f.kind === 'fence') assert.match(f.why, /no acknowledged lease renewal for 9400 ms/)
})

test('fence: a late ack of an older request never moves the deadline back', () => {
  assert.is(ackRenewal(null, 100), 100)
  assert.is(ackRenewal(5_000, 3_000), 5_000)
  assert.is(ackRenewal(5_000, 7_000), 7_000)
})

test('reschedule: always/on-failure go back to pending with the reason, never stays; other nodes untouched', () => {
  const vms = [
    { id: 'web', node: 'node2', restartPolicy: 'always' as const, rescheduledAt: [] },
    { id: 'job', node: 'node2', restartPolicy: 'on-failure' as const, rescheduledAt: [] },
    { id: 'pet', node: 'node2', restartPolicy: 'never' as const, rescheduledAt: [] },
    { id: 'other', node: 'node1', restartPolicy: 'always' as const, rescheduledAt: [] }
  ]
  const d = rescheduleOffDownNode({ node: 'node2', expiredAtText: '10:31:02Z' }, vms, 1_000_000)
  assert.equal(d.map(x => [x.vm, x.kind]), [['web', 'reschedule'], ['job', 'reschedule'], ['pet', 'stay']])
  assert.is(d[0].reason, 'rescheduled from node2: lease expired at 10:31:02Z')
  if (d[0].kind === 'reschedule') assert.equal([d[0].avoidNode, d[0].avoidUntil], ['node2', 1_000_000 + FLAP_BACKOFF_BASE_MS])
  assert.match(d[2].reason, /restart policy never/)
})

test('flap backoff doubles per recent reschedule, forgets old ones, and is capped', () => {
  const now = 100 * 60_000
  assert.is(flapBackoffMs([], now), FLAP_BACKOFF_BASE_MS)
  assert.is(flapBackoffMs([now - 1_000, now - 2_000], now), FLAP_BACKOFF_BASE_MS * 4)
  assert.is(flapBackoffMs([now - 31 * 60_000], now), FLAP_BACKOFF_BASE_MS)
  assert.is(flapBackoffMs(Array.from({ length: 40 }, (_, i) => now - i), now), FLAP_BACKOFF_MAX_MS)
})

test.run()
