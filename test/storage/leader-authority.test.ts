// Leader-bound commands on apply (protocols/auth.ts leaderError): a scheduling decision (AssignVm)
// applies only in an entry of the term it was signed for, and only one signer places per term —
// the term's leader, pinned by its first decision. Each row applies one AssignVm after a fixed
// history and names the outcome; a refused one changes nothing in the model.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import { seededSigner, signCommandSync } from '../../protocols/auth.ts'
import type { SyncSigner } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { registerNode, spec } from './sm-fixtures.ts'

const key = (n: number): SyncSigner => seededSigner(new Uint8Array(32).fill(n))
const admin = key(11)
const leader2 = key(12) // the leader of term 2
const leader3 = key(13) // the leader of term 3
const host = key(14) // a registered node that never led
const stranger = key(15) // holds a key, never registered

interface Harness {
  sm: StateMachine
  /** applies `env` at the next index in an entry of `term` (undefined: no term known) */
  run: (env: CommandEnvelope, term: number | undefined) => ApplyResult
  signed: (s: SyncSigner, cmd: Command) => CommandEnvelope
}

function setup (): Harness {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  let nonces = 0
  const signed = (s: SyncSigner, cmd: Command): CommandEnvelope => {
    const v = validateCommand(cmd)
    if (!v.ok) throw new Error(v.error.message)
    return { cmd: v.cmd, at: 1, auth: signCommandSync(s, v.cmd, `n${++nonces}`, i + 100) }
  }
  const run = (env: CommandEnvelope, term: number | undefined): ApplyResult => sm.apply(++i, encodeEnvelope(env), term)
  // term 1: the bootstrap (admin, three nodes, two VMs)
  const ok = (r: ApplyResult): void => { assert.ok(r.ok, JSON.stringify(r)) }
  ok(run(signed(leader2, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }), 1))
  for (const [n, s] of [['a', leader2], ['b', leader3], ['c', host]] as const) ok(run(signed(s, registerNode(s.peerId, { name: n })), 1))
  ok(run(signed(admin, { type: 'CreateVm', id: 'v1', spec: spec('one') }), 1))
  ok(run(signed(admin, { type: 'CreateVm', id: 'v2', spec: spec('two') }), 1))
  return { sm, run, signed }
}

const assign = (term: number | undefined, node = leader2.peerId, id = 'v1'): Command =>
  term === undefined ? { type: 'AssignVm', id, node } : { type: 'AssignVm', id, node, term }

interface Row {
  name: string
  /** applied (and expected to succeed) before the row's own command */
  before?: Array<{ by: SyncSigner, cmd: Command, term: number }>
  by: SyncSigner
  cmd: Command
  /** the term of the entry it lands in */
  entryTerm: number | undefined
  /** null: applies; else a fragment of the Unauthorized message */
  refused: string | null
}

const rows: Row[] = [
  { name: 'signed by the term\'s leader for its term: applies', by: leader2, cmd: assign(2), entryTerm: 2, refused: null },
  { name: 'signed by a registered node that does not lead the term (after the leader\'s first decision)', before: [{ by: leader2, cmd: assign(2, leader2.peerId, 'v2'), term: 2 }], by: host, cmd: assign(2, host.peerId), entryTerm: 2, refused: `must be signed by that term's leader ${leader2.peerId}, not ${host.peerId}` },
  { name: 'signed by a registered non-leader for a term that was never its own', by: host, cmd: assign(2, host.peerId), entryTerm: 3, refused: 'lands in an entry of term 3' },
  { name: 'signed by a key that is not a registered node', by: stranger, cmd: assign(2), entryTerm: 2, refused: 'is not a registered node' },
  { name: 'no term claim at all', by: leader2, cmd: assign(undefined), entryTerm: 2, refused: 'carries no leader term' },
  { name: 'an entry whose term is not known to apply', by: leader2, cmd: assign(2), entryTerm: undefined, refused: "without its entry's term" },
  { name: 'a decision of the older term 2, replayed (fresh nonce) into a term-3 entry', before: [{ by: leader3, cmd: assign(3, leader3.peerId, 'v2'), term: 3 }], by: leader2, cmd: assign(2), entryTerm: 3, refused: `signed by ${leader2.peerId} for term 2 lands in an entry of term 3` },
  { name: 'an old leader claiming the new term after the new leader placed in it', before: [{ by: leader3, cmd: assign(3, leader3.peerId, 'v2'), term: 3 }], by: leader2, cmd: assign(3), entryTerm: 3, refused: `term's leader ${leader3.peerId}` },
  { name: 'the next term\'s leader, after the previous term\'s decisions: applies', before: [{ by: leader2, cmd: assign(2, leader2.peerId, 'v2'), term: 2 }], by: leader3, cmd: assign(3, leader3.peerId), entryTerm: 3, refused: null }
]

for (const row of rows) {
  test(`AssignVm ${row.name}`, () => {
    const h = setup()
    for (const b of row.before ?? []) assert.ok(h.run(h.signed(b.by, b.cmd), b.term).ok, `setup: ${JSON.stringify(b.cmd)}`)
    const before = h.sm.stateHash()
    const r = h.run(h.signed(row.by, row.cmd), row.entryTerm)
    if (row.refused === null) {
      assert.ok(r.ok, JSON.stringify(r))
      assert.is(h.sm.getVm('v1')?.assignedNode, (row.cmd as { node: string }).node)
      return
    }
    assert.is(r.ok, false, 'must be refused')
    if (r.ok) return
    assert.is(r.error.kind, 'Unauthorized')
    assert.ok(r.error.message.includes(row.refused), `"${r.error.message}" names "${row.refused}"`)
    assert.is(h.sm.stateHash(), before, 'a refused decision changes nothing')
  })
}

test('lease commands are the leader\'s too: MarkNodeDown and RenewLeases by a host, or without a term, are refused; by the term\'s leader they apply', () => {
  const h = setup()
  const down = (term?: number): Command => ({ type: 'MarkNodeDown', node: host.peerId, epoch: 0, seq: 0, expiredAt: 5, reason: 'lease expired', ...(term === undefined ? {} : { term }) })
  const renew = (term?: number): Command => ({ type: 'RenewLeases', leases: [{ node: leader2.peerId, epoch: 0 }], leaseMs: 9000, ...(term === undefined ? {} : { term }) })
  const before = h.sm.stateHash()
  for (const [by, cmd, why] of [[host, down(2), 'must be signed by that term'], [leader2, down(), 'carries no leader term'], [host, renew(3), 'lands in an entry of term 2']] as const) {
    if (by === host && why.startsWith('must')) assert.ok(h.run(h.signed(leader2, assign(2, leader2.peerId, 'v2')), 2).ok, 'the leader decided first in term 2')
    const r = h.run(h.signed(by, cmd), 2)
    assert.is(r.ok, false, `${cmd.type} by ${by === host ? 'host' : 'leader'}`)
    if (!r.ok) assert.ok(r.error.message.includes(why), r.error.message)
  }
  assert.not.equal(h.sm.stateHash(), before) // only the setup AssignVm changed it
  assert.ok(h.run(h.signed(leader2, renew(2)), 2).ok)
  assert.ok(h.run(h.signed(leader2, down(2)), 2).ok)
})

test('PreemptVm and RebalanceVm are the leader\'s (a host, an admin or no term is refused); SetQuota is an admin\'s (a node, even the leader, is refused)', () => {
  const h = setup()
  assert.ok(h.run(h.signed(leader2, assign(2)), 2).ok, 'the leader decided first in term 2')
  const preempt = (term?: number): Command => ({ type: 'PreemptVm', vm: 'v2', node: leader2.peerId, victims: ['v1'], ...(term === undefined ? {} : { term }) })
  const rebalance = (term?: number): Command => ({ type: 'RebalanceVm', vm: 'v1', target: host.peerId, reason: 'skew', ...(term === undefined ? {} : { term }) })
  const quota: Command = { type: 'SetQuota', project: 'team', limits: { vms: 100 } }
  const before = h.sm.stateHash()
  for (const [by, cmd, why] of [
    [host, preempt(2), 'must be signed by that term\'s leader'], [admin, preempt(2), 'is not a registered node'], [leader2, preempt(), 'carries no leader term'],
    [host, rebalance(2), 'must be signed by that term\'s leader'], [admin, rebalance(2), 'is not a registered node'], [leader2, rebalance(3), 'lands in an entry of term 2'],
    [leader2, quota, 'is not an admin'], [stranger, quota, 'is not an admin']
  ] as const) {
    const r = h.run(h.signed(by, cmd), 2)
    assert.is(r.ok, false, `${cmd.type} by ${by.peerId}`)
    if (!r.ok) { assert.is(r.error.kind, 'Unauthorized'); assert.ok(r.error.message.includes(why), `${cmd.type}: "${r.error.message}" names "${why}"`) }
  }
  assert.is(h.sm.stateHash(), before, 'refused decisions change nothing')
  // by the right signer, they pass the authority check (and are judged on their merits: v1 and v2
  // have the same priority, so the preemption is refused as such, not as unauthorized)
  const q = h.run(h.signed(admin, quota), 2)
  assert.ok(q.ok, JSON.stringify(q))
  const p = h.run(h.signed(leader2, preempt(2)), 2)
  assert.ok(!p.ok && p.error.kind === 'Conflict' && p.error.message.includes('only strictly lower priorities are preempted'), JSON.stringify(p))
})

test('the same signed decision never applies twice, not even in its own term', () => {
  const h = setup()
  const env = h.signed(leader2, assign(2))
  assert.ok(h.run(env, 2).ok)
  const r = h.run(env, 2)
  assert.is(r.ok, false)
  if (!r.ok) assert.ok(r.error.message.includes('replays nonce'), r.error.message)
})

test('the term\'s pinned leader travels in snapshots: a restored replica refuses the same intruder', () => {
  const h = setup()
  assert.ok(h.run(h.signed(leader2, assign(2)), 2).ok)
  const copy = new StateMachine(new MemoryKv())
  copy.restore(h.sm.snapshot(), h.sm.applied())
  assert.is(copy.fullStateHash(), h.sm.fullStateHash())
  const intruder = encodeEnvelope(h.signed(host, assign(2, host.peerId, 'v2')))
  const a = h.sm.apply(h.sm.applied() + 1, intruder, 2)
  const b = copy.apply(copy.applied() + 1, intruder, 2)
  assert.equal(a, b)
  assert.is(a.ok, false)
  if (!a.ok) assert.ok(a.error.message.includes(`term's leader ${leader2.peerId}`), a.error.message)
  assert.is(copy.fullStateHash(), h.sm.fullStateHash())
})

test('the leader\'s pre-proposal check uses its current term: a decision signed for another term is refused before it is proposed', () => {
  const h = setup()
  assert.is(h.sm.authorityError(h.signed(leader2, assign(2)), 2), null)
  assert.ok(h.sm.authorityError(h.signed(leader2, assign(2)), 3)?.includes('lands in an entry of term 3'))
})

test.run()
