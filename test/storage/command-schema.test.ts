// validateCommand on anything: a named error or a clean copy, never an exception.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { validateCommand, validateEnvelope, parseCidr, COMMAND_LIMITS } from '../../protocols/command-schema.ts'
import { decodeEnvelope, encodeEnvelope, tryDecodeEnvelope } from '../../storage/envelope.ts'
import { encodeCbor } from '../../storage/codec.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { commandArb } from './command-arbitraries.ts'
import { spec } from './sm-fixtures.ts'
import { VM_LIMITS } from '../../protocols/vm-limits.ts'
import { MIN_MEMORY_MIB, MAX_VCPUS } from '../../node/qemu/cmdline.ts'

const KINDS = new Set(['InvalidCommand', 'InvalidSpec', 'TooLarge'])

test('arbitrary values never throw and fail with a named kind', () => {
  fc.assert(fc.property(fc.anything({ withNullPrototype: true, withTypedArray: true, withMap: true, withSet: true, withBigInt: true }), (x) => {
    const r = validateCommand(x)
    if (!r.ok) assert.ok(KINDS.has(r.error.kind), r.error.kind)
  }), { numRuns: 2000 })
})

test('mutated valid commands never throw', () => {
  fc.assert(fc.property(commandArb(), fc.string(), fc.anything(), (cmd, field, junk) => {
    const o: Record<string, unknown> = { ...cmd }
    o[field] = junk
    const r = validateCommand(o)
    if (!r.ok) assert.ok(KINDS.has(r.error.kind))
  }), { numRuns: 1000 })
})

test('random bytes as an entry: a named error, never an exception', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
    const r = tryDecodeEnvelope(b)
    if (!r.ok) assert.ok(['BadMessage', 'InvalidCommand', 'InvalidSpec', 'TooLarge'].includes(r.error.kind))
  }), { numRuns: 2000 })
})

test('valid commands come back as clean copies without unknown fields', () => {
  const r = validateCommand({ type: 'CreateVm', id: 'v1', spec: { ...spec('a'), evil: 1 }, extra: { deep: true } })
  assert.ok(r.ok)
  if (r.ok) {
    assert.not.ok('extra' in r.cmd)
    assert.not.ok('evil' in (r.cmd as { spec: object }).spec)
  }
  const env = validateEnvelope({ cmd: { type: 'RemoveNode', id: 'n1', x: 1 }, at: 5, key: 'k', y: 2 })
  assert.equal(env, { ok: true, cmd: { cmd: { type: 'RemoveNode', id: 'n1' }, at: 5, key: 'k' } })
})

test('size limits are TooLarge', () => {
  const long = 'x'.repeat(COMMAND_LIMITS.maxIdLength + 1)
  assert.equal(validateCommand({ type: 'RemoveNode', id: long }).ok, false)
  const r = validateCommand({ type: 'ReportVmStatus', reports: new Array(COMMAND_LIMITS.maxReports + 1).fill({}) })
  assert.is(r.ok ? 'ok' : r.error.kind, 'TooLarge')
  const labels: Record<string, string> = {}
  for (let i = 0; i <= COMMAND_LIMITS.maxLabels; i++) labels[`k${i}`] = 'v'
  const r2 = validateCommand({ type: 'UpdateNode', id: 'n', labels })
  assert.is(r2.ok ? 'ok' : r2.error.kind, 'TooLarge')
})

test('envelope codec round-trips and decodeEnvelope throws BlixardError', () => {
  const env = { cmd: { type: 'AddAdmin' as const, peerId: 'p', name: 'n' }, at: 12, key: 'k' }
  assert.equal(decodeEnvelope(encodeEnvelope(env)), env)
  assert.throws(() => decodeEnvelope(new Uint8Array([0xff])), (e: unknown) => e instanceof BlixardError && e.kind === 'BadMessage')
  assert.throws(() => decodeEnvelope(encodeCbor({ cmd: { type: 'Nope' }, at: 1 })), (e: unknown) => e instanceof BlixardError && e.kind === 'InvalidCommand')
})

test('parseCidr', () => {
  assert.equal(parseCidr('10.0.0.0/8'), { network: 0x0a000000, prefix: 8, broadcast: 0x0affffff })
  assert.is(parseCidr('10.0.0.1/8'), null)
  assert.is(parseCidr('010.0.0.0/8'), null)
  assert.is(parseCidr('10.0.0.0'), null)
})


test('VM spec bounds are the ones the QEMU driver boots with (protocols/vm-limits.ts)', () => {
  assert.is(MIN_MEMORY_MIB, VM_LIMITS.minMemoryMiB)
  assert.is(MAX_VCPUS, VM_LIMITS.maxVcpus)
  const low = validateCommand({ type: 'CreateVm', id: 'v1', spec: { ...spec('a'), memoryMiB: VM_LIMITS.minMemoryMiB - 1 } })
  assert.ok(!low.ok && low.error.kind === 'InvalidSpec' && /memoryMiB/.test(low.error.message), JSON.stringify(low))
  assert.ok(validateCommand({ type: 'CreateVm', id: 'v1', spec: { ...spec('a'), memoryMiB: VM_LIMITS.minMemoryMiB } }).ok)
  const cpus = validateCommand({ type: 'CreateVm', id: 'v1', spec: { ...spec('a'), vcpus: VM_LIMITS.maxVcpus + 1 } })
  assert.ok(!cpus.ok && cpus.error.kind === 'InvalidSpec', JSON.stringify(cpus))
})

test.run()
