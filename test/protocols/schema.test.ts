// The schema vocabulary (protocols/schema.ts): checkers compiled from declarations name the failing
// field's path (list indices included) and bound, drop unknown fields, keep declaration order, and
// the commands' checkers built on it give the errors the state machine and the CLI rely on.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { compile, s } from '../../protocols/schema.ts'
import type { Infer } from '../../protocols/schema.ts'
import { validateCommand, validateEnvelope, validateVmSpec } from '../../protocols/command-schema.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { spec } from '../storage/sm-fixtures.ts'

function refused (f: () => unknown): { kind: string, message: string } {
  try { f() } catch (e) { if (e instanceof BlixardError) return { kind: e.kind, message: e.message }; throw e }
  return assert.unreachable('accepted') as never
}

const point = s.obj({ x: s.int(0, 10), y: s.int(0, 10, 'InvalidSpec') }, { label: s.str(4), hidden: s.nullAbsent(s.true()) })
const shape = s.obj({ name: s.str(8), points: s.list(3, point), grid: s.list(2, s.list(2, point)) })

test('the type is derived from the declaration', () => {
  const p: Infer<typeof point> = { x: 1, y: 2 }
  const q: Infer<typeof point> = { x: 1, y: 2, label: 'a', hidden: true }
  // @ts-expect-error: a field the declaration does not have
  const r: Infer<typeof point> = { x: 1, y: 2, z: 3 }
  assert.ok(p !== undefined && q !== undefined && r !== undefined)
})

test('a clean copy: unknown fields dropped, declaration order, absent optional fields left out', () => {
  const check = compile(shape, 'shape')
  const out = check({ extra: 1, grid: [], points: [{ y: 1, x: 2, z: 9, label: 'ab', hidden: null }], name: 'n' })
  assert.equal(out, { name: 'n', points: [{ x: 2, y: 1, label: 'ab' }], grid: [] })
  assert.equal(Object.keys(out), ['name', 'points', 'grid'])
  assert.equal(Object.keys(out.points[0]), ['x', 'y', 'label'])
})

test('failures name the path with its list indices, and the bound', () => {
  const check = compile(shape, 'shape')
  const base = { name: 'n', points: [], grid: [] }
  assert.equal(refused(() => check({ ...base, points: [{ x: 1, y: 1 }, { x: 1, y: 11 }] })), { kind: 'InvalidSpec', message: 'shape.points[1].y must be in 0..10' })
  assert.equal(refused(() => check({ ...base, grid: [[], [{ x: 1, y: 1 }, { x: 'a', y: 1 }]] })), { kind: 'InvalidCommand', message: 'shape.grid[1][1].x must be an integer' })
  assert.equal(refused(() => check({ ...base, points: [1, 2, 3, 4] })), { kind: 'TooLarge', message: 'shape.points has more than 3 items' })
  assert.equal(refused(() => check({ ...base, name: 'x'.repeat(9) })), { kind: 'TooLarge', message: 'shape.name is longer than 8' })
  assert.equal(refused(() => check({ ...base, points: [{ x: 1, y: 1, hidden: false }] })), { kind: 'InvalidCommand', message: 'shape.points[0].hidden must be true or absent, got false' })
  assert.equal(refused(() => check([])), { kind: 'InvalidCommand', message: 'shape must be a map' })
})

test('field names are data, never code: odd keys work as any other', () => {
  const odd = compile(s.obj({ 'a"b\\': s.int(0, 1), 'x}; throw 1; {': s.int(0, 1) }), 'odd')
  assert.equal(odd({ 'a"b\\': 1, 'x}; throw 1; {': 0 }), { 'a"b\\': 1, 'x}; throw 1; {': 0 })
  assert.equal(refused(() => odd({ 'a"b\\': 2, 'x}; throw 1; {': 0 })).message, 'odd.a"b\\ must be in 0..1')
})

test('commands: the messages the state machine gives', () => {
  const err = (x: unknown): string => { const r = validateCommand(x); return r.ok ? 'ok' : `${r.error.kind}: ${r.error.message}` }
  assert.is(err({ type: 'Nope' }), 'InvalidCommand: unknown command type Nope')
  assert.is(err('x'), 'InvalidCommand: command must be a map')
  assert.is(err({ type: 'ReportVmStatus', reports: [{ id: 'v', node: 'n', generation: 1, status: { phase: 'running', reason: '', at: 1 } }, { id: 'v', node: 'n', generation: 1, status: { phase: 'gone', reason: '', at: 1 } }] }),
    'InvalidCommand: reports[1].status.phase must be one of pending, scheduled, starting, running, stopping, stopped, failed')
  assert.is(err({ type: 'ReportVmStatus', reports: [{ id: 'v', node: 'n', generation: 1, status: { phase: 'running', reason: '', at: 1, ip: '10.0.0.300' } }] }), 'InvalidCommand: reports[0].status.ip is not an IPv4 address')
  assert.is(err({ type: 'CreateVm', id: 'v', spec: { ...spec('a'), constraints: [{ label: 'z', op: 'in', values: ['a', 3] }] } }), 'InvalidCommand: spec.constraints[0].values[1] must be a string')
  assert.is(err({ type: 'CreateVm', id: 'v', spec: { ...spec('a'), constraints: [{ label: 'z', op: '~' }] } }), 'InvalidCommand: spec.constraints[0].op must be one of ==, !=, in, not in, exists, not exists')
  assert.is(err({ type: 'CreateVm', id: 'v', spec: { ...spec('a'), volumes: ['d', 'e', 'd'] } }), 'InvalidSpec: spec.volumes lists a volume twice')
  assert.is(err({ type: 'CreateNetwork', name: 'lan', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', gateway: '10.0.0.255' }), 'InvalidSpec: gateway 10.0.0.255 is not a host address of 10.0.0.0/24')
  assert.is(err({ type: 'RegisterNode', node: { id: 'n', name: '', addrs: [], labels: {}, capacity: { cpu: 1, memoryMiB: 1, diskGiB: 1 }, overcommit: { cpu: 1, memory: 1, disk: 1 }, capabilities: [], maxVms: null } }), 'InvalidSpec: node.name must not be empty')
  assert.is(err({ type: 'StartMigration', vm: 'v', target: 't', cold: 1 }), 'InvalidCommand: cold must be true or absent, got 1')
  assert.is(err({ type: 'ReportMigration', vm: 'v', node: 'n', started: 1, event: 'progress', figures: { transferredBytes: -1 } }), 'InvalidSpec: figures.transferredBytes must be in 0..9007199254740991')
  assert.equal(refused(() => validateVmSpec({ ...spec('a'), vcpus: 0 }, 'params.spec')), { kind: 'InvalidSpec', message: 'params.spec.vcpus must be in 1..255' })
})

test('envelope: a null key or auth is absent; the command keeps its own paths', () => {
  assert.equal(validateEnvelope({ cmd: { type: 'RemoveNode', id: 'n' }, at: 1, key: null, auth: null }), { ok: true, cmd: { cmd: { type: 'RemoveNode', id: 'n' }, at: 1 } })
  const r = validateEnvelope({ cmd: { type: 'RemoveNode', id: '' }, at: 1 })
  assert.equal(r, { ok: false, error: { kind: 'InvalidCommand', message: 'id must be non-empty printable ASCII without spaces' } })
  const a = validateEnvelope({ cmd: { type: 'RemoveNode', id: 'n' }, at: 1, auth: { signer: 's', nonce: 'n', until: 1, sig: new Uint8Array(3) } })
  assert.equal(a, { ok: false, error: { kind: 'InvalidCommand', message: 'auth.sig must be 64 bytes' } })
})

test.run()
