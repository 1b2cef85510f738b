// Volume phases in the state machine (storage/apply-volumes.ts) and the volume reconciler's plan
// (node/volumes/plan.ts), as tables: every transition a command or a report makes, who may report
// (only the lowest-id node with Ceph that is up, and only as itself), stale reports changing
// nothing, VMs refused or kept waiting on volumes, and what the reconciler would do per volume.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Command } from '../../protocols/commands.ts'
import type { HypervisorCapability, NodeRecord, VolumeRecord } from '../../protocols/model.ts'
import { authError, seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { AuthState } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { volumeReconciler, volumeUnusable } from '../../protocols/volume-phases.ts'
import { volumeTasks } from '../../node/volumes/plan.ts'
import { explainVm, volumeWait } from '../../node/scheduler.ts'
import { errorKind, harness, registerNode, spec } from './sm-fixtures.ts'

type H = ReturnType<typeof harness>

function node (id: string, caps: HypervisorCapability[]): Command {
  const c = registerNode(id) as Extract<Command, { type: 'RegisterNode' }>
  return { ...c, node: { ...c.node, capabilities: caps } }
}

const gen = (h: H, name: string): number => h.sm.getVolume(name)?.generation ?? -1
const phase = (h: H, name: string): string => h.sm.getVolume(name)?.phase ?? 'gone'
const report = (h: H, name: string, outcome: 'ready' | 'failed' | 'gone', by = 'n1', generation = gen(h, name), reason?: string): string => {
  const r = h.run({ type: 'ReportVolume', name, node: by, generation, outcome, ...(reason !== undefined ? { reason } : {}) })
  return r.ok ? `ok:${(r.value as { outcome: string }).outcome}` : errorKind(r)
}

/** n1 (lowest id) and n3 have Ceph; n2 has not. */
function cluster (): H {
  const h = harness()
  for (const c of [node('n1', ['qemu', 'rbd']), node('n2', ['qemu']), node('n3', ['qemu', 'rbd'])]) assert.ok(h.run(c).ok)
  return h
}

test('transitions: each command and report moves the phase as the table says', () => {
  const h = cluster()
  // [step, outcome, phase after, generation after]
  const rows: Array<[string, () => string, string, number]> = [
    ['create', () => errorKind(h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })), 'pending', 1],
    ['ready', () => report(h, 'v', 'ready'), 'ready', 1],
    ['the same report again: stale', () => report(h, 'v', 'ready'), 'ready', 1],
    ['resize', () => errorKind(h.run({ type: 'ResizeVolume', name: 'v', sizeGiB: 2 })), 'pending', 2],
    ['a late report on generation 1: stale', () => report(h, 'v', 'failed', 'n1', 1, 'old'), 'pending', 2],
    ['resize failed', () => report(h, 'v', 'failed', 'n1', 2, 'rbd resize: timed out'), 'failed', 2],
    ['resize to the same size again: retried', () => errorKind(h.run({ type: 'ResizeVolume', name: 'v', sizeGiB: 2 })), 'pending', 3],
    ['ready', () => report(h, 'v', 'ready'), 'ready', 3],
    ['gone is no answer to a pending change', () => (h.run({ type: 'SnapshotVolume', name: 'v', snapshot: 's' }), report(h, 'v', 'gone')), 'pending', 4],
    ['snapshot made', () => report(h, 'v', 'ready'), 'ready', 4],
    ['delete', () => errorKind(h.run({ type: 'DeleteVolume', name: 'v' })), 'deleting', 5],
    ['no resize while deleting', () => errorKind(h.run({ type: 'ResizeVolume', name: 'v', sizeGiB: 3 })), 'deleting', 5],
    ['no snapshot while deleting', () => errorKind(h.run({ type: 'SnapshotVolume', name: 'v', snapshot: 't' })), 'deleting', 5],
    ['no second volume of that name while deleting', () => errorKind(h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })), 'deleting', 5],
    ['ready is no answer to a delete', () => report(h, 'v', 'ready'), 'deleting', 5],
    ['delete failed', () => report(h, 'v', 'failed', 'n1', 5, 'image busy'), 'failed', 5],
    ['delete again', () => errorKind(h.run({ type: 'DeleteVolume', name: 'v' })), 'deleting', 6],
    ['gone: the record is removed', () => report(h, 'v', 'gone'), 'gone', -1],
    ['a report on a removed volume', () => report(h, 'v', 'gone', 'n1', 6), 'gone', -1]
  ]
  const want = ['ok', 'ok:applied', 'ok:stale', 'ok', 'ok:stale', 'ok:applied', 'ok', 'ok:applied', 'InvalidCommand', 'ok:applied', 'ok', 'Conflict', 'Conflict', 'AlreadyExists', 'InvalidCommand', 'ok:applied', 'ok', 'ok:applied', 'ok:notFound']
  const got = rows.map(([step, run]) => [step, run(), phase(h, 'v'), gen(h, 'v')])
  assert.equal(got, rows.map(([step, , ph, g], i) => [step, want[i], ph, g]))
})

test('a failed create: the reason is kept, no VM may use it, and delete removes it', () => {
  const h = cluster()
  h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })
  assert.is(report(h, 'v', 'failed', 'n1', 1, 'pool rbd does not exist'), 'ok:applied')
  const v = h.sm.getVolume('v')!
  assert.equal([v.phase, v.reason, v.imageMade], ['failed', 'pool rbd does not exist', false])
  const r = h.run({ type: 'CreateVm', id: 'vm1', spec: spec('a', { volumes: ['v'] }) })
  assert.is(errorKind(r), 'Conflict')
  assert.match(r.ok ? '' : r.error.message, /volume v failed: pool rbd does not exist; delete it/)
  assert.ok(h.run({ type: 'DeleteVolume', name: 'v' }).ok)
  assert.is(report(h, 'v', 'gone'), 'ok:applied')
  assert.equal(h.sm.listVolumes(), [])
})

test('a failed resize leaves the image usable: VMs may still use the volume', () => {
  const h = cluster()
  h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })
  report(h, 'v', 'ready')
  h.run({ type: 'ResizeVolume', name: 'v', sizeGiB: 2 })
  report(h, 'v', 'failed', 'n1', 2, 'timed out')
  assert.is(volumeUnusable(h.sm.getVolume('v')!), null)
  assert.ok(h.run({ type: 'CreateVm', id: 'vm1', spec: spec('a', { volumes: ['v'] }) }).ok)
})

test('who may report: only the volume reconciler (lowest id with Ceph, not down), as itself', () => {
  const h = cluster()
  h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })
  assert.is(report(h, 'v', 'ready', 'n3'), 'Unauthorized', 'n3 has Ceph but is not the lowest id')
  assert.is(report(h, 'v', 'ready', 'n2'), 'Unauthorized', 'n2 has no Ceph')
  assert.is(report(h, 'v', 'ready', 'n9'), 'Unauthorized', 'not a node')
  assert.is(phase(h, 'v'), 'pending')
  // n1's lease expires: n3 takes over
  assert.ok(h.run({ type: 'MarkNodeDown', node: 'n1', epoch: 0, seq: 0, expiredAt: 0, reason: 'test' }).ok)
  assert.is(volumeReconciler(h.sm.listNodes()), 'n3')
  assert.is(report(h, 'v', 'ready', 'n1'), 'Unauthorized', 'a down node no longer reports')
  assert.is(report(h, 'v', 'ready', 'n3'), 'ok:applied')
  // the signature: a node reports only as itself (protocols/auth.ts)
  const n1 = seededSigner(new Uint8Array(32).fill(1))
  const n3 = seededSigner(new Uint8Array(32).fill(3))
  const st: AuthState = { isAdmin: () => false, isNode: () => true, vmNode: () => undefined, nonceUsed: () => false, termLeader: () => undefined }
  const cmd = (by: string): Command => { const v = validateCommand({ type: 'ReportVolume', name: 'v', node: by, generation: 1, outcome: 'ready' }); assert.ok(v.ok); return v.cmd }
  assert.is(authError(cmd(n1.peerId), signCommandSync(n1, cmd(n1.peerId), 'x', 10), 1, st), null)
  assert.match(authError(cmd(n1.peerId), signCommandSync(n3, cmd(n1.peerId), 'y', 10), 1, st) ?? '', /may not report on volumes for node/)
  assert.match(authError(cmd(n1.peerId), undefined, 1, st) ?? '', /needs the node's own signature/)
})

function rec (name: string, over: Partial<VolumeRecord> = {}): VolumeRecord {
  return { name, pool: 'rbd', sizeGiB: 1, snapshots: [], parent: null, attachedTo: null, createdAt: 0, phase: 'pending', reason: null, generation: 1, imageMade: false, ...over }
}
function nodeRec (id: string, caps: HypervisorCapability[], liveness: 'ready' | 'down' = 'ready'): NodeRecord {
  const c = registerNode(id) as Extract<Command, { type: 'RegisterNode' }>
  return { ...c.node, capabilities: caps, state: 'ready', registeredAt: 0, updatedAt: 0, liveness }
}

test('the reconciler\'s plan: who acts, and what it does per volume', () => {
  const nodes = [nodeRec('n1', ['qemu']), nodeRec('n2', ['qemu', 'rbd']), nodeRec('n3', ['qemu', 'rbd'])]
  const vols = [
    rec('a-new'),
    rec('b-ready', { phase: 'ready', imageMade: true }),
    rec('c-going', { phase: 'deleting', imageMade: true }),
    rec('d-clone', { parent: { volume: 'e-parent-pending', snapshot: 's' } }),
    rec('e-parent-pending', { snapshots: ['s'], imageMade: true, generation: 2 }),
    rec('f-clone', { parent: { volume: 'b-ready', snapshot: 's' } }),
    rec('g-orphan', { parent: { volume: 'nope', snapshot: 's' } }),
    rec('h-failed', { phase: 'failed', reason: 'x' }),
    rec('i-clone', { parent: { volume: 'h-failed', snapshot: 's' } }),
    // a legacy record (before phases): ready, image made
    { name: 'j-legacy', pool: 'rbd', sizeGiB: 1, snapshots: [], parent: null, attachedTo: null, createdAt: 0 }
  ]
  assert.equal(volumeTasks('n1', nodes, vols), [], 'n1 has no Ceph')
  assert.equal(volumeTasks('n3', nodes, vols), [], 'n3 is not the lowest id with Ceph')
  assert.equal(volumeTasks('n2', nodes, vols).map((t) => [t.volume.name, t.kind, 'reason' in t ? t.reason : t.kind === 'ensure' ? t.parent?.name ?? null : null]), [
    ['a-new', 'ensure', null],
    ['c-going', 'remove', null],
    ['d-clone', 'wait', 'waiting for its parent volume e-parent-pending to be ready'],
    ['e-parent-pending', 'ensure', null],
    ['f-clone', 'ensure', 'b-ready'],
    ['g-orphan', 'fail', 'its parent volume nope is gone'],
    ['i-clone', 'fail', 'its parent volume h-failed failed: x']
  ])
  // n2 down: n3 acts
  const n2down = [nodes[0], nodeRec('n2', ['qemu', 'rbd'], 'down'), nodes[2]]
  assert.is(volumeTasks('n3', n2down, vols).length, 7)
  assert.is(volumeReconciler([nodes[0]]), null, 'no node with Ceph: nobody')
})

test('VMs and volumes: pending waits (with the reason explain shows), deleting and never-made are refused', () => {
  const h = cluster()
  h.run({ type: 'CreateVolume', name: 'v', pool: 'rbd', sizeGiB: 1 })
  assert.ok(h.run({ type: 'CreateVm', id: 'vm1', spec: spec('a', { volumes: ['v'] }) }).ok, 'a pending volume is taken: the VM waits')
  assert.is(volumeWait(h.sm, h.sm.getVm('vm1')!), 'volume v is pending: its RBD image is not made yet')
  // `vm explain`: no node takes it yet, each saying why
  const load = { hints: () => new Map() }
  const e = explainVm(h.sm, load, 'vm1')
  assert.equal([e.decision.nodeId, e.decision.nodes?.map((n) => [n.nodeId, n.feasible, 'filter' in n ? n.filter : '', 'reason' in n ? n.reason : ''])],
    [null, ['n1', 'n2', 'n3'].map((id) => [id, false, 'volume', 'volume v is pending: its RBD image is not made yet'])])
  report(h, 'v', 'ready')
  assert.is(volumeWait(h.sm, h.sm.getVm('vm1')!), null)
  // ready: placed on a node with Ceph only (a VM with volumes requires rbd)
  const placed = explainVm(h.sm, load, 'vm1').decision
  assert.ok(placed.nodeId === 'n1' || placed.nodeId === 'n3', String(placed.nodeId))
  assert.match(JSON.stringify(placed.nodes?.find((n) => n.nodeId === 'n2')), /capability: needs rbd/)
  // a resize in flight leaves the image usable
  h.run({ type: 'ResizeVolume', name: 'v', sizeGiB: 2 })
  assert.is(volumeWait(h.sm, h.sm.getVm('vm1')!), null)
  // a placed VM may not add a volume whose image is not made yet (it would restart without it)
  h.run({ type: 'CreateVolume', name: 'p', pool: 'rbd', sizeGiB: 1 })
  h.run({ type: 'CreateVm', id: 'vm3', spec: spec('c') })
  assert.ok(h.run({ type: 'AssignVm', id: 'vm3', node: 'n1' }).ok)
  const add = h.run({ type: 'UpdateVmSpec', id: 'vm3', spec: spec('c', { volumes: ['p'] }) })
  assert.equal([errorKind(add), add.ok ? '' : add.error.message], ['Conflict', 'volume p is pending: its RBD image is not made yet: VM c is placed and would restart without it; add it once the volume is ready (blixard volume show p)'])
  report(h, 'p', 'ready')
  assert.ok(h.run({ type: 'UpdateVmSpec', id: 'vm3', spec: spec('c', { volumes: ['p'] }) }).ok)
  h.run({ type: 'CreateVolume', name: 'w', pool: 'rbd', sizeGiB: 1 })
  report(h, 'w', 'ready')
  h.run({ type: 'DeleteVolume', name: 'w' })
  const r = h.run({ type: 'CreateVm', id: 'vm2', spec: spec('b', { volumes: ['w'] }) })
  assert.equal([errorKind(r), r.ok ? '' : r.error.message], ['Conflict', 'volume w is being deleted'])
})

test.run()
