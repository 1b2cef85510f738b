// The hand-written check helpers the schema vocabulary (protocols/schema.ts) replaced, as they
// were, kept only for bench:schema's baselines (bench/baseline/*-handwritten.ts).
//
// Small schema helpers for data decoded from the network. Each returns the checked value with
// its precise type or throws BlixardError('BadMessage') naming the path and what was wrong, so a
// validator reads like the shape it checks.
import { BlixardError } from '../../protocols/errors.ts'

export type Obj = Record<string, unknown>

export function bad (path: string, what: string): never {
  throw new BlixardError('BadMessage', `${path}: ${what}`)
}

function describe (x: unknown): string {
  if (x === null) return 'null'
  if (Array.isArray(x)) return 'array'
  if (x instanceof Uint8Array) return 'bytes'
  return typeof x
}

/** A plain object whose keys are all in `allowed` and include every key of `required`. */
export function obj (x: unknown, path: string, allowed: readonly string[], required: readonly string[] = []): Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array || x instanceof Map) {
    bad(path, `expected an object, got ${describe(x)}`)
  }
  const o = x as Obj
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) bad(path, `unknown field '${k.slice(0, 64)}'`)
  }
  for (const k of required) {
    if (o[k] === undefined) bad(path, `missing field '${k}'`)
  }
  return o
}

/** An integer within [min, max] (defaults: a non-negative safe integer). */
export function int (x: unknown, path: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x)) bad(path, `expected an integer, got ${describe(x)}`)
  if (x < min || x > max) bad(path, `${x} is outside [${min}, ${max}]`)
  return x
}

/** A finite number within [min, max]. */
export function num (x: unknown, path: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) bad(path, `expected a finite number, got ${describe(x)}`)
  if (x < min || x > max) bad(path, `${x} is outside [${min}, ${max}]`)
  return x
}

export function str (x: unknown, path: string, maxLen: number, minLen = 0): string {
  if (typeof x !== 'string') bad(path, `expected a string, got ${describe(x)}`)
  if (x.length > maxLen) bad(path, `string longer than ${maxLen}`)
  if (x.length < minLen) bad(path, minLen === 1 ? 'must not be empty' : `string shorter than ${minLen}`)
  return x
}

export function bool (x: unknown, path: string): boolean {
  if (typeof x !== 'boolean') bad(path, `expected a boolean, got ${describe(x)}`)
  return x
}

/** Bytes, returned as a plain Uint8Array view (decoders may hand out Buffers). */
export function bytes (x: unknown, path: string, maxLen: number): Uint8Array {
  if (!(x instanceof Uint8Array)) bad(path, `expected bytes, got ${describe(x)}`)
  if (x.byteLength > maxLen) bad(path, `${x.byteLength} bytes exceeds ${maxLen}`)
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength)
}

export function arr (x: unknown, path: string, maxLen: number): unknown[] {
  if (!Array.isArray(x)) bad(path, `expected an array, got ${describe(x)}`)
  if (x.length > maxLen) bad(path, `array longer than ${maxLen}`)
  return x
}

export function oneOf<T extends string> (x: unknown, path: string, values: readonly T[]): T {
  if (typeof x !== 'string' || !(values as readonly string[]).includes(x)) {
    bad(path, `expected one of ${values.join('|')}, got ${typeof x === 'string' ? `'${x.slice(0, 64)}'` : describe(x)}`)
  }
  return x as T
}

/** Applies `check` to o[key] when present (undefined stays absent). */
export function opt<T> (o: Obj, key: string, check: (x: unknown, path: string) => T, path: string): T | undefined {
  const v = o[key]
  return v === undefined ? undefined : check(v, `${path}.${key}`)
}
