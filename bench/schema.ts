// What a schema vocabulary with derived types would cost on the two hot validation paths, before
// choosing one (issue 13 asks to measure first):
//   - RPC decode: a client frame's bytes → decodePayload → validateClientFrame → checkParams
//     (vm.create, the largest params a client sends);
//   - Raft apply: a committed entry's bytes → tryDecodeEnvelope (CBOR + validateEnvelope) of a
//     CreateVm, as the state machine does for every entry it applies.
// Each path runs with today's validators (protocols/validate.ts, protocols/command-schema.ts) and
// with a candidate: small combinators whose TypeScript type is derived from the definition
// (`type VmSpec = Infer<typeof vmSpec>`), the shape valibot and zod have. Neither library is
// installed, so the candidate is hand-built here, with the same checks and the same output (the
// bench asserts both give equal results before timing). Figures are ns per operation, median of
// the rounds.
//
// npm run bench:schema [-- --ms PER_ROUND] [--rounds N] [--json]
//
// First figures (2 shared cores at load ~38, so ±20%): rpc decode 13.2 µs today vs 15.7 µs
// (1.18×), raft apply 16.9 vs 21.1 µs (1.25×), VmSpec alone 3.1 vs 6.1 µs (2.0×); CBOR decoding is
// 8.5 µs of the apply path. The combinators are slower on both hot paths, so the tree keeps its
// hand-written validators and derives its unions from their value lists instead (protocols/model.ts).
import assert from 'node:assert/strict'
import { decodePayload, encodePayload } from '../protocols/framing.ts'
import { checkParams, validateClientFrame } from '../protocols/rpc.ts'
import { COMMAND_LIMITS, validateVmSpec } from '../protocols/command-schema.ts'
import { tryDecodeEnvelope, encodeEnvelope } from '../storage/envelope.ts'
import { decodeCbor } from '../storage/codec.ts'
import { BlixardError, type ErrorKind } from '../protocols/errors.ts'
import type { CommandEnvelope } from '../protocols/commands.ts'
import type { VmSpec } from '../protocols/model.ts'

const args = process.argv.slice(2)
const flag = (name: string, dflt: number): number => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt }
const ROUND_MS = flag('--ms', 150)
const ROUNDS = flag('--rounds', 5)
const json = args.includes('--json')

// ---- the candidate: combinators with derived types ----

type Check<T> = (x: unknown, path: string) => T
type Infer<S> = S extends Check<infer T> ? T : never

const fail = (kind: ErrorKind, message: string): never => { throw BlixardError.quiet(kind, message) }

const s = {
  int: (min: number, max: number, kind: ErrorKind = 'InvalidCommand'): Check<number> => (x, p) => {
    if (typeof x !== 'number' || !Number.isInteger(x)) fail('InvalidCommand', `${p} must be an integer`)
    if ((x as number) < min || (x as number) > max) fail(kind, `${p} must be in ${min}..${max}`)
    return x as number
  },
  num: (min: number, max: number): Check<number> => (x, p) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) fail('InvalidCommand', `${p} must be a finite number`)
    if ((x as number) < min || (x as number) > max) fail('InvalidSpec', `${p} must be in ${min}..${max}`)
    return x as number
  },
  str: (max: number = COMMAND_LIMITS.maxStringLength): Check<string> => (x, p) => {
    if (typeof x !== 'string') fail('InvalidCommand', `${p} must be a string`)
    if ((x as string).length > max) fail('TooLarge', `${p} is longer than ${max}`)
    return x as string
  },
  regex: (re: RegExp, max: number, what: string): Check<string> => (x, p) => {
    const v = s.str(max)(x, p)
    if (!re.test(v)) fail('InvalidSpec', `${p} "${v}" must be ${what}`)
    return v
  },
  bool: (): Check<boolean> => (x, p) => typeof x === 'boolean' ? x : fail('InvalidCommand', `${p} must be a boolean`),
  oneOf: <T extends string>(values: readonly T[]): Check<T> => (x, p) =>
    typeof x === 'string' && (values as readonly string[]).includes(x) ? x as T : fail('InvalidCommand', `${p} must be one of ${values.join(', ')}`),
  nullable: <T>(c: Check<T>): Check<T | null> => (x, p) => x === null ? null : c(x, p),
  list: <T>(max: number, item: Check<T>): Check<T[]> => (x, p) => {
    if (!Array.isArray(x)) fail('InvalidCommand', `${p} must be a list`)
    const a = x as unknown[]
    if (a.length > max) fail('TooLarge', `${p} has more than ${max} items`)
    const out = new Array<T>(a.length)
    for (let i = 0; i < a.length; i++) out[i] = item(a[i], `${p}[${i}]`)
    return out
  },
  /** required fields; `optional` ones are left out of the result when absent */
  object: <R extends Record<string, Check<unknown>>, O extends Record<string, Check<unknown>> = Record<never, never>>(req: R, optional?: O):
  Check<{ [K in keyof R]: Infer<R[K]> } & { [K in keyof O]?: Infer<O[K]> }> => {
    const rk = Object.keys(req)
    const ok = optional == null ? [] : Object.keys(optional)
    return (x, p) => {
      if (x == null || typeof x !== 'object' || Array.isArray(x) || x instanceof Uint8Array) fail('InvalidCommand', `${p} must be a map`)
      const o = x as Record<string, unknown>
      const out: Record<string, unknown> = {}
      for (const k of rk) out[k] = req[k](o[k], `${p}.${k}`)
      for (const k of ok) { const v = o[k]; if (v !== undefined) out[k] = (optional as O)[k](v, `${p}.${k}`) }
      return out as { [K in keyof R]: Infer<R[K]> } & { [K in keyof O]?: Infer<O[K]> }
    }
  },
  /** a tagged union on `tag` */
  union: <T extends string, M extends Record<T, Check<unknown>>>(tag: string, cases: M): Check<Infer<M[keyof M]>> => (x, p) => {
    const t = (x as Record<string, unknown> | null)?.[tag]
    const c = typeof t === 'string' ? cases[t as T] : undefined
    return c === undefined ? fail('InvalidCommand', `${p}.${tag} must be one of ${Object.keys(cases).join(', ')}`) : c(x, p) as Infer<M[keyof M]>
  }
}

const L = COMMAND_LIMITS
const name = s.regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, L.maxNameLength, "a DNS label: a-z, 0-9 and inner '-', 1-63 chars")
const label = s.str(L.maxLabelLength)
const constraint = s.union('op', {
  '==': s.object({ label, op: s.oneOf(['=='] as const), value: label }),
  '!=': s.object({ label, op: s.oneOf(['!='] as const), value: label }),
  in: s.object({ label, op: s.oneOf(['in'] as const), values: s.list(L.maxListItems, label) }),
  'not in': s.object({ label, op: s.oneOf(['not in'] as const), values: s.list(L.maxListItems, label) }),
  exists: s.object({ label, op: s.oneOf(['exists'] as const) }),
  'not exists': s.object({ label, op: s.oneOf(['not exists'] as const) })
})
const image = s.union('kind', {
  tiny: s.object({ kind: s.oneOf(['tiny'] as const) }),
  flake: s.object({ kind: s.oneOf(['flake'] as const), ref: s.str() }),
  kernel: s.object({ kind: s.oneOf(['kernel'] as const), kernel: s.str() }, { initrd: s.str(), cmdline: s.str() })
})
const uniqueNames = (p: string, what: string): Check<string[]> => (x, path) => {
  const v = s.list(L.maxListItems, name)(x, path)
  if (new Set(v).size !== v.length) fail('InvalidSpec', `${p}.${what} lists a ${what.slice(0, -1)} twice`)
  return v
}
const vmSpec = s.object({
  name,
  vcpus: s.int(L.minVcpus, L.maxVcpus, 'InvalidSpec'),
  memoryMiB: s.int(L.minMemoryMiB, L.maxMemoryMiB, 'InvalidSpec'),
  diskGiB: s.int(0, L.maxDiskGiB, 'InvalidSpec'),
  hypervisor: s.oneOf(['qemu', 'cloud-hypervisor', 'firecracker'] as const),
  image,
  volumes: uniqueNames('spec', 'volumes'),
  networks: uniqueNames('spec', 'networks'),
  kernelParams: s.list(L.maxListItems, s.str(256)),
  constraints: s.list(L.maxListItems, constraint),
  antiAffinityGroup: s.nullable(label),
  affinity: s.list(L.maxListItems, s.object({ label, value: label, weight: s.num(-100, 100) })),
  spreadLabel: s.nullable(label),
  priority: s.int(-1000, 1000, 'InvalidSpec'),
  restartPolicy: s.oneOf(['always', 'on-failure', 'never'] as const),
  requires: s.list(3, s.oneOf(['kvm', 'nix', 'qemu', 'rbd'] as const))
})
/** the derived type, checked against the hand-written one both ways */
type DerivedVmSpec = Infer<typeof vmSpec>
const sameType: [DerivedVmSpec extends VmSpec ? true : false, VmSpec extends DerivedVmSpec ? true : false] = [true, true]

const createVm = s.object({ type: s.oneOf(['CreateVm'] as const), id: s.regex(/^[\x21-\x7e]+$/, L.maxIdLength, 'printable ASCII'), spec: vmSpec }, { desired: s.oneOf(['running', 'stopped'] as const) })
const envelope = s.object({ cmd: createVm, at: s.num(0, Number.MAX_SAFE_INTEGER) }, { key: s.str(L.maxIdempotencyKeyLength) })
const vmCreateParams = s.object({ spec: vmSpec }, { start: s.bool(), queue: s.bool(), key: s.str(128) })
const clientFrame = s.object({ id: s.int(0, 2 ** 48), method: s.str(64) }, { params: (x: unknown) => x })

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

// ---- the two paths, both ways ----

const rpcToday = (): unknown => {
  const req = validateClientFrame(decodePayload(frame))
  if ('cancel' in req) throw new Error('cancel')
  return checkParams('vm.create', req.params)
}
const rpcCandidate = (): unknown => {
  const req = clientFrame(decodePayload(frame), 'request')
  return vmCreateParams(req.params ?? {}, 'params')
}
const applyToday = (): unknown => {
  const r = tryDecodeEnvelope(entry)
  if (!r.ok) throw new Error(r.error.message)
  return r.env
}
const applyCandidate = (): unknown => envelope(decodeCbor(entry), 'envelope')
const specToday = (): unknown => validateVmSpec(spec)
const specCandidate = (): unknown => vmSpec(spec, 'spec')

assert.deepEqual(rpcCandidate(), rpcToday())
assert.deepEqual(applyCandidate(), applyToday())
assert.deepEqual(specCandidate(), specToday())
assert.deepEqual(sameType, [true, true])
for (const bad of [{ ...spec, vcpus: 0 }, { ...spec, name: 'Web' }, { ...spec, networks: ['a', 'a'] }, { ...spec, image: { kind: 'iso' } }]) {
  const kind = (f: () => unknown): string => { try { f(); return 'ok' } catch (e) { return (e as BlixardError).kind } }
  assert.equal(kind(() => vmSpec(bad, 'spec')), kind(() => validateVmSpec(bad)), JSON.stringify(bad))
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

/** Today and the candidate take turns round by round (round 0 warms up), so a busy machine
 * slows both alike. */
function compare (path: string, today: () => unknown, candidate: (() => unknown) | null): { path: string, today: number, candidate: number } {
  const a: number[] = []
  const b: number[] = []
  for (let r = 0; r < ROUNDS + 1; r++) {
    const x = round(today)
    const y = candidate == null ? NaN : round(candidate)
    if (r > 0) { a.push(x); b.push(y) }
  }
  return { path, today: median(a), candidate: median(b) }
}

const rows = [
  compare('rpc decode: vm.create frame → params', rpcToday, rpcCandidate),
  compare('raft apply: CreateVm entry → envelope', applyToday, applyCandidate),
  compare('VmSpec alone (no CBOR)', specToday, specCandidate),
  compare('CBOR decode alone (the entry)', () => decodeCbor(entry), null)
]
if (json) console.log(JSON.stringify(rows))
else {
  console.log(`ns/op, median of ${ROUNDS} rounds of ${ROUND_MS} ms (today's validators vs derived-type combinators)`)
  for (const r of rows) console.log(`  ${r.path.padEnd(40)} today ${r.today.toFixed(0).padStart(6)}   candidate ${Number.isNaN(r.candidate) ? '     -' : r.candidate.toFixed(0).padStart(6)}${Number.isNaN(r.candidate) ? '' : `   (${(r.candidate / r.today).toFixed(2)}×)`}`)
}
