// node/core/membership-rules.ts: in-cluster, autopilot's input and self-registration, decided on a
// given Raft status and clock.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { autopilotInput, handoffTarget, inCluster, mayCall, registration, LEADER_SILENT_REJOIN_MS, AUTOPILOT_HEALTHY_WITHIN_MS } from '../../node/core/membership-rules.ts'
import type { RaftStatus } from '../../protocols/raft/rawnode.ts'
import type { NodeRecord } from '../../protocols/model.ts'

function status (o: Partial<RaftStatus>): RaftStatus {
  return { id: 'a', term: 2, vote: null, commit: 10, applied: 10, lead: null, role: 'follower', conf: { voters: [], learners: [] }, pendingConfIndex: 0, ...o }
}

test('a member is in the cluster; a non-member only while its leader keeps talking', () => {
  assert.is(inCluster('a', null, new Map(), 0), false)
  assert.is(inCluster('a', status({ conf: { voters: [], learners: ['a'] } }), new Map(), 0), true)
  const waiting = status({ lead: 'l' })
  const heard = new Map([['l', 1_000]])
  assert.is(inCluster('a', waiting, heard, 1_000 + LEADER_SILENT_REJOIN_MS - 1), true)
  assert.is(inCluster('a', waiting, heard, 1_000 + LEADER_SILENT_REJOIN_MS), false, 'a removed node with a stale lead asks to join again')
  assert.is(inCluster('a', status({}), heard, 1_000), false)
})

test('autopilot input: silence from the clock, lag from the highest match, candidates connected or members', () => {
  const st = status({
    role: 'leader', lead: 'a', commit: 90, pendingConfIndex: 95,
    conf: { voters: ['a', 'b'], learners: ['c'] },
    progress: { a: { match: 100, next: 101, state: 'replicate' }, b: { match: 60, next: 61, state: 'replicate' }, c: { match: 100, next: 101, state: 'replicate' } }
  })
  const input = autopilotInput({ self: 'a', st, lastHeard: new Map([['b', 9_000]]), now: 10_000, connected: new Set(['d']), registered: ['a', 'b', 'c', 'd', 'e'], applied: 90, deadAfterMs: 2_000 })
  assert.equal(input.health.get('a'), { silentMs: 0, lag: 0 })
  assert.equal(input.health.get('b'), { silentMs: 1_000, lag: 40 })
  assert.equal(input.health.get('c'), { silentMs: 10_000, lag: 0 }, 'never heard: silent since the epoch')
  assert.equal(input.candidates, ['a', 'b', 'c', 'd'], 'e is neither connected nor a member')
  assert.is(input.changeInFlight, true)
  assert.is(input.healthyWithinMs, 2_000, 'capped by the dead timeout')
  const later = autopilotInput({ self: 'a', st, lastHeard: new Map(), now: 0, connected: new Set(), registered: [], applied: 95, deadAfterMs: 60_000 })
  assert.is(later.changeInFlight, false, 'applied past the pending change')
  assert.is(later.healthyWithinMs, AUTOPILOT_HEALTHY_WITHIN_MS)
})

test('registration: register when absent, update only what changed, nothing when up to date', () => {
  const want = { id: 'a', name: 'n1', addrs: ['/ip4/127.0.0.1/tcp/1'], labels: { zone: 'x' }, capacity: { cpu: 4, memoryMiB: 4096, diskGiB: 10 } }
  const reg = registration(want, null)
  if (reg?.type !== 'RegisterNode') throw new Error(`expected RegisterNode, got ${JSON.stringify(reg)}`)
  assert.equal(reg.node.capabilities, ['qemu'])
  const rec: NodeRecord = { ...reg.node, state: 'ready', registeredAt: 0, updatedAt: 0 }
  assert.is(registration(want, rec), null)
  assert.equal(registration({ ...want, addrs: ['/ip4/127.0.0.1/tcp/2'] }, rec), { type: 'UpdateNode', id: 'a', addrs: ['/ip4/127.0.0.1/tcp/2'], labels: { zone: 'x' }, capacity: want.capacity })
  assert.is(registration({ ...want, labels: {} }, rec)?.type, 'UpdateNode')
})

test('registration: a node given a ceph.conf advertises rbd (the volume reconciler is chosen among those), and drops it when it loses it', () => {
  const want = { id: 'a', name: 'n1', addrs: ['/ip4/127.0.0.1/tcp/1'], labels: {}, capacity: { cpu: 4, memoryMiB: 4096, diskGiB: 10 } }
  const reg = registration({ ...want, capabilities: ['qemu', 'rbd'] }, null)
  if (reg?.type !== 'RegisterNode') throw new Error(`expected RegisterNode, got ${JSON.stringify(reg)}`)
  assert.equal(reg.node.capabilities, ['qemu', 'rbd'])
  const plain: NodeRecord = { ...reg.node, capabilities: ['qemu'], state: 'ready', registeredAt: 0, updatedAt: 0 }
  assert.equal(registration({ ...want, capabilities: ['qemu', 'rbd'] }, plain), { type: 'UpdateNode', id: 'a', addrs: want.addrs, labels: {}, capacity: want.capacity, capabilities: ['qemu', 'rbd'] })
  const withRbd: NodeRecord = { ...plain, capabilities: ['qemu', 'rbd'] }
  assert.is(registration({ ...want, capabilities: ['qemu', 'rbd'] }, withRbd), null)
  assert.equal(registration({ ...want, capabilities: ['qemu'] }, withRbd)?.type === 'UpdateNode' && (registration({ ...want, capabilities: ['qemu'] }, withRbd) as { capabilities?: string[] }).capabilities, ['qemu'])
})


test('shutdown handoff goes to the most caught-up other voter, never a learner', () => {
  const progress = { a: { match: 100, next: 101, state: 'replicate' as const }, b: { match: 80, next: 81, state: 'replicate' as const }, c: { match: 90, next: 91, state: 'replicate' as const }, d: { match: 100, next: 101, state: 'replicate' as const } }
  assert.is(handoffTarget('a', status({ role: 'leader', conf: { voters: ['a', 'b', 'c'], learners: ['d'] }, progress })), 'c')
  assert.is(handoffTarget('a', status({ role: 'leader', conf: { voters: ['a'], learners: ['d'] }, progress })), null)
})

test('internal RPCs only for members (in the conf or registered), the rest only for admins', () => {
  const conf = { voters: ['v'], learners: ['l'] }
  const registered = (p: string): boolean => p === 'r'
  const admin = (p: string): boolean => p === 'adm'
  for (const p of ['v', 'l', 'r']) assert.ok(mayCall(p, 'internal.propose', conf, registered, admin), p)
  assert.not.ok(mayCall('adm', 'internal.propose', conf, registered, admin), 'an admin is not a member')
  assert.not.ok(mayCall('x', 'internal.admit', undefined, registered, admin))
  assert.ok(mayCall('adm', 'vm.create', conf, registered, admin))
  assert.not.ok(mayCall('v', 'vm.create', conf, registered, admin), 'a member is not an admin')
})

test.run()
