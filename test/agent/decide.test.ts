// The agent's decision (node/agent-decide.ts) as a table: each row a situation of one host (the VMs
// Raft assigns here, what the hypervisor reports, what the agent did before) and the actions with
// their reasons it must lead to. Rows marked "bug:" are the plausible mistakes: restarting a VM
// whose policy is never, restarting during backoff, starting a VM this host no longer owns,
// starting while fenced, touching a VM a migration holds.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { backoffMs, decide, decideEvent, DEFAULT_BACKOFF, STABLE_AFTER_MS } from '../../node/agent-decide.ts'
import type { AgentAction, Attempts, Desired, History, Observed } from '../../node/agent-decide.ts'
import type { GuestStatus } from '../../node/hypervisor/types.ts'
import type { RestartPolicy, VmPhase, VmRecord } from '../../protocols/model.ts'

const SELF = 'node-a'
const NOW = 1_000_000

interface VmOpts { id?: string, desired?: 'running' | 'stopped', policy?: RestartPolicy, generation?: number, phase?: VmPhase, statusNode?: string | null, assignedNode?: string | null }

function vm (o: VmOpts = {}): VmRecord {
  const id = o.id ?? 'vm1'
  return {
    id,
    spec: {
      name: id, vcpus: 1, memoryMiB: 96, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [], kernelParams: [],
      constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: o.policy ?? 'always', requires: []
    },
    generation: o.generation ?? 1,
    desired: o.desired ?? 'running',
    assignedNode: o.assignedNode === undefined ? SELF : o.assignedNode,
    status: { phase: o.phase ?? 'scheduled', reason: '', node: o.statusNode === undefined ? SELF : o.statusNode, at: 0 },
    createdAt: 0,
    updatedAt: 0
  }
}

const running = (o: { id?: string, generation?: number, ready?: boolean, ip?: string } = {}): GuestStatus =>
  ({ state: 'running', vmId: o.id ?? 'vm1', generation: o.generation ?? 1, ready: o.ready ?? true, ip: o.ip ?? null })
const crashed = (reason = 'qemu killed by SIGKILL', o: { id?: string, generation?: number } = {}): GuestStatus =>
  ({ state: 'crashed', vmId: o.id ?? 'vm1', generation: o.generation ?? 1, exit: { reason, requested: null } })
const stopped = (reason = 'guest powered off', requested: 'stop' | null = null, o: { id?: string, generation?: number } = {}): GuestStatus =>
  ({ state: 'stopped', vmId: o.id ?? 'vm1', generation: o.generation ?? 1, exit: { reason, requested } })

interface Row {
  name: string
  vms?: VmRecord[]
  elsewhere?: Array<[string, string | null]>
  guests?: GuestStatus[]
  held?: string
  migrating?: string[]
  cannotLaunch?: Array<[string, string]>
  attempts?: Array<[string, Attempts]>
  stopSeen?: string[]
  lastReported?: Array<[string, VmPhase]>
  unsent?: string[]
  busy?: string[]
  releasing?: Array<{ vmId: string, since: number }>
  now?: number
  want: AgentAction[]
}

function run (r: Row): AgentAction[] {
  const desired: Desired = { self: SELF, vms: r.vms ?? [], assignedElsewhere: new Map(r.elsewhere ?? []), backoff: DEFAULT_BACKOFF, ...(r.releasing !== undefined ? { releasing: r.releasing } : {}) }
  const observed: Observed = {
    guests: new Map((r.guests ?? []).map((g) => [g.vmId, g])),
    held: r.held ?? null,
    migrating: new Set(r.migrating ?? []),
    cannotLaunch: new Map(r.cannotLaunch ?? [])
  }
  const history: History = {
    attempts: new Map(r.attempts ?? []),
    stopSeen: new Set(r.stopSeen ?? []),
    lastReported: new Map(r.lastReported ?? []),
    unsent: new Set(r.unsent ?? []),
    busy: new Set(r.busy ?? [])
  }
  return decide(desired, observed, history, r.now ?? NOW)
}

const first = (now = NOW): Attempts => ({ count: 1, lastStart: now, nextAt: now + DEFAULT_BACKOFF.first })

const rows: Row[] = [
  // ---- starting ----
  { name: 'a VM assigned here with no guest gets its first start', vms: [vm()], want: [{ kind: 'start', vmId: 'vm1', reason: 'first start', attempt: first() }] },
  { name: 'bug: a VM assigned to another node is never started here', vms: [vm({ assignedNode: 'node-b' })], want: [] },
  { name: 'bug: a VM not yet placed is not started', vms: [vm({ assignedNode: null })], want: [] },
  { name: 'bug: no start while the host is fenced (no lease): hold with the reason', vms: [vm()], held: 'no liveness lease held', want: [{ kind: 'hold', vmId: 'vm1', reason: 'not starting (first start): no liveness lease held' }] },
  { name: 'a host without the tiny guest reports failed instead of starting', vms: [vm()], cannotLaunch: [['vm1', 'no tiny guest on this host']], want: [{ kind: 'report', vmId: 'vm1', phase: 'failed', reason: 'no tiny guest on this host' }] },
  { name: 'cannot-launch wins over the hold: the operator learns why it never will run', vms: [vm()], held: 'fenced', cannotLaunch: [['vm1', 'no tiny guest on this host']], want: [{ kind: 'report', vmId: 'vm1', phase: 'failed', reason: 'no tiny guest on this host' }] },
  // ---- running ----
  { name: 'a ready guest is reported running with its address, once', vms: [vm({ phase: 'starting' })], guests: [running({ ip: '10.0.0.5' })], want: [{ kind: 'report', vmId: 'vm1', phase: 'running', reason: '', ip: '10.0.0.5' }] },
  { name: 'a ready guest already reported running: nothing', vms: [vm({ phase: 'starting' })], guests: [running()], lastReported: [['vm1', 'running']], want: [] },
  { name: 'a guest still booting is not reported running', vms: [vm({ phase: 'starting' })], guests: [running({ ready: false })], want: [] },
  { name: 'a guest ready for more than a minute forgets its restarts', vms: [vm({ phase: 'running' })], guests: [running()], attempts: [['vm1', { count: 3, lastStart: NOW - STABLE_AFTER_MS - 1, nextAt: NOW - 50_000 }]], want: [{ kind: 'reset-backoff', vmId: 'vm1', reason: 'ready for more than 60s' }] },
  { name: 'a guest ready for less than a minute keeps its restart count', vms: [vm({ phase: 'running' })], guests: [running()], attempts: [['vm1', { count: 3, lastStart: NOW - 1000, nextAt: NOW + 3000 }]], want: [] },
  {
    name: 'a new spec generation replaces the running guest (stop, then start)',
    vms: [vm({ generation: 2, phase: 'running' })], guests: [running({ generation: 1 })],
    want: [{ kind: 'stop', vmId: 'vm1', reason: 'spec changed (generation 1 → 2)', reportExit: false }, { kind: 'start', vmId: 'vm1', reason: 'new spec', attempt: first() }]
  },
  {
    name: 'a new spec while fenced: the old guest stops, the new one waits for the lease',
    vms: [vm({ generation: 2, phase: 'running' })], guests: [running({ generation: 1 })], held: 'fenced',
    want: [{ kind: 'stop', vmId: 'vm1', reason: 'spec changed (generation 1 → 2)', reportExit: false }, { kind: 'hold', vmId: 'vm1', reason: 'not starting (new spec): fenced' }]
  },
  // ---- stopping ----
  {
    name: 'desired stopped stops a running guest and reports how it ended',
    vms: [vm({ desired: 'stopped', phase: 'running' })], guests: [running()],
    want: [{ kind: 'note-stop', vmId: 'vm1', reason: 'desired stopped' }, { kind: 'stop', vmId: 'vm1', reason: 'stop requested', reportExit: true }]
  },
  {
    name: 'desired stopped, never started: reported stopped once',
    vms: [vm({ desired: 'stopped', phase: 'scheduled' })],
    want: [{ kind: 'note-stop', vmId: 'vm1', reason: 'desired stopped' }, { kind: 'report', vmId: 'vm1', phase: 'stopped', reason: 'never started' }]
  },
  {
    name: 'desired stopped, already reported stopped by this host: no report again, backoff forgotten',
    vms: [vm({ desired: 'stopped', phase: 'stopped' })], guests: [stopped('stopped on request', 'stop')], attempts: [['vm1', first(NOW - 5000)]],
    want: [{ kind: 'note-stop', vmId: 'vm1', reason: 'desired stopped' }, { kind: 'reset-backoff', vmId: 'vm1', reason: 'desired stopped' }]
  },
  {
    name: 'a stopped VM that moved here with another node\'s status gets this host\'s own report',
    vms: [vm({ desired: 'stopped', phase: 'stopped', statusNode: 'node-b' })],
    want: [{ kind: 'note-stop', vmId: 'vm1', reason: 'desired stopped' }, { kind: 'report', vmId: 'vm1', phase: 'stopped', reason: 'never started' }]
  },
  {
    name: '... unless that report is already queued',
    vms: [vm({ desired: 'stopped', phase: 'stopped', statusNode: 'node-b' })], lastReported: [['vm1', 'stopped']], unsent: ['vm1'],
    want: [{ kind: 'note-stop', vmId: 'vm1', reason: 'desired stopped' }]
  },
  // ---- the restart policy ----
  { name: 'always: a crashed guest restarts when its backoff has passed', vms: [vm({ policy: 'always', phase: 'running' })], guests: [crashed()], attempts: [['vm1', { count: 1, lastStart: NOW - 5000, nextAt: NOW - 4000 }]], want: [{ kind: 'start', vmId: 'vm1', reason: 'restart after: qemu killed by SIGKILL (policy always)', attempt: { count: 2, lastStart: NOW, nextAt: NOW + 2000 } }] },
  { name: 'always: a guest that powered itself off restarts too', vms: [vm({ policy: 'always', phase: 'running' })], guests: [stopped()], want: [{ kind: 'start', vmId: 'vm1', reason: 'restart after: guest powered off (policy always)', attempt: first() }] },
  {
    name: 'bug: no restart during backoff: failed, with when and which attempt',
    vms: [vm({ policy: 'always', phase: 'running' })], guests: [crashed()], attempts: [['vm1', { count: 2, lastStart: NOW - 1000, nextAt: NOW + 1500 }]],
    want: [{ kind: 'report', vmId: 'vm1', phase: 'failed', reason: 'qemu killed by SIGKILL; restarting in 2s (attempt 3, policy always)' }]
  },
  {
    name: 'bug: during backoff, already reported failed: hold, still no start',
    vms: [vm({ policy: 'always', phase: 'failed' })], guests: [crashed()], attempts: [['vm1', { count: 2, lastStart: NOW - 1000, nextAt: NOW + 1500 }]], lastReported: [['vm1', 'failed']],
    want: [{ kind: 'hold', vmId: 'vm1', reason: 'qemu killed by SIGKILL; restarting in 2s (attempt 3, policy always)' }]
  },
  { name: 'on-failure: a crash restarts', vms: [vm({ policy: 'on-failure', phase: 'running' })], guests: [crashed('guest panicked')], want: [{ kind: 'start', vmId: 'vm1', reason: 'restart after: guest panicked (policy on-failure)', attempt: first() }] },
  { name: 'on-failure: a guest that powered itself off stays stopped', vms: [vm({ policy: 'on-failure', phase: 'running' })], guests: [stopped()], want: [{ kind: 'report', vmId: 'vm1', phase: 'stopped', reason: 'guest powered off; restart policy on-failure' }] },
  { name: 'bug: never: a crashed guest is not restarted, it is reported failed', vms: [vm({ policy: 'never', phase: 'running' })], guests: [crashed()], want: [{ kind: 'report', vmId: 'vm1', phase: 'failed', reason: 'qemu killed by SIGKILL; restart policy never' }] },
  { name: 'bug: never, already reported failed: still not restarted', vms: [vm({ policy: 'never', phase: 'failed' })], guests: [crashed()], lastReported: [['vm1', 'failed']], want: [{ kind: 'hold', vmId: 'vm1', reason: 'qemu killed by SIGKILL; restart policy never' }] },
  {
    name: 'a start after the agent saw desired stopped is asked for: no backoff, whatever the policy',
    vms: [vm({ policy: 'never', phase: 'stopped' })], guests: [stopped('stopped on request', null)], stopSeen: ['vm1'], attempts: [['vm1', { count: 4, lastStart: NOW - 1000, nextAt: NOW + 8000 }]],
    want: [{ kind: 'reset-backoff', vmId: 'vm1', reason: 'start asked for, not a restart' }, { kind: 'start', vmId: 'vm1', reason: 'start requested', attempt: first() }]
  },
  { name: 'after a daemon restart, the exit of a requested stop still makes it a start', vms: [vm({ policy: 'never', phase: 'stopped' })], guests: [stopped('stopped on request', 'stop')], want: [{ kind: 'start', vmId: 'vm1', reason: 'start requested', attempt: first() }] },
  { name: 'a crashed guest of an older generation starts with the new spec, not by the policy', vms: [vm({ policy: 'never', generation: 3, phase: 'failed' })], guests: [crashed('x', { generation: 2 })], want: [{ kind: 'start', vmId: 'vm1', reason: 'new spec', attempt: first() }] },
  { name: 'bug: a restart while fenced holds', vms: [vm({ policy: 'always', phase: 'running' })], guests: [crashed()], held: 'lease expired', want: [{ kind: 'hold', vmId: 'vm1', reason: 'not starting (restart after: qemu killed by SIGKILL (policy always)): lease expired' }] },
  // ---- guests that are not ours ----
  { name: 'bug: the guest of a VM moved to another node is cleaned up, not restarted', vms: [vm({ assignedNode: 'node-b' })], elsewhere: [['vm1', 'node-b']], guests: [running()], want: [{ kind: 'cleanup', vmId: 'vm1', reason: 'not assigned here (assigned to node-b): stopping its guest' }] },
  { name: 'the leftovers of a deleted VM are cleaned up', guests: [stopped('guest powered off', null, { id: 'gone' })], want: [{ kind: 'cleanup', vmId: 'gone', reason: 'not assigned here (deleted)' }] },
  // ---- migrations and actions in flight ----
  { name: 'bug: a VM a live migration holds is neither restarted nor stopped', vms: [vm({ desired: 'stopped' })], guests: [running()], migrating: ['vm1'], want: [{ kind: 'hold', vmId: 'vm1', reason: 'a live migration holds it' }] },
  { name: 'bug: the waiting target QEMU of an incoming migration is not cleaned up as an orphan', elsewhere: [['vm1', 'node-b']], guests: [running({ ready: false })], migrating: ['vm1'], want: [{ kind: 'hold', vmId: 'vm1', reason: 'a live migration holds it' }] },
  { name: 'a VM whose earlier action still runs is left alone this round', vms: [vm()], busy: ['vm1'], want: [{ kind: 'hold', vmId: 'vm1', reason: 'an earlier action is still running' }] },
  // ---- the release handshake (storage/release-rules.ts) ----
  { name: 'a VM taken off this host with no guest left here is reported released, echoing since', releasing: [{ vmId: 'vm1', since: 42 }], want: [{ kind: 'release', vmId: 'vm1', since: 42, reason: 'taken off this host: no guest here' }] },
  { name: 'bug: not released while its guest is still here: cleaned up first', releasing: [{ vmId: 'vm1', since: 42 }], guests: [running()], elsewhere: [['vm1', null]], want: [{ kind: 'cleanup', vmId: 'vm1', reason: 'not assigned here (deleted): stopping its guest' }] },
  { name: 'bug: not released while an earlier action (the cleanup) still runs', releasing: [{ vmId: 'vm1', since: 42 }], busy: ['vm1'], want: [] },
  { name: 'bug: a VM assigned here still releasing another node is not started', vms: [{ ...vm(), releasing: { node: 'node-b', since: 1 } }], want: [{ kind: 'hold', vmId: 'vm1', reason: 'not starting (first start): node node-b may still run its guest (waits for its release)' }] },
  // ---- room given away on apply: a start waits until the guest that held it is gone ----
  {
    name: 'bug: a VM placed in the room of a preempted one does not start beside its still-running guest (cleaned up first)',
    vms: [vm({ id: 'high' })], releasing: [{ vmId: 'low', since: 7 }], guests: [running({ id: 'low' })], elsewhere: [['low', null]],
    want: [
      { kind: 'hold', vmId: 'high', reason: 'not starting (first start): the guest of VM low, no longer assigned here, still holds its room (stopped first)' },
      { kind: 'cleanup', vmId: 'low', reason: 'not assigned here (deleted): stopping its guest' }
    ]
  },
  {
    name: 'once that guest is gone the VM starts and the victim is released, in one round',
    vms: [vm({ id: 'high' })], releasing: [{ vmId: 'low', since: 7 }],
    want: [
      { kind: 'start', vmId: 'high', reason: 'first start', attempt: first() },
      { kind: 'release', vmId: 'low', since: 7, reason: 'taken off this host: no guest here' }
    ]
  },
  {
    name: 'a live migration\'s guest here, held by it, does not stop a start',
    vms: [vm({ id: 'a' })], guests: [running({ id: 'moving' })], elsewhere: [['moving', 'node-b']], migrating: ['moving'],
    want: [
      { kind: 'start', vmId: 'a', reason: 'first start', attempt: first() },
      { kind: 'hold', vmId: 'moving', reason: 'a live migration holds it' }
    ]
  },
  // ---- several VMs at once ----
  {
    name: 'VMs are decided independently: one starts, one restarts, one stays down, an orphan goes',
    vms: [vm({ id: 'a' }), vm({ id: 'b', policy: 'always', phase: 'running' }), vm({ id: 'c', policy: 'never', phase: 'running' })],
    guests: [crashed('boom', { id: 'b' }), crashed('boom', { id: 'c' }), stopped('x', null, { id: 'z' })],
    want: [
      { kind: 'start', vmId: 'a', reason: 'first start', attempt: first() },
      { kind: 'start', vmId: 'b', reason: 'restart after: boom (policy always)', attempt: first() },
      { kind: 'report', vmId: 'c', phase: 'failed', reason: 'boom; restart policy never' },
      { kind: 'cleanup', vmId: 'z', reason: 'not assigned here (deleted)' }
    ]
  }
]

for (const r of rows) {
  test(r.name, () => { assert.equal(run(r), r.want) })
}

test('backoff doubles from its first delay up to its cap, and stays finite for any count', () => {
  assert.equal([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffMs(n)), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000])
  assert.is(backoffMs(10_000, { first: 1, max: Number.MAX_SAFE_INTEGER }), 2 ** 16)
})

test('a crash loop spaces its starts by the backoff: replayed through decide round by round', () => {
  // the agent's loop in miniature: the guest crashes right after every start
  const attempts = new Map<string, Attempts>()
  const starts: number[] = []
  for (let now = NOW; now < NOW + 40_000; now += 250) {
    const acts = decide({ self: SELF, vms: [vm({ policy: 'always', phase: 'running' })], assignedElsewhere: new Map(), backoff: DEFAULT_BACKOFF },
      { guests: new Map([['vm1', crashed()]]), held: null, migrating: new Set(), cannotLaunch: new Map() },
      { attempts, stopSeen: new Set(), lastReported: new Map([['vm1', 'failed']]), unsent: new Set(), busy: new Set() }, now)
    for (const a of acts) if (a.kind === 'start') { starts.push(now - NOW); attempts.set('vm1', a.attempt) }
  }
  assert.equal(starts, [0, 1000, 3000, 7000, 15_000, 31_000])
})

test('events: reports of our current generation, others ignored; a stop of a VM still wanted kicks a round', () => {
  const mine = vm()
  assert.equal(decideEvent({ type: 'running', vmId: 'vm1', generation: 1, ip: '10.0.0.2', adopted: true }, mine, SELF), { report: { phase: 'running', reason: 're-adopted after a daemon restart', ip: '10.0.0.2' }, kick: false })
  assert.equal(decideEvent({ type: 'failed', vmId: 'vm1', generation: 1, reason: 'boom' }, mine, SELF), { report: { phase: 'failed', reason: 'boom' }, kick: true })
  assert.equal(decideEvent({ type: 'stopped', vmId: 'vm1', generation: 1, exit: { reason: 'guest powered off', requested: null } }, mine, SELF), { report: null, kick: true })
  assert.equal(decideEvent({ type: 'stopped', vmId: 'vm1', generation: 1, exit: { reason: 'stopped on request', requested: 'stop' } }, vm({ desired: 'stopped' }), SELF), { report: { phase: 'stopped', reason: 'stopped on request' }, kick: false })
  // bug: an event of the previous generation (the guest a spec change replaced) must not report over the new one
  assert.equal(decideEvent({ type: 'failed', vmId: 'vm1', generation: 1, reason: 'old' }, vm({ generation: 2 }), SELF), { report: null, kick: false })
  // bug: an event of a VM that moved away must not report for its new host
  assert.equal(decideEvent({ type: 'running', vmId: 'vm1', generation: 1, ip: null, adopted: false }, vm({ assignedNode: 'node-b' }), SELF), { report: null, kick: false })
  assert.equal(decideEvent({ type: 'running', vmId: 'vm1', generation: 1, ip: null, adopted: false }, null, SELF), { report: null, kick: false })
})

test.run()
