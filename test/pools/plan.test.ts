// Warm pools: the hosts' pure decisions (protocols/pools.ts) as tables, and the two
// commands through a real state machine with real signatures (storage/apply-pools.ts): only an
// admin declares or deletes a pool, bad shapes are refused with the field named, a second pool of
// one image and shape is refused (creates would only ever claim from the first), a pool of an image
// that cannot be held warm is refused naming it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import { seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { SyncSigner } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import type { WarmGuest, WarmPoolRecord } from '../../protocols/pools.ts'
import type { VmSpec } from '../../protocols/model.ts'
import { MAX_WARM_BOOTING, MAX_WARM_POOL_SIZE, parseWarmGuestId, pickWarmGuest, planWarmPools, poolFor, unpoolable, warmGuestId, warmRoom } from '../../protocols/pools.ts'
import type { WarmRoom } from '../../protocols/pools.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { registerNode, spec } from '../storage/sm-fixtures.ts'
import { checkPrepared } from '../../node/cli/signing.ts'
import { POOL_METHODS } from '../../protocols/rpc-pools.ts'

const pool = (name: string, size: number, over: Partial<WarmPoolRecord> = {}): WarmPoolRecord => ({ name, vcpus: 1, memoryMiB: 96, size, setAt: 0, ...over })
const g = (id: string, state: WarmGuest['state'], over: Partial<WarmGuest> = {}): WarmGuest => ({ id, state, vcpus: 1, memoryMiB: 96, ...over })
const kinds = (a: ReturnType<typeof planWarmPools>): string[] => a.map((x) => x.kind === 'boot' ? `boot ${x.pool}` : `${x.kind} ${x.id}`)

test('planWarmPools: what a host does, table', () => {
  assert.is(MAX_WARM_BOOTING, 1, 'the table below assumes one boot at a time')
  const rows: Array<[string, WarmPoolRecord[], WarmGuest[], string[], Set<string>?]> = [
    ['empty pool: one boot at a time', [pool('p', 2)], [], ['boot p']],
    ['one booting: wait for it', [pool('p', 2)], [g('warm.p.1', 'booting')], []],
    ['booted: pause it, boot the next', [pool('p', 2)], [g('warm.p.1', 'ready')], ['pause warm.p.1', 'boot p']],
    ['full and paused: nothing', [pool('p', 2)], [g('warm.p.1', 'paused'), g('warm.p.2', 'paused')], []],
    ['dead guest: removed, and replaced', [pool('p', 1)], [g('warm.p.1', 'gone')], ['remove warm.p.1', 'boot p']],
    ['shrunk: the newest goes (by sequence, .10 after .2)', [pool('p', 1)], [g('warm.p.10', 'paused'), g('warm.p.2', 'paused')], ['remove warm.p.10']],
    ['deleted pool: all its guests go', [], [g('warm.p.1', 'paused'), g('warm.p.2', 'booting')], ['remove warm.p.1', 'remove warm.p.2']],
    ['reshaped pool: old-shape guests go', [pool('p', 1, { memoryMiB: 128 })], [g('warm.p.1', 'paused')], ['remove warm.p.1', 'boot p']],
    ['size 0 keeps the pool, no guests', [pool('p', 0)], [g('warm.p.1', 'paused')], ['remove warm.p.1']],
    ['two pools share the one boot slot, by name', [pool('b', 1, { memoryMiB: 128 }), pool('a', 1)], [], ['boot a']],
    ['a busy guest is left alone but counted', [pool('p', 1)], [g('warm.p.1', 'ready')], [], new Set(['warm.p.1'])],
    ['not a pool guest id: removed', [pool('p', 1)], [g('warm.p.x', 'paused'), g('warm.p.1', 'paused')], ['remove warm.p.x']],
    ['a pool that names its image plans as one set before pools had one', [pool('p', 2, { image: { kind: 'tiny' } })], [g('warm.p.1', 'ready')], ['pause warm.p.1', 'boot p']]
  ]
  for (const [what, pools, guests, want, busy] of rows) assert.equal(kinds(planWarmPools(pools, guests, busy)), want, what)
})

test('planWarmPools with room: pool guests hold only what the VMs placed here leave, table', () => {
  const r = (cpu: number, memoryMiB: number): WarmRoom => ({ cpu, memoryMiB })
  const rows: Array<[string, WarmPoolRecord[], WarmGuest[], WarmRoom, string[], Set<string>?]> = [
    ['room for all: as without a bound', [pool('p', 2)], [g('warm.p.1', 'paused')], r(8, 1024), ['boot p']],
    ['room for exactly the pool: full, nothing to do', [pool('p', 2)], [g('warm.p.1', 'paused'), g('warm.p.2', 'paused')], r(2, 192), []],
    ['no room for a refill: it does not boot', [pool('p', 2)], [g('warm.p.1', 'paused')], r(8, 100), []],
    ['no cpu for a refill: it does not boot', [pool('p', 2)], [g('warm.p.1', 'paused')], r(1, 1024), []],
    ['a VM placed here needs the room of one guest: the newest goes, nothing boots', [pool('p', 2)], [g('warm.p.1', 'paused'), g('warm.p.2', 'paused')], r(4, 100), ['remove warm.p.2']],
    ['a booting guest goes before paused ones', [pool('p', 3)], [g('warm.p.1', 'paused'), g('warm.p.2', 'paused'), g('warm.p.3', 'booting')], r(4, 150), ['remove warm.p.3', 'remove warm.p.2']],
    ['newest first across pools', [pool('a', 1), pool('b', 1, { memoryMiB: 128 })], [g('warm.a.5', 'paused'), g('warm.b.2', 'paused', { memoryMiB: 128 })], r(4, 100), ['remove warm.a.5', 'remove warm.b.2']],
    ['the VMs overfill the host: every guest goes', [pool('p', 2)], [g('warm.p.1', 'paused'), g('warm.p.2', 'ready')], r(-1, -50), ['remove warm.p.2', 'remove warm.p.1']],
    ['a busy guest cannot go now: the next one does, and it counts', [pool('p', 2)], [g('warm.p.1', 'paused'), g('warm.p.2', 'ready')], r(4, 100), ['remove warm.p.1'], new Set(['warm.p.2'])],
    ['a kept guest that booted is still paused', [pool('p', 2)], [g('warm.p.1', 'ready'), g('warm.p.2', 'paused')], r(4, 100), ['remove warm.p.2', 'pause warm.p.1']]
  ]
  for (const [what, pools, guests, room, want, busy] of rows) assert.equal(kinds(planWarmPools(pools, guests, busy, room)), want, what)
})

test('warmRoom: what the VMs placed here leave, plus the room of guests about to be handed to a VM, table', () => {
  const pools = [pool('fn', 2)]
  const fn = { ...spec('f'), memoryMiB: 96 }
  const cold = { ...fn, kernelParams: ['x=1'] }
  const paused = [g('warm.fn.1', 'paused'), g('warm.fn.2', 'paused'), g('warm.fn.3', 'booting')]
  const free = { cpu: 2, memoryMiB: 0 }
  const rows: Array<[string, Array<{ spec: VmSpec, asked: boolean }>, WarmGuest[], WarmRoom]> = [
    ['nothing pending: the free room', [], paused, free],
    ['a VM a paused guest will serve: its guest stays', [{ spec: fn, asked: false }], paused, { cpu: 3, memoryMiB: 96 }],
    ['two of them, two paused guests', [{ spec: fn, asked: false }, { spec: fn, asked: false }], paused, { cpu: 4, memoryMiB: 192 }],
    ['three of them: a booting guest serves none', [{ spec: fn, asked: false }, { spec: fn, asked: false }, { spec: fn, asked: false }], paused, { cpu: 4, memoryMiB: 192 }],
    ['it already asked (claimed or booting cold): it needs room of its own', [{ spec: fn, asked: true }], paused, free],
    ['a VM no pool serves needs its room', [{ spec: cold, asked: false }], paused, free],
    ['no paused guest: it boots, it needs its room', [{ spec: fn, asked: false }], [g('warm.fn.3', 'booting')], free]
  ]
  for (const [what, pending, guests, want] of rows) assert.equal(warmRoom(free, pending, pools, guests), want, what)
})

test('pickWarmGuest: the oldest paused guest of the pool, never a busy, booting or other pool\'s one', () => {
  const gs = [g('warm.p.3', 'paused'), g('warm.p.12', 'paused'), g('warm.p.1', 'booting'), g('warm.q.1', 'paused'), g('warm.p.2', 'ready')]
  assert.is(pickWarmGuest('p', gs), 'warm.p.3')
  assert.is(pickWarmGuest('p', gs, new Set(['warm.p.3'])), 'warm.p.12')
  assert.is(pickWarmGuest('p', gs, new Set(['warm.p.3', 'warm.p.12'])), null)
  assert.is(pickWarmGuest('r', gs), null)
})

test('poolFor / unpoolable: a create matches a pool by image and shape, only a plain guest of an image held warm', () => {
  const pools = [pool('zz', 1), pool('big', 1, { memoryMiB: 512 }), pool('aa', 1), pool('none', 0, { memoryMiB: 256 })]
  const base = { ...spec('web'), memoryMiB: 96 }
  assert.is(poolFor(base, pools)?.name, 'aa', 'the first by name of the shape')
  // the image is part of the key: a record without one is the tiny image's
  assert.is(poolFor(base, [pool('t', 1, { image: { kind: 'tiny' } })])?.name, 't')
  assert.is(poolFor(base, [pool('f', 1, { image: { kind: 'flake', ref: 'github:a/b#g' } })]), null, 'a pool of another image does not serve a tiny create')
  assert.is(poolFor(base, [pool('f', 1, { image: { kind: 'flake', ref: 'github:a/b#g' } }), pool('zt', 1)])?.name, 'zt', 'the first by name of its image, not of the shape alone')
  assert.is(poolFor({ ...base, memoryMiB: 512 }, pools)?.name, 'big')
  assert.is(poolFor({ ...base, memoryMiB: 256 }, pools), null, 'a pool of size 0 serves nothing')
  assert.is(poolFor({ ...base, memoryMiB: 200 }, pools), null)
  const unfit: Array<[Partial<VmSpec>, string]> = [
    [{ volumes: ['d'] }, 'volumes'], [{ networks: ['n'] }, 'networks'], [{ kernelParams: ['x=1'] }, 'kernel parameters'],
    [{ image: { kind: 'kernel', kernel: '/k' } }, 'image kernel /k'], [{ image: { kind: 'flake', ref: 'github:a/b#g' } }, 'image flake github:a/b#g'], [{ hypervisor: 'firecracker' }, 'hypervisor firecracker']
  ]
  for (const [over, why] of unfit) {
    assert.is(unpoolable({ ...base, ...over }), why)
    assert.is(poolFor({ ...base, ...over }, pools), null, why)
  }
  assert.equal(parseWarmGuestId(warmGuestId('p-1', 7)), { pool: 'p-1', seq: 7 })
  assert.is(parseWarmGuestId('3f2c1b8e-0000-4000-8000-000000000000'), null, 'a VM id is no pool guest')
})

const key = (n: number): SyncSigner => seededSigner(new Uint8Array(32).fill(n))
const admin = key(31)
const na = key(32)

function cluster (): { sm: StateMachine, run: (s: SyncSigner, cmd: Command) => ApplyResult } {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  const run = (s: SyncSigner, cmd: Command): ApplyResult => {
    const v = validateCommand(cmd)
    if (!v.ok) return { ok: false, error: v.error }
    const env: CommandEnvelope = { cmd: v.cmd, at: (i + 1) * 1000, auth: signCommandSync(s, v.cmd, `n${i}`, i + 100) }
    return sm.apply(++i, encodeEnvelope(env), 1)
  }
  assert.ok(run(na, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }).ok)
  assert.ok(run(na, registerNode(na.peerId, { name: 'a' })).ok)
  return { sm, run }
}

function refused (r: ApplyResult, kind: string, re: RegExp): void {
  assert.not.ok(r.ok, 'refused')
  if (!r.ok) { assert.is(r.error.kind, kind, r.error.message); assert.match(r.error.message, re) }
}

test('SetWarmPool / DeleteWarmPool: admin-signed, checked, recorded in Raft', () => {
  const { sm, run } = cluster()
  refused(run(na, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2 }), 'Unauthorized', /admin/)
  assert.equal(sm.listWarmPools(), [], 'a node may not declare a pool')
  const r = run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2 })
  assert.ok(r.ok)
  assert.equal(sm.listWarmPools().map((p) => [p.name, p.image, p.vcpus, p.memoryMiB, p.size]), [['fn', { kind: 'tiny' }, 1, 96, 2]], 'the image recorded: the tiny one when none is named')
  assert.ok(run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 3 }).ok, 'a resize')
  assert.is(sm.listWarmPools()[0].size, 3)
  refused(run(admin, { type: 'SetWarmPool', name: 'other', vcpus: 1, memoryMiB: 96, size: 1 }), 'AlreadyExists', /fn already holds guests of image tiny, 1 vCPU × 96 MiB/)
  refused(run(admin, { type: 'SetWarmPool', name: 'other', image: { kind: 'tiny' }, vcpus: 1, memoryMiB: 96, size: 1 }), 'AlreadyExists', /fn already holds guests of image tiny/)
  // only an image a host can hold warm: named, and why
  refused(run(admin, { type: 'SetWarmPool', name: 'nix', image: { kind: 'flake', ref: 'github:acme/fn#guest' }, vcpus: 1, memoryMiB: 96, size: 1 }), 'InvalidSpec', /^warm pool nix: image flake github:acme\/fn#guest cannot be held warm: .*only the tiny image prints/)
  refused(run(admin, { type: 'SetWarmPool', name: 'k', image: { kind: 'kernel', kernel: '/boot/vmlinuz' }, vcpus: 1, memoryMiB: 128, size: 1 }), 'InvalidSpec', /image kernel \/boot\/vmlinuz cannot be held warm/)
  refused(run(admin, { type: 'SetWarmPool', name: 'k', image: { kind: 'qcow2' }, vcpus: 1, memoryMiB: 128, size: 1 } as unknown as Command), 'InvalidCommand', /image/)
  assert.equal(sm.listWarmPools().map((p) => p.name), ['fn'], 'nothing recorded by a refusal')
  refused(run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: MAX_WARM_POOL_SIZE + 1 }), 'InvalidSpec', /size/)
  refused(run(admin, { type: 'SetWarmPool', name: 'Bad_Name', vcpus: 1, memoryMiB: 96, size: 1 }), 'InvalidSpec', /name/)
  refused(run(na, { type: 'DeleteWarmPool', name: 'fn' }), 'Unauthorized', /admin/)
  refused(run(admin, { type: 'DeleteWarmPool', name: 'nope' }), 'NotFound', /no warm pool named nope/)
  assert.ok(run(admin, { type: 'DeleteWarmPool', name: 'fn' }).ok)
  assert.equal(sm.listWarmPools(), [])
  // confined to the nodes whose labels meet its constraints (the same vocabulary as a VM's)
  assert.ok(run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2, constraints: [{ label: 'pool', op: '==', value: 'yes' }] }).ok)
  assert.equal(sm.listWarmPools()[0].constraints, [{ label: 'pool', op: '==', value: 'yes' }])
  assert.ok(run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2, constraints: [] }).ok)
  assert.is(sm.listWarmPools()[0].constraints, undefined, 'an empty list: every node')
  refused(run(admin, { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2, constraints: [{ label: 'pool', op: 'is', value: 'yes' }] } as unknown as Command), 'InvalidCommand', /constraints\[0\]/)
})

test('the CLI signs only the pool it was asked for (a node may not grow, reshape or swap it)', () => {
  const asked = { name: 'fn', vcpus: 1, memoryMiB: 96, size: 2 }
  checkPrepared('pool.set', asked, { type: 'SetWarmPool', ...asked })
  for (const over of [{ size: 16 }, { memoryMiB: 4096 }, { vcpus: 8 }, { name: 'other' }, { image: { kind: 'flake' as const, ref: 'github:x/y#z' } }]) {
    assert.throws(() => { checkPrepared('pool.set', asked, { type: 'SetWarmPool', ...asked, ...over }) }, /refusing to sign/, JSON.stringify(over))
  }
  // nor move it to other nodes
  const on = { ...asked, constraints: [{ label: 'pool', op: '==' as const, value: 'yes' }] }
  checkPrepared('pool.set', on, { type: 'SetWarmPool', ...on })
  assert.throws(() => { checkPrepared('pool.set', on, { type: 'SetWarmPool', ...asked }) }, /refusing to sign/, 'constraints dropped')
  assert.throws(() => { checkPrepared('pool.set', asked, { type: 'SetWarmPool', ...on }) }, /refusing to sign/, 'constraints added')
  checkPrepared('pool.delete', { name: 'fn' }, { type: 'DeleteWarmPool', name: 'fn' })
  assert.throws(() => { checkPrepared('pool.delete', { name: 'fn' }, { type: 'DeleteWarmPool', name: 'prod' }) }, /refusing to sign/)
  assert.throws(() => { checkPrepared('pool.set', asked, { type: 'DeleteWarmPool', name: 'fn' }) }, /refusing to sign/)
})

test('pool.set params: constraints checked as a VM\'s are, bounded, the field named', () => {
  const ok = { name: 'fn', vcpus: 1, memoryMiB: 96, size: 2 }
  assert.equal(POOL_METHODS['pool.set'].params({ ...ok, constraints: [{ label: 'pool', op: 'in', values: ['a', 'b'] }] }), { ...ok, constraints: [{ label: 'pool', op: 'in', values: ['a', 'b'] }] })
  assert.equal(POOL_METHODS['pool.set'].params(ok), ok)
  assert.equal(POOL_METHODS['pool.set'].params({ ...ok, image: { kind: 'tiny' } }), { ...ok, image: { kind: 'tiny' } })
  assert.throws(() => POOL_METHODS['pool.set'].params({ ...ok, image: { kind: 'flake', ref: 'x'.repeat(100_000) } }), /params\.image/)
  assert.throws(() => POOL_METHODS['pool.set'].params({ ...ok, image: 'tiny' }), /params\.image/)
  const bad: Array<[unknown, RegExp]> = [
    [[{ label: 'pool', op: 'is', value: 'yes' }], /params\.constraints\[0\]/],
    [[{ label: 'pool', op: '==' }], /params\.constraints\[0\]/],
    ['pool==yes', /params\.constraints/],
    [Array.from({ length: 10_000 }, () => ({ label: 'pool', op: 'exists' })), /params\.constraints/]
  ]
  for (const [constraints, re] of bad) assert.throws(() => POOL_METHODS['pool.set'].params({ ...ok, constraints }), re, JSON.stringify(constraints).slice(0, 60))
  assert.throws(() => POOL_METHODS['pool.set'].params({ ...ok, where: 'x' }), /where/)
})

test.run()
