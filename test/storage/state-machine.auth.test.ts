// Authority on apply (protocols/auth.ts): admin commands need a current admin's signature, node
// commands the node's own, every signature is used once, and a rejection changes nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import { AUTH_WINDOW, seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { SyncSigner } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { registerNode, spec } from './sm-fixtures.ts'

const key = (n: number): SyncSigner => seededSigner(new Uint8Array(32).fill(n))
const admin = key(1)
const n1 = key(2)
const n2 = key(3)
const mallory = key(4)

function norm (cmd: Command): Command {
  const v = validateCommand(cmd)
  if (!v.ok) throw new Error(v.error.message)
  return v.cmd
}

function setup (): { sm: StateMachine, run: (env: CommandEnvelope, term?: number) => ApplyResult, signed: (s: SyncSigner, cmd: Command, nonce?: string, until?: number) => CommandEnvelope, next: () => number } {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  let nonces = 0
  return {
    sm,
    next: () => i + 1,
    run: (env, term = 1) => sm.apply(++i, encodeEnvelope(env), term),
    signed: (s, cmd, nonce, until) => {
      const c = norm(cmd)
      return { cmd: c, at: 1, auth: signCommandSync(s, c, nonce ?? `n${++nonces}`, until ?? i + 100) }
    }
  }
}

function unauthorized (r: ApplyResult, fragment: string): void {
  assert.is(r.ok, false, 'must be refused')
  if (r.ok) return
  assert.is(r.error.kind, 'Unauthorized')
  assert.ok(r.error.message.includes(fragment), `"${r.error.message}" names "${fragment}"`)
}

/** A cluster with one admin and two registered nodes. */
function cluster (): ReturnType<typeof setup> {
  const h = setup()
  assert.ok(h.run(h.signed(n1, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' })).ok, 'the first admin, added by the bootstrap node')
  assert.ok(h.run(h.signed(n1, registerNode(n1.peerId, { name: 'a' }))).ok)
  assert.ok(h.run(h.signed(n2, registerNode(n2.peerId, { name: 'b' }))).ok)
  return h
}

test('an unsigned admin command is refused by name and changes nothing', () => {
  const h = cluster()
  const before = h.sm.stateHash()
  unauthorized(h.run({ cmd: { type: 'CreateVm', id: 'v1', spec: spec('web') }, at: 1 }), "needs an admin's signature and carries none")
  unauthorized(h.run({ cmd: { type: 'AddAdmin', peerId: mallory.peerId, name: 'me' }, at: 1 }), 'carries none')
  assert.is(h.sm.stateHash(), before)
})

test('a badly signed admin command is refused: signature over another command, or corrupted', () => {
  const h = cluster()
  const before = h.sm.stateHash()
  const good = h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') })
  const swapped: CommandEnvelope = { ...good, cmd: norm({ type: 'AddAdmin', peerId: mallory.peerId, name: 'me' }) }
  unauthorized(h.run(swapped), 'bad signature')
  const sig = new Uint8Array(good.auth!.sig); sig[0] ^= 1
  unauthorized(h.run({ ...good, auth: { ...good.auth!, sig } }), 'bad signature')
  // claiming to be the admin while signing with another key
  const forged = h.signed(mallory, { type: 'CreateVm', id: 'v1', spec: spec('web') })
  unauthorized(h.run({ ...forged, auth: { ...forged.auth!, signer: admin.peerId } }), 'bad signature')
  unauthorized(h.run({ ...forged, auth: { ...forged.auth!, signer: 'notapeerid' } }), 'bad signature')
  assert.is(h.sm.stateHash(), before)
})

test('a validly signed command from a non-admin (a stranger, or a member node) is refused', () => {
  const h = cluster()
  const before = h.sm.stateHash()
  unauthorized(h.run(h.signed(mallory, { type: 'AddAdmin', peerId: mallory.peerId, name: 'me' })), 'is not an admin')
  unauthorized(h.run(h.signed(n1, { type: 'AddAdmin', peerId: n1.peerId, name: 'me' })), 'is not an admin')
  unauthorized(h.run(h.signed(n1, { type: 'CreateVm', id: 'v1', spec: spec('web') })), 'is not an admin')
  unauthorized(h.run(h.signed(n2, { type: 'RemoveAdmin', peerId: admin.peerId })), 'is not an admin')
  unauthorized(h.run(h.signed(n1, { type: 'UpdateNode', id: n1.peerId, state: 'draining' })), 'is not an admin')
  assert.is(h.sm.stateHash(), before)
  assert.ok(h.run(h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') })).ok, 'the admin still can')
})

test('a replayed signed command is refused, even under a new idempotency key and after its first run failed', () => {
  const h = cluster()
  const env = h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') })
  assert.ok(h.run({ ...env, key: 'k1' }).ok)
  assert.ok(h.run(h.signed(admin, { type: 'DeleteVm', id: 'v1' })).ok)
  const before = h.sm.stateHash()
  unauthorized(h.run({ ...env, key: 'k2' }), 'replays nonce')
  unauthorized(h.run(env), 'replays nonce')
  assert.is(h.sm.stateHash(), before)
  // the same key again is the idempotent retry: the first answer, nothing new
  assert.ok(h.run({ ...env, key: 'k1' }).ok)
  assert.is(h.sm.stateHash(), before)
  // a rejected command spends its nonce too (it cannot succeed later, once the state allows it)
  const del = h.signed(admin, { type: 'DeleteVm', id: 'v2' })
  assert.is(h.run(del).ok, false)
  assert.ok(h.run(h.signed(admin, { type: 'CreateVm', id: 'v2', spec: spec('db') })).ok)
  unauthorized(h.run(del), 'replays nonce')
  assert.ok(h.sm.getVm('v2') !== undefined)
})

test('validity is bounded by log index, never by a clock, and used nonces are forgotten after it', () => {
  const h = cluster()
  const late = h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }, 'late', h.next() - 1)
  unauthorized(h.run(late), 'expired at index')
  const far = h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }, 'far', h.next() + AUTH_WINDOW + 1)
  unauthorized(h.run(far), `more than ${AUTH_WINDOW} beyond`)
  const env = h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }, 'once', h.next() + 2)
  assert.ok(h.run(env).ok)
  unauthorized(h.run(env), 'replays nonce') // within its validity: remembered
  h.run(h.signed(admin, { type: 'DeleteVm', id: 'nope' }))
  // past `until` the nonce is dropped from the store, and a replay is refused as expired
  unauthorized(h.run(env), 'expired at index')
})

test('node commands may touch only the signing node\'s own records', () => {
  const h = cluster()
  assert.ok(h.run(h.signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') })).ok)
  assert.ok(h.run(h.signed(n1, { type: 'AssignVm', id: 'v1', node: n1.peerId, term: 1 })).ok, 'a scheduling decision signed by the term\'s leader')
  const before = h.sm.stateHash()
  unauthorized(h.run(h.signed(n1, registerNode(n2.peerId, { name: 'c' }))), `may not register node ${n2.peerId}`)
  unauthorized(h.run(h.signed(mallory, registerNode('fake-node', { cpu: 100_000, name: 'fake' }))), 'may not register node fake-node')
  unauthorized(h.run(h.signed(n2, { type: 'UpdateNode', id: n1.peerId, capacity: { cpu: 100_000, memoryMiB: 1, diskGiB: 1 } })), `may not update node ${n1.peerId}`)
  unauthorized(h.run(h.signed(n2, { type: 'ReportVmStatus', reports: [{ id: 'v1', node: n1.peerId, generation: 1, status: { phase: 'failed', reason: 'x', at: 1 } }] })), `may not report status for node ${n1.peerId}`)
  unauthorized(h.run(h.signed(mallory, { type: 'AssignVm', id: 'v1', node: null, term: 1 })), 'is not a registered node')
  assert.is(h.sm.stateHash(), before)
  assert.ok(h.run(h.signed(n1, { type: 'UpdateNode', id: n1.peerId, addrs: ['/ip4/127.0.0.1/tcp/2'] })).ok, 'its own record')
})

test('the first admins: any signer before a node registers (bootstrap adds every --admin), then a node while there is no admin, then only an admin', () => {
  const h = setup()
  unauthorized(h.run({ cmd: { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }, at: 1 }), 'carries none')
  assert.ok(h.run(h.signed(n1, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' })).ok)
  assert.ok(h.run(h.signed(n1, { type: 'AddAdmin', peerId: n2.peerId, name: 'ops2' })).ok, 'a second configured admin, still before any node registered')
  assert.ok(h.run(h.signed(n1, registerNode(n1.peerId, { name: 'a' }))).ok)
  unauthorized(h.run(h.signed(n1, { type: 'AddAdmin', peerId: n1.peerId, name: 'me' })), 'is not an admin')
  assert.ok(h.run(h.signed(admin, { type: 'AddAdmin', peerId: n1.peerId, name: 'third' })).ok)
  assert.equal(h.sm.listAdmins().map((a) => a.peerId).sort(), [admin.peerId, n2.peerId, n1.peerId].sort())
  // a node registered before any admin exists may add the first one (a cluster bootstrapped without --admin)
  const h2 = setup()
  assert.ok(h2.run(h2.signed(n1, registerNode(n1.peerId, { name: 'a' }))).ok)
  unauthorized(h2.run(h2.signed(admin, { type: 'AddAdmin', peerId: admin.peerId, name: 'me' })), 'is not an admin')
  assert.ok(h2.run(h2.signed(n1, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' })).ok)
})

test('join policy "approve": a new node registers only once an admin approved its peer id; registered nodes stay', () => {
  const h = cluster()
  const n3 = key(5)
  unauthorized(h.run(h.signed(n1, { type: 'SetJoinPolicy', policy: 'approve' })), 'is not an admin')
  assert.is(h.sm.joinPolicy(), 'open', 'the default')
  assert.ok(h.run(h.signed(admin, { type: 'SetJoinPolicy', policy: 'approve' })).ok)
  unauthorized(h.run(h.signed(n3, registerNode(n3.peerId, { name: 'c' }))), `blixard node approve ${n3.peerId}`)
  assert.ok(h.run(h.signed(n1, registerNode(n1.peerId, { name: 'a' }))).ok, 'a registered node re-registers (restart)')
  unauthorized(h.run(h.signed(n3, { type: 'ApproveNode', peerId: n3.peerId })), 'is not an admin')
  const bad = h.run(h.signed(admin, { type: 'ApproveNode', peerId: 'notapeerid' }))
  assert.is(bad.ok ? 'ok' : bad.error.kind, 'InvalidCommand')
  assert.ok(h.run(h.signed(admin, { type: 'ApproveNode', peerId: n3.peerId })).ok)
  assert.ok(h.sm.mayJoin(n3.peerId))
  assert.ok(h.run(h.signed(n3, registerNode(n3.peerId, { name: 'c' }))).ok)
})

test('admin recovery: a registered node\'s signed vote each; the admin is added only when every registered node voted', () => {
  const h = cluster()
  const newAdmin = key(6)
  unauthorized(h.run(h.signed(mallory, { type: 'RecoverAdmin', peerId: mallory.peerId })), 'not a registered node')
  unauthorized(h.run({ cmd: { type: 'RecoverAdmin', peerId: newAdmin.peerId }, at: 1 }), 'carries none')
  const first = h.run(h.signed(n1, { type: 'RecoverAdmin', peerId: newAdmin.peerId }))
  assert.ok(first.ok)
  assert.equal((first as { value: unknown }).value, { peerId: newAdmin.peerId, votes: 1, needed: 2, added: false })
  assert.not.ok(h.sm.isAdmin(newAdmin.peerId), 'one node of two is not enough')
  // the same node voting twice is still one vote
  assert.ok(h.run(h.signed(n1, { type: 'RecoverAdmin', peerId: newAdmin.peerId })).ok)
  assert.not.ok(h.sm.isAdmin(newAdmin.peerId))
  const second = h.run(h.signed(n2, { type: 'RecoverAdmin', peerId: newAdmin.peerId }))
  assert.equal((second as { value: unknown }).value, { peerId: newAdmin.peerId, votes: 2, needed: 2, added: true })
  assert.ok(h.sm.isAdmin(newAdmin.peerId))
  assert.ok(h.sm.isAdmin(admin.peerId), 'recovery adds; it removes nobody')
})

test('an admin that is not a peer id (admin add notapeerid) is refused on apply, whoever signed it', () => {
  const h = cluster()
  const r = h.run(h.signed(admin, { type: 'AddAdmin', peerId: 'notapeerid', name: 'x' }))
  assert.is(r.ok, false)
  if (!r.ok) { assert.is(r.error.kind, 'InvalidCommand'); assert.match(r.error.message, /"notapeerid" is not a libp2p peer id/) }
  assert.not.ok(h.sm.isAdmin('notapeerid'))
})

test('the last admin cannot be removed, by itself either', () => {
  const h = cluster()
  const r = h.run(h.signed(admin, { type: 'RemoveAdmin', peerId: admin.peerId }))
  assert.is(r.ok, false)
  if (!r.ok) { assert.is(r.error.kind, 'Conflict'); assert.match(r.error.message, /last admin/) }
  assert.ok(h.sm.isAdmin(admin.peerId))
})


test('expiry of used nonces and idempotency keys: batches, restarts and the skipped scans forget exactly what one-by-one apply forgets', async () => {
  const { IDEMPOTENCY_WINDOW } = await import('../../storage/state-machine.ts')
  // one stream of entries: signed AddAdmins (short and long validity), keyed or not, and no-ops
  const total = IDEMPOTENCY_WINDOW + 600
  const boot = norm({ type: 'AddAdmin', peerId: admin.peerId, name: 'root' })
  const entries: Uint8Array[] = [encodeEnvelope({ cmd: boot, at: 1, auth: signCommandSync(admin, boot, 'boot', 50) })]
  for (let i = 2; i <= total; i++) {
    if (i % 97 === 0) { entries.push(new Uint8Array(0)); continue }
    // a signed command only every so often (signing is the slow part); keyed plain retries of it between
    const cmd = norm({ type: 'AddAdmin', peerId: admin.peerId, name: `a${i % 7}` })
    const signedHere = i % 50 === 0 || i > total - 300
    // a short validity among long ones: its nonce expires before every nonce already held
    const until = i + ((i > total - 300 ? i % 3 === 0 : i % 100 === 0) ? 5 : 400)
    entries.push(encodeEnvelope(signedHere
      ? { cmd, at: 1, key: `k${i}`, auth: signCommandSync(admin, cmd, `n${i}`, until) }
      : { cmd, at: 1, key: `k${i}` }))
  }
  // batch boundaries (varied sizes); the state is compared there, over the part dense in nonces
  const bounds: number[] = []
  for (let n = 0, batch = 1; n < entries.length; batch = (batch * 7 + 3) % 61 + 1) { n = Math.min(entries.length, n + batch); bounds.push(n) }
  const checked = new Set(bounds.filter((b) => b > total - 700))
  const reference = new StateMachine(new MemoryKv())
  const want = new Map<number, string>()
  entries.forEach((data, n) => { reference.apply(n + 1, data, 1); if (checked.has(n + 1)) want.set(n + 1, reference.fullStateHash()) })
  const kv = new MemoryKv()
  let sm = new StateMachine(kv)
  let n = 0
  for (const b of bounds) {
    sm.applyBatch(entries.slice(n, b).map((data, j) => ({ index: n + j + 1, term: 1, data })))
    n = b
    if (want.has(b)) assert.is(sm.fullStateHash(), want.get(b), `state after index ${b}`)
    if (b % 5 === 0) sm = new StateMachine(kv) // a restart: nothing of the skipped scans is known
  }
  assert.is(sm.applied(), total)
  assert.is(sm.fullStateHash(), reference.fullStateHash())
  // and what is left is exactly what may still matter
  const left = (t: 'noncesByUntil' | 'idempotencyByIndex'): number[] => kv.range<unknown>(t).map(([k]) => Number(k.slice(0, 16)))
  assert.ok(left('noncesByUntil').every((until) => until >= total), 'no expired nonce is kept')
  assert.ok(left('idempotencyByIndex').every((i) => i > total - IDEMPOTENCY_WINDOW), 'no key older than the window is kept')
  assert.ok(left('idempotencyByIndex').length > IDEMPOTENCY_WINDOW - 200, 'the keys within the window are kept')
})

test.run()
