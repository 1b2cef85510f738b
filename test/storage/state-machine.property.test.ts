// Random command sequences: MemoryKv and LmdbKv agree; a rejection changes nothing; snapshots
// round-trip; idempotent retries apply once; the model's invariants hold after every step.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { parseCidr, parseIpv4 } from '../../protocols/command-schema.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'
import { envelopeArb } from './command-arbitraries.ts'
import { seededSigner } from '../../protocols/auth.ts'
import { tempDir, removeDir } from './tmpdir.ts'

const seqArb = fc.array(envelopeArb(), { minLength: 1, maxLength: 60 })

function rethrow (e: unknown): never {
  if (process.env.DEBUG_PROP != null) console.error(e)
  throw new Error(e instanceof Error ? e.message : String(e))
}

/** Invariants of the model, checked on a replica. */
function checkInvariants (sm: StateMachine): void {
  const vms = sm.listVms()
  const vmIds = new Set(vms.map(v => v.id))
  const names = new Set<string>()
  for (const vm of vms) {
    assert.ok(!names.has(vm.spec.name), `VM name ${vm.spec.name} unique`)
    names.add(vm.spec.name)
    assert.is(sm.getVmByName(vm.spec.name)?.id, vm.id, 'name index points at the VM')
    if (vm.assignedNode !== null) assert.ok(sm.getNode(vm.assignedNode) !== undefined, 'assigned node exists')
    for (const v of vm.spec.volumes) assert.is(sm.getVolume(v)?.attachedTo, vm.id, `volume ${v} attached to its VM`)
  }
  for (const vol of sm.listVolumes()) {
    if (vol.attachedTo === null) continue
    // attachedTo names one VM, and that VM lists the volume: a volume is on at most one VM.
    assert.ok(vmIds.has(vol.attachedTo), `volume ${vol.name} attached to an existing VM`)
    assert.ok(sm.getVm(vol.attachedTo)?.spec.volumes.includes(vol.name), 'attachment is mutual')
  }
  for (const net of sm.listNetworks()) {
    const cidr = parseCidr(net.subnet)
    assert.ok(cidr !== null)
    const holders = Object.values(net.allocations)
    assert.is(new Set(holders).size, holders.length, `no VM holds two addresses on ${net.name}`)
    for (const [ip, vm] of Object.entries(net.allocations)) {
      const a = parseIpv4(ip)
      assert.ok(a !== null && a > cidr.network && a < cidr.broadcast, `${ip} is a host address of ${net.subnet}`)
      assert.ok(net.gateway === null || ip !== net.gateway, 'gateway never allocated')
      assert.ok(vmIds.has(vm), `${ip} held by an existing VM`)
    }
  }
  for (const node of sm.listNodes()) {
    const mine = sm.listVms({ node: node.id })
    assert.equal(mine.map(v => v.id), vms.filter(v => v.assignedNode === node.id).map(v => v.id), `vmsByNode index of ${node.id} matches the VMs`)
    const cpu = mine.reduce((s, v) => s + v.spec.vcpus, 0)
    const mem = mine.reduce((s, v) => s + v.spec.memoryMiB, 0)
    assert.ok(cpu <= node.capacity.cpu * node.overcommit.cpu, `node ${node.id} CPU within capacity`)
    assert.ok(mem <= node.capacity.memoryMiB * node.overcommit.memory, `node ${node.id} memory within capacity`)
    assert.ok(node.maxVms === null || mine.length <= node.maxVms, `node ${node.id} within maxVms`)
  }
}

test('MemoryKv and LmdbKv replicas agree on every result and hash; invariants hold; rejections change nothing', () => {
  fc.assert(fc.property(seqArb, (envs) => {
    const dir = tempDir()
    const lkv = LmdbKv.open(dir, { sync: 'never' })
    try {
      const a = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
      const b = new StateMachine(lkv, UNCHECKED_AUTHORITY)
      let index = 0
      for (const env of envs) {
        index += 1 + (index % 3 === 0 ? 1 : 0) // gaps, as conf entries leave
        const data = encodeEnvelope(env)
        const before = a.stateHash()
        const ra = a.apply(index, data)
        const rb = b.apply(index, data)
        assert.equal(rb, ra, `results agree at ${index} (${env.cmd.type})`)
        assert.is(b.stateHash(), a.stateHash(), `hashes agree at ${index}`)
        assert.is(b.fullStateHash(), a.fullStateHash(), `full hashes agree at ${index}`)
        assert.is(a.applied(), index)
        assert.is(b.applied(), index)
        if (!ra.ok) assert.is(a.stateHash(), before, `rejected ${env.cmd.type} (${ra.error.kind}) changed nothing`)
        checkInvariants(a)
      }
    } catch (e) { rethrow(e) } finally {
      lkv.close()
      removeDir(dir)
    }
  }), { numRuns: 60 })
})

test('snapshot then restore reproduces the state, and both replicas go on identically', () => {
  fc.assert(fc.property(seqArb, seqArb, (first, rest) => {
    try {
      const a = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
      let i = 0
      for (const env of first) a.apply(++i, encodeEnvelope(env))
      const b = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
      b.apply(1, encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: 'junk', name: 'x' }, at: 1 })) // restore must replace it
      b.restore(a.snapshot(), a.applied())
      assert.is(b.applied(), a.applied())
      assert.is(b.fullStateHash(), a.fullStateHash())
      for (const env of rest) {
        const d = encodeEnvelope(env)
        i++
        assert.equal(b.apply(i, d), a.apply(i, d))
      }
      assert.is(b.fullStateHash(), a.fullStateHash())
    } catch (e) { rethrow(e) }
  }), { numRuns: 60 })
})

test('a retried command (same key) returns the first result and applies once', () => {
  fc.assert(fc.property(seqArb, (envs) => {
    try {
      const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
      const first = new Map<string, ApplyResult>()
      let i = 0
      for (const [n, env] of envs.entries()) {
        const keyed: CommandEnvelope = { ...env, key: `key-${n}` }
        const r = sm.apply(++i, encodeEnvelope(keyed))
        first.set(keyed.key as string, r)
        const h = sm.stateHash()
        // the retry may arrive with a later clock: still the same answer, and nothing applied
        const again = sm.apply(++i, encodeEnvelope({ ...keyed, at: keyed.at + 1 }))
        assert.equal(again, r)
        assert.is(sm.stateHash(), h, 'a retry changes nothing')
        assert.is(sm.applied(), i, 'a retry still advances applied')
      }
      for (const [k, r] of first) assert.equal(sm.resultFor(k), r)
    } catch (e) { rethrow(e) }
  }), { numRuns: 60 })
})

test('idempotency keys are forgotten after the window, deterministically', async () => {
  const { IDEMPOTENCY_WINDOW } = await import('../../storage/state-machine.ts')
  const sm = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
  const p1 = seededSigner(new Uint8Array(32).fill(1)).peerId // an admin must be a real peer id
  const add = (_p: string, key: string, index: number): ApplyResult => sm.apply(index, encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: p1, name: 'p1' }, at: 1, key }))
  assert.is(add('p1', 'k', 1).ok, true)
  assert.is(add('p1', 'k', 2).ok, true) // retry: the stored result
  sm.apply(1 + IDEMPOTENCY_WINDOW, new Uint8Array(0))
  assert.is(sm.resultFor('k'), undefined)
  const r = add('p1', 'k', 2 + IDEMPOTENCY_WINDOW)
  assert.is(r.ok, false) // applied again now: p1 exists
})

test('LmdbKv: a restarted state machine resumes at its applied index with the same state', () => {
  fc.assert(fc.property(seqArb, (envs) => {
    const dir = tempDir()
    try {
      let kv = LmdbKv.open(dir, { sync: 'never' })
      let sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
      envs.forEach((env, n) => sm.apply(n + 1, encodeEnvelope(env)))
      const h = sm.fullStateHash()
      kv.close()
      kv = LmdbKv.open(dir, { sync: 'never' })
      sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
      assert.is(sm.applied(), envs.length)
      assert.is(sm.fullStateHash(), h)
      kv.close()
    } catch (e) { rethrow(e) } finally { removeDir(dir) }
  }), { numRuns: 20 })
})

test.run()
