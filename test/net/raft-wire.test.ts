import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import type { Message } from '../../protocols/raft/types.ts'
import { validateMessage, validateBatch, WIRE_MESSAGE_TYPES } from '../../protocols/raft-wire.ts'
import { decodePayload, encodePayload } from '../../protocols/framing.ts'
import { isWireError } from '../../protocols/errors.ts'
import { MAX_CONTEXT_BYTES, MAX_RAFT_BATCH_MSGS } from '../../protocols/limits.ts'

const app: Message = {
  type: 'MsgApp', from: 'a', to: 'b', term: 3, index: 10, logTerm: 2, commit: 9,
  entries: [
    { term: 2, index: 11, type: 'normal', data: Uint8Array.from([1, 2]) },
    { term: 3, index: 12, type: 'conf', data: new Uint8Array(0) }
  ]
}
const snap: Message = {
  type: 'MsgSnap', from: 'a', to: 'b', term: 4,
  snapshot: { meta: { index: 100, term: 3, conf: { voters: ['a', 'b', 'c'], learners: ['d'] } }, data: Uint8Array.from([9]) }
}

function rejects (x: unknown, needle: string): void {
  try {
    validateMessage(x)
    assert.unreachable(`accepted ${JSON.stringify(x, (_k, v) => v instanceof Uint8Array ? [...v] : v)}`)
  } catch (err) {
    if (!(isWireError(err))) throw err
    assert.is(err.kind, 'BadMessage')
    assert.ok(err.message.includes(needle), `'${err.message}' should mention '${needle}'`)
  }
}

test('valid messages round-trip through CBOR unchanged', () => {
  for (const m of [app, snap, { type: 'MsgVoteResp', from: 'b', to: 'a', term: 5, reject: true } as Message,
    { type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, commit: 0, context: Uint8Array.from([7]) } as Message]) {
    assert.equal(validateMessage(decodePayload(encodePayload(m))), m)
  }
})

test('relayed learners: relay messages round-trip; lead, entries and snapshots only where they belong', () => {
  const relayApp = { ...app, type: 'MsgRelayApp', lead: 'c' } as Message
  const relaySnap = { ...snap, type: 'MsgRelaySnap', lead: 'c' } as Message
  const sub = { type: 'MsgRelaySub', from: 'b', to: 'a', term: 5, lead: 'a', index: 12, commit: 10 } as Message
  const resp = { type: 'MsgRelayAppResp', from: 'b', to: 'a', term: 5, index: 11 } as Message
  for (const m of [relayApp, relaySnap, sub, resp]) assert.equal(validateMessage(decodePayload(encodePayload(m))), m)
  rejects({ ...app, lead: 'c' }, 'lead: not allowed on MsgApp')
  rejects({ ...resp, lead: 'c' }, 'lead: not allowed on MsgRelayAppResp')
  rejects({ ...relayApp, lead: '' }, 'msg.lead')
  rejects({ type: 'MsgRelaySnap', from: 'a', to: 'b', term: 1 }, 'snapshot: required on MsgRelaySnap')
  rejects({ ...sub, entries: [] }, 'not allowed on MsgRelaySub')
})

test('local-only types are refused', () => {
  for (const t of ['MsgHup', 'MsgBeat', 'MsgProp', 'MsgUnreachable', 'MsgSnapStatus', 'MsgNope']) {
    rejects({ type: t, from: 'a', to: 'b', term: 1 }, '.type')
  }
  assert.not.ok(WIRE_MESSAGE_TYPES.includes('MsgHup'))
})

test('shape errors name the field', () => {
  rejects(null, 'expected an object')
  rejects([1], 'expected an object')
  rejects({ ...app, extra: 1 }, "unknown field 'extra'")
  rejects({ type: 'MsgApp', from: 'a', to: 'b' }, "missing field 'term'")
  rejects({ ...app, term: -1 }, 'msg.term')
  rejects({ ...app, term: 1.5 }, 'msg.term')
  rejects({ ...app, term: '3' }, 'msg.term')
  rejects({ ...app, from: '' }, 'msg.from')
  rejects({ ...app, from: 'x'.repeat(500) }, 'msg.from')
  rejects({ ...app, to: 'a' }, 'from equals to')
  rejects({ ...app, reject: 1 }, 'msg.reject')
  rejects({ ...app, context: new Uint8Array(MAX_CONTEXT_BYTES + 1) }, 'msg.context')
  rejects({ ...app, context: 'ctx' }, 'msg.context')
})

test('entries are checked: bytes data, types, consecutive indexes, only on MsgApp', () => {
  const e0 = app.entries![0]
  rejects({ ...app, entries: [{ ...e0, data: 'str' }] }, 'entries[0].data')
  rejects({ ...app, entries: [{ ...e0, type: 'weird' }] }, 'entries[0].type')
  rejects({ ...app, entries: [{ ...e0, extra: true }] }, "unknown field 'extra'")
  rejects({ ...app, entries: [{ ...e0, index: 12 }] }, 'expected 11')
  rejects({ ...app, entries: [{ ...e0, term: 9 }] }, 'out of order')
  rejects({ ...app, entries: {} }, 'msg.entries')
  rejects({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, entries: [] }, 'not allowed on MsgHeartbeat')
  const { index: _i, ...noIndex } = app
  rejects(noIndex, 'required with entries')
})

test('snapshots are checked and required on MsgSnap', () => {
  rejects({ type: 'MsgSnap', from: 'a', to: 'b', term: 1 }, 'required on MsgSnap')
  rejects({ ...snap, snapshot: { ...snap.snapshot, data: [1] } }, 'snapshot.data')
  rejects({ ...snap, snapshot: { meta: { index: 1, term: 1, conf: { voters: ['a', 'a'], learners: [] } }, data: new Uint8Array(0) } }, 'duplicate member')
  rejects({ ...app, snapshot: snap.snapshot }, 'not allowed on MsgApp')
})

test('a batch is an array of bounded length', () => {
  assert.is(validateBatch([1, 2]).length, 2)
  assert.throws(() => validateBatch({}), (e: unknown) => isWireError(e))
  assert.throws(() => validateBatch(new Array(MAX_RAFT_BATCH_MSGS + 1).fill(0)), (e: unknown) => isWireError(e))
})

test('arbitrary decoded values only ever raise a wire error', () => {
  fc.assert(fc.property(fc.anything({ withTypedArray: true, withNullPrototype: true, withMap: true, withBigInt: true }), (x) => {
    try { validateMessage(x) } catch (err) { assert.ok(isWireError(err), String(err)) }
  }), { numRuns: 2000 })
  fc.assert(fc.property(fc.record({
    type: fc.constantFrom(...WIRE_MESSAGE_TYPES), from: fc.string(), to: fc.string(), term: fc.integer(),
    index: fc.option(fc.integer(), { nil: undefined }), entries: fc.option(fc.anything(), { nil: undefined })
  }, { requiredKeys: ['type'] }), (x) => {
    try { validateMessage(x) } catch (err) { assert.ok(isWireError(err), String(err)) }
  }), { numRuns: 2000 })
})

test.run()
