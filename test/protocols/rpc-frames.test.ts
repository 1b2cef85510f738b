// RPC frames as the peer sends them, checked by their schema declarations (protocols/rpc.ts): a
// request or a cancel from a client, a response from a server. An attacker's frame of the wrong
// types, with fields we do not know, or larger than the bounds is refused with a BadMessage naming
// the field; good frames come back as exactly what was sent.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MAX_METHOD_LENGTH, validateClientFrame, validateServerFrame } from '../../protocols/rpc.ts'
import { BlixardError } from '../../protocols/errors.ts'

function refusal (f: () => unknown): string {
  try { f() } catch (e) {
    assert.instance(e, BlixardError)
    assert.is((e as BlixardError).kind, 'BadMessage', (e as Error).message)
    return (e as Error).message
  }
  throw new Error('accepted')
}

test('good client frames come back as sent', () => {
  assert.equal(validateClientFrame({ id: 3, method: 'vm.list', params: { stale: true } }), { id: 3, method: 'vm.list', params: { stale: true } })
  assert.equal(validateClientFrame({ id: 0, method: 'cluster.status' }), { id: 0, method: 'cluster.status' })
  assert.equal(validateClientFrame({ id: 9, cancel: true }), { id: 9, cancel: true })
})

test('attacker: client frames of the wrong types, unknown fields or too large are refused by name', () => {
  const cases: Array<[unknown, string]> = [
    [null, 'request: expected an object, got null'],
    [[1, 'm'], 'request: expected an object, got array'],
    [new Map<string, unknown>([['id', 1], ['method', 'm']]), 'request: expected an object'],
    [{ id: '1', method: 'm' }, 'request.id: expected an integer, got string'],
    [{ id: 2 ** 60, method: 'm' }, 'request.id: '],
    [{ id: 1.5, method: 'm' }, 'request.id: expected an integer'],
    [{ id: 1, method: 7 }, 'request.method: expected a string, got number'],
    [{ id: 1, method: 'm'.repeat(MAX_METHOD_LENGTH + 1) }, `request.method: string longer than ${MAX_METHOD_LENGTH}`],
    [{ id: 1, method: '' }, 'request.method: must not be empty'],
    [{ id: 1 }, "request: missing field 'method'"],
    [{ method: 'm' }, "request: missing field 'id'"],
    [{ id: 1, method: 'm', extra: 1 }, "request: unknown field 'extra'"],
    [{ id: 1, cancel: true, method: 'm' }, 'request: a cancel carries only id and cancel: true'],
    [{ id: 1, cancel: false }, 'request.cancel must be true']
  ]
  for (const [frame, want] of cases) {
    const got = refusal(() => validateClientFrame(frame))
    assert.ok(got.startsWith(want), `${String(JSON.stringify(frame))?.slice(0, 80)}: ${got}`)
  }
})

test('server frames: results, streams and errors; an unknown error kind stays an error', () => {
  assert.equal(validateServerFrame({ id: 1, ok: true, result: [1, 2] }), { id: 1, ok: true, result: [1, 2] })
  assert.equal(validateServerFrame({ id: 1, ok: true, result: 'x', more: true }), { id: 1, ok: true, result: 'x', more: true })
  assert.equal(validateServerFrame({ id: 2, ok: false, error: { kind: 'NotLeader', message: 'no', leader: 'n2' } }), { id: 2, ok: false, error: { kind: 'NotLeader', message: 'no', leader: 'n2' } })
  assert.equal(validateServerFrame({ id: 2, ok: false, error: { kind: 'FromTheFuture', message: 'm' } }), { id: 2, ok: false, error: { kind: 'Internal', message: 'm' } })
})

test('attacker: server frames of the wrong shape are refused by name', () => {
  const cases: Array<[unknown, string]> = [
    [{ id: 1, ok: 'yes' }, 'response.ok: expected a boolean, got string'],
    [{ id: 1, ok: true, error: { kind: 'Internal', message: 'm' } }, 'response: ok response with an error'],
    [{ id: 1, ok: true, more: false }, 'response.more must be true'],
    [{ id: 1, ok: false }, "response: missing field 'error'"],
    [{ id: 1, ok: false, error: { kind: 'Internal' } }, "response.error: missing field 'message'"],
    [{ id: 1, ok: false, error: { kind: 'Internal', message: 'm'.repeat(5000) } }, 'response.error.message: string longer than 4096'],
    [{ id: 1, ok: false, error: { kind: 'x'.repeat(33), message: 'm' } }, 'response.error.kind: string longer than 32'],
    [{ id: 1, ok: true, result: 1, sneaky: 1 }, "response: unknown field 'sneaky'"]
  ]
  for (const [frame, want] of cases) {
    const got = refusal(() => validateServerFrame(frame))
    assert.ok(got.startsWith(want), `${JSON.stringify(frame).slice(0, 80)}: ${got}`)
  }
})

test.run()
