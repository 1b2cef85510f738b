// What the schema vocabulary (protocols/schema.ts) costs on the two hot validation paths, against
// the hand-written validators it replaced (kept in bench/baseline/ for this comparison only):
//   - Raft receive: a frame's bytes → decodePayload → validateBatch → validateMessage each (a
//     MsgApp with entries, and a batch of heartbeats), as node/net/raft-transport.ts does;
//   - RPC decode: a client frame's bytes → decodePayload → validateClientFrame → checkParams
//     (vm.create, the largest params a client sends), the frame envelope and params both;
//   - Raft apply: a committed entry's bytes → CBOR + validateEnvelope of a CreateVm, as the state
//     machine does for every entry it applies.
// The bench asserts both give equal results (and equal errors) before timing. Figures are ns per
// operation, median of the rounds; the two take turns round by round, first one then the other.
//
// npm run bench:schema [-- --ms PER_ROUND] [--rounds N] [--json]
//
// History (2 shared cores, heavily loaded, so ±15%):
//   - hand-built combinators (closures, a path string built per field): rpc decode 1.18×, raft
//     apply 1.25×, VmSpec alone 2.0× the hand-written time; not taken.
//   - the compiled schema with closures over a flat key table (static paths): VmSpec alone
//     1.13-1.16×: the loop's keyed field reads and writes are megamorphic.
//   - the compiled schema as shipped (each object's reads and output literal generated per shape,
//     leaves as closures; RPC params compiled too), 8 runs at load 25-30: rpc decode 0.62-1.11×
//     (median 0.86×), raft apply 0.73-1.03× (median 0.90×), VmSpec alone 0.49-0.62×. CBOR
//     decoding is ~6-9 µs of the apply path and unchanged.
//   - Raft wire messages moved onto the schema (protocols/raft-wire.ts; bytes as s.blob views, the
//     cross-field rules in one refine), 1 run of 7 rounds at load 25-29: MsgApp 8×256 B frame
//     1.00×, 8 heartbeats frame 1.08× (within the noise of this machine); rpc decode 0.85×, raft
//     apply 0.90×, VmSpec alone 0.52× in the same run.
import assert from 'node:assert/strict'
import { decodePayload, encodePayload } from '../protocols/framing.ts'
import { IDEMPOTENCY_PARAM, checkParams, takesIdempotencyKey, validateClientFrame } from '../protocols/rpc.ts'
import { validateVmSpec } from '../protocols/command-schema.ts'
import { tryDecodeEnvelope, encodeEnvelope } from '../storage/envelope.ts'
import { decodeCbor } from '../storage/codec.ts'
import { BlixardError, isWireError } from '../protocols/errors.ts'
import { bool, obj, opt, str } from './baseline/validate-handwritten.ts'
import type { CommandEnvelope } from '../protocols/commands.ts'
import type { VmSpec } from '../protocols/model.ts'
// the hand-written validators the schema replaced, kept as the baseline
import * as handwritten from './baseline/command-schema-handwritten.ts'
import * as handwrittenWire from './baseline/raft-wire-handwritten.ts'
import * as handwrittenFrames from './baseline/rpc-frames-handwritten.ts'
import { validateBatch, validateMessage } from '../protocols/raft-wire.ts'
import type { Message } from '../protocols/raft/types.ts'

const args = process.argv.slice(2)
const flag = (name: string, dflt: number): number => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt }
const ROUND_MS = flag('--ms', 150)
const ROUNDS = flag('--rounds', 5)
const json = args.includes('--json')

// ---- inputs ----

const spec: VmSpec = {
  name: 'web-1', vcpus: 2, memoryMiB: 512, diskGiB: 4, hypervisor: 'qemu', image: { kind: 'flake', ref: 'github:org/repo#web' },
  volumes: ['data'], networks: ['lan', 'dmz'], kernelParams: ['console=ttyS0'],
  constraints: [{ label: 'zone', op: 'in', values: ['a', 'b'] }, { label: 'gpu', op: 'not exists' }],
  antiAffinityGroup: 'web', affinity: [{ label: 'ssd', value: 'yes', weight: 10 }], spreadLabel: 'zone', priority: 0,
  restartPolicy: 'always', requires: ['kvm']
}
const env: CommandEnvelope = { cmd: { type: 'CreateVm', id: 'vm-0001', spec, desired: 'running' }, at: 1_700_000_000_000, key: 'k-0001' }
const entry = encodeEnvelope(env)
const frame = encodePayload({ id: 7, method: 'vm.create', params: { spec, start: true } })
/** a frame whose params are trivial: the envelope's check is most of the work */
const smallFrame = encodePayload({ id: 8, method: 'cluster.status', params: {} })
// Raft frames as a follower receives them: a MsgApp of 8 entries of 256 bytes (a busy leader),
// and a batch of heartbeats (an idle cluster of 8 talking to this node)
const appMsg: Message = {
  type: 'MsgApp', from: 'node-a', to: 'node-b', term: 7, index: 1000, logTerm: 7, commit: 998,
  entries: Array.from({ length: 8 }, (_, i) => ({ term: 7, index: 1001 + i, type: 'normal' as const, data: new Uint8Array(256).fill(i) }))
}
const appFrame = encodePayload([appMsg])
const beatFrame = encodePayload(Array.from({ length: 8 }, (_, i): Message => ({ type: 'MsgHeartbeat', from: `node-${i}`, to: 'node-x', term: 7, commit: 998, context: Uint8Array.from([i]) })))

// ---- the two paths, both ways ----

/** vm.create's params as rpc.ts checked them before the schema (its spec by the hand-written validator) */
function handwrittenVmCreate (x: unknown): unknown {
  const o = obj(x ?? {}, 'params', ['spec', 'start', 'key', 'queue'], ['spec'])
  let spec: VmSpec
  try { spec = handwritten.validateVmSpec(o.spec, 'params.spec') } catch (err) {
    if (err instanceof BlixardError) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidSpec', err.message)
    throw err
  }
  const out: { spec: VmSpec, start?: boolean, queue?: boolean, key?: string } = { spec }
  const start = opt(o, 'start', bool, 'params'); if (start !== undefined) out.start = start
  const queue = opt(o, 'queue', bool, 'params'); if (queue !== undefined) out.queue = queue
  const key = opt(o, 'key', (v, p) => str(v, p, 128, 1), 'params'); if (key !== undefined) out.key = key
  return out
}
const rpcHandwritten = (): unknown => {
  const req = handwrittenFrames.validateClientFrame(decodePayload(frame))
  if ('cancel' in req) throw new Error('cancel')
  // as checkParams runs a method's validator (rpc.ts): the idempotency key split off, wire errors renamed
  const x = req.params
  try {
    if (!takesIdempotencyKey('vm.create') || x == null || typeof x !== 'object' || !(IDEMPOTENCY_PARAM in x)) return handwrittenVmCreate(x)
    throw new Error('the bench frame carries no idempotency key')
  } catch (err) {
    if (isWireError(err)) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidParams', err.message)
    throw err
  }
}
const rpcSchema = (): unknown => {
  const req = validateClientFrame(decodePayload(frame))
  if ('cancel' in req) throw new Error('cancel')
  return checkParams('vm.create', req.params)
}
const applyHandwritten = (): unknown => {
  const r = handwritten.validateEnvelope(decodeCbor(entry))
  if (!r.ok) throw new Error(r.error.message)
  return r.cmd
}
const applySchema = (): unknown => {
  const r = tryDecodeEnvelope(entry)
  if (!r.ok) throw new Error(r.error.message)
  return r.env
}
const receive = (check: (x: unknown, path: string) => Message, batch: (x: unknown) => unknown[], bytes: Uint8Array) => (): unknown =>
  batch(decodePayload(bytes)).map((m, i) => check(m, `batch[${i}]`))
const appHandwritten = receive(handwrittenWire.validateMessage, handwrittenWire.validateBatch, appFrame)
const appSchema = receive(validateMessage, validateBatch, appFrame)
const beatHandwritten = receive(handwrittenWire.validateMessage, handwrittenWire.validateBatch, beatFrame)
const beatSchema = receive(validateMessage, validateBatch, beatFrame)
const specHandwritten = (): unknown => handwritten.validateVmSpec(spec)
const specSchema = (): unknown => validateVmSpec(spec)

assert.deepEqual(rpcSchema(), rpcHandwritten())
for (const bad of [null, [], { id: -1, method: 'm' }, { id: 1 }, { id: 1, method: '' }, { id: 1, method: 'm', extra: 1 }, { id: 1, cancel: true, method: 'm' }, new Map([['id', 1]])]) {
  const kind = (f: () => unknown): string => { try { f(); return 'ok' } catch (e) { return (e as BlixardError).kind } }
  assert.equal(kind(() => validateClientFrame(bad)), 'BadMessage', JSON.stringify(bad))
  assert.equal(kind(() => handwrittenFrames.validateClientFrame(bad)), 'BadMessage', JSON.stringify(bad))
}
assert.deepEqual(applySchema(), applyHandwritten())
assert.deepEqual(specSchema(), specHandwritten())
for (const bad of [{ ...spec, vcpus: 0 }, { ...spec, name: 'Web' }, { ...spec, networks: ['a', 'a'] }, { ...spec, image: { kind: 'iso' } }, { ...spec, constraints: [{ label: 'x', op: 'in', values: [1] }] }]) {
  const error = (f: () => unknown): string => { try { f(); return 'ok' } catch (e) { return `${(e as BlixardError).kind}: ${(e as BlixardError).message}` } }
  assert.equal(error(() => validateVmSpec(bad)), error(() => handwritten.validateVmSpec(bad)), JSON.stringify(bad))
}

assert.deepEqual(appSchema(), appHandwritten())
assert.deepEqual(beatSchema(), beatHandwritten())
const e0 = appMsg.entries![0]
for (const bad of [null, { ...appMsg, extra: 1 }, { ...appMsg, term: -1 }, { ...appMsg, to: 'node-a' }, { ...appMsg, entries: [{ ...e0, index: 5 }] },
  { ...appMsg, entries: [{ ...e0, data: 'x' }] }, { ...appMsg, entries: [{ ...e0, data: new Uint8Array(5 << 20) }] }, { type: 'MsgSnap', from: 'a', to: 'b', term: 1 },
  { type: 'MsgHup', from: 'a', to: 'b', term: 1 }, { type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, entries: [] }]) {
  const error = (f: () => unknown): string => { try { f(); return 'ok' } catch (e) { return `${(e as BlixardError).kind}: ${(e as BlixardError).message}` } }
  assert.equal(error(() => validateMessage(bad, 'batch[3]')), error(() => handwrittenWire.validateMessage(bad, 'batch[3]')), JSON.stringify(bad))
}

function round (f: () => unknown): number {
  let n = 0
  const t0 = process.hrtime.bigint()
  const until = t0 + BigInt(ROUND_MS) * 1_000_000n
  let t = t0
  while (t < until) { for (let i = 0; i < 256; i++) f(); n += 256; t = process.hrtime.bigint() }
  return Number(t - t0) / n
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** The hand-written baseline and the schema take turns round by round (round 0 warms up), so a
 * busy machine slows both alike. */
function compare (path: string, today: () => unknown, candidate: (() => unknown) | null): { path: string, today: number, candidate: number } {
  const a: number[] = []
  const b: number[] = []
  for (let r = 0; r < ROUNDS + 1; r++) {
    // which one goes first alternates, so neither always runs on a warmer (or a busier) core
    let x: number, y: number
    if (r % 2 === 0) { x = round(today); y = candidate == null ? NaN : round(candidate) } else { y = candidate == null ? NaN : round(candidate); x = round(today) }
    if (r > 0) { a.push(x); b.push(y) }
  }
  return { path, today: median(a), candidate: median(b) }
}

const rows = [
  compare('rpc decode: vm.create frame → params', rpcHandwritten, rpcSchema),
  compare('rpc frame alone: cluster.status', () => handwrittenFrames.validateClientFrame(decodePayload(smallFrame)), () => validateClientFrame(decodePayload(smallFrame))),
  compare('raft apply: CreateVm entry → envelope', applyHandwritten, applySchema),
  compare('VmSpec alone (no CBOR)', specHandwritten, specSchema),
  compare('raft receive: MsgApp 8×256 B frame', appHandwritten, appSchema),
  compare('raft receive: 8 heartbeats frame', beatHandwritten, beatSchema),
  compare('CBOR decode alone (the entry)', () => decodeCbor(entry), null)
]
if (json) console.log(JSON.stringify(rows))
else {
  console.log(`ns/op, median of ${ROUNDS} rounds of ${ROUND_MS} ms (hand-written validators vs the compiled schema)`)
  for (const r of rows) console.log(`  ${r.path.padEnd(40)} hand-written ${r.today.toFixed(0).padStart(6)}   schema ${Number.isNaN(r.candidate) ? '     -' : r.candidate.toFixed(0).padStart(6)}${Number.isNaN(r.candidate) ? '' : `   (${(r.candidate / r.today).toFixed(2)}×)`}`)
}
