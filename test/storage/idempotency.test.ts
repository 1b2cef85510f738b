// Client semantics on the state-machine side: a key applied twice is applied once
// and answers the first result; GenerationMismatch is a definite rejection that changes nothing.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { VmRecord } from '../../protocols/model.ts'
import { harness, spec, errorKind } from './sm-fixtures.ts'

test('the same key twice: one application, the same result (update, desired state, delete)', () => {
  const h = harness()
  assert.ok(h.run({ type: 'CreateVm', id: 'v1', spec: spec('a') }, 'k-create').ok)
  const u1 = h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { memoryMiB: 512 }) }, 'k-up')
  const afterFirst = h.sm.stateHash()
  const u2 = h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { memoryMiB: 512 }) }, 'k-up')
  assert.equal(u2, u1, 'the retry answers with the first result')
  assert.is((u1 as { value: VmRecord }).value.generation, 2, 'the answer is the record this command produced')
  assert.is(h.sm.getVm('v1')?.generation, 2, 'applied once: one generation bump')
  assert.is(h.sm.stateHash(), afterFirst, 'the retry changed nothing')
  // the same key with a different command is still the first command's answer (a key names one intent)
  const s1 = h.run({ type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' }, 'k-stop')
  const s2 = h.run({ type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' }, 'k-stop')
  assert.equal(s2, s1)
  const d1 = h.run({ type: 'DeleteVm', id: 'v1' }, 'k-del')
  assert.equal(d1, { ok: true, value: { id: 'v1' } })
  assert.equal(h.run({ type: 'DeleteVm', id: 'v1' }, 'k-del'), d1, 'a retried delete is not NotFound')
  assert.is(errorKind(h.run({ type: 'DeleteVm', id: 'v1' }, 'k-other')), 'NotFound', 'a new key is a new command')
  assert.is(h.sm.resultFor('k-del')?.ok, true, 'the result is remembered under its key')
})

test('a rejected command is remembered too: its retry is rejected the same way even if it could now apply', () => {
  const h = harness()
  const r1 = h.run({ type: 'SetVmDesiredState', id: 'v9', desired: 'stopped' }, 'k1')
  assert.is(errorKind(r1), 'NotFound')
  assert.ok(h.run({ type: 'CreateVm', id: 'v9', spec: spec('late') }).ok)
  assert.equal(h.run({ type: 'SetVmDesiredState', id: 'v9', desired: 'stopped' }, 'k1'), r1)
  assert.is(h.sm.getVm('v9')?.desired, 'running', 'the retry did not apply')
})

test('ifGeneration: GenerationMismatch (definite, nothing changed) vs a match that applies', () => {
  const h = harness()
  h.run({ type: 'CreateVm', id: 'v1', spec: spec('a') })
  const before = h.sm.stateHash()
  const r = h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { memoryMiB: 512 }), ifGeneration: 7 }, 'cas-1')
  assert.is(errorKind(r), 'GenerationMismatch')
  assert.is(h.sm.stateHash(), before)
  const ok = h.run({ type: 'UpdateVmSpec', id: 'v1', spec: spec('a', { memoryMiB: 512 }), ifGeneration: 1 }, 'cas-2')
  assert.is((ok as { value: VmRecord }).value.generation, 2)
})

test.run()
