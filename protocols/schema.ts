// The schema vocabulary: a shape is declared once, as data (`s.obj({ id: s.id(), ... })`); its
// TypeScript type is derived from the declaration (`Infer<typeof X>`) and its checker is compiled
// from the same declaration, so a field cannot be added to the type without the checker knowing.
//
// compile() runs once per schema at module load and builds a tree of specialised closures over
// flat field tables. On the hot paths (Raft apply, RPC decode) a check allocates nothing but the
// clean output copy: every field's path is fixed at compile time ("spec.image.kind"), and list
// indices are filled in only when something fails (a failure carries the indices up through the
// lists it crossed). Failures are stackless values turned into one BlixardError at the root.
import type { ErrorKind } from './errors.ts'
import { BlixardError } from './errors.ts'

// ---- the declarations (plain data) ----

/** The output type a node stands for; no runtime presence. */
declare const OUT: unique symbol
interface Typed<T> { readonly [OUT]: T }

/** A failed refinement: its kind and its message, given the path of the node it refines and the
 * prefix of that node's fields (for an object's cross-field rules). */
export interface Problem { kind: ErrorKind, message: (path: string, prefix: string) => string }

export type Node =
  | { readonly k: 'str', readonly max: number, readonly re?: RegExp, readonly reKind?: ErrorKind, readonly reText?: (path: string, v: string) => string }
  | { readonly k: 'int', readonly min: number, readonly max: number, readonly kind: ErrorKind }
  | { readonly k: 'num', readonly min: number, readonly max: number, readonly kind: ErrorKind }
  | { readonly k: 'enum', readonly values: readonly string[] }
  | { readonly k: 'true' }
  | { readonly k: 'tag', readonly value: string }
  | { readonly k: 'bytes', readonly len: number }
  | { readonly k: 'labels', readonly maxKeys: number, readonly maxLen: number }
  | { readonly k: 'list', readonly max: number, readonly item: Node }
  /** null, else `inner`; with absentIsNull an absent value is null too */
  | { readonly k: 'nullable', readonly inner: Node, readonly absentIsNull: boolean }
  /** as an optional field: null counts as absent */
  | { readonly k: 'nullAbsent', readonly inner: Node }
  | { readonly k: 'obj', readonly req: Readonly<Record<string, Node>>, readonly opt: Readonly<Record<string, Node>> }
  | { readonly k: 'union', readonly tag: string, readonly cases: readonly Node[], readonly unknownText?: (tag: unknown) => string }
  | { readonly k: 'refine', readonly inner: Node, readonly check: (v: never) => Problem | undefined }
  /** `inner` checked with its own root path (a command inside an envelope is `command`, not `cmd`) */
  | { readonly k: 'rooted', readonly inner: Node, readonly name: string, readonly prefix: string }

export type Schema<T> = Node & Typed<T>
export type Infer<S> = S extends Typed<infer T> ? T : never

type Fields = Record<string, Schema<unknown>>
/** Flattens an intersection into one object type (what editors show, and what Extract<> sees). */
type Flat<T> = { [K in keyof T]: T[K] } & {}
type ObjOf<R extends Fields, O extends Fields> = Flat<{ -readonly [K in keyof R]: Infer<R[K]> } & { -readonly [K in keyof O]?: Infer<O[K]> }>

const as = <T>(n: Node): Schema<T> => n as Schema<T>

export const s = {
  /** a string of at most `max` characters; with `re`, matching it (else `reKind`, `reText`) */
  str: (max: number, re?: { re: RegExp, kind: ErrorKind, text: (path: string, v: string) => string }): Schema<string> =>
    as(re === undefined ? { k: 'str', max } : { k: 'str', max, re: re.re, reKind: re.kind, reText: re.text }),
  int: (min: number, max: number, kind: ErrorKind = 'InvalidCommand'): Schema<number> => as({ k: 'int', min, max, kind }),
  num: (min: number, max: number, kind: ErrorKind = 'InvalidSpec'): Schema<number> => as({ k: 'num', min, max, kind }),
  oneOf: <const T extends string>(values: readonly T[]): Schema<T> => as({ k: 'enum', values }),
  /** `true` (an optional flag that is either set or absent) */
  true: (): Schema<true> => as({ k: 'true' }),
  /** the tag field of a union case: checked by the union, copied as is */
  tag: <const T extends string>(value: T): Schema<T> => as({ k: 'tag', value }),
  /** bytes of exactly `len`, copied out of the decoder's buffer */
  bytes: (len: number): Schema<Uint8Array> => as({ k: 'bytes', len }),
  /** string → string map, keys sorted on output so that equal maps encode equal */
  labels: (maxKeys: number, maxLen: number): Schema<Record<string, string>> => as({ k: 'labels', maxKeys, maxLen }),
  list: <T>(max: number, item: Schema<T>): Schema<T[]> => as({ k: 'list', max, item }),
  nullable: <T>(inner: Schema<T>, opts?: { absentIsNull: true }): Schema<T | null> => as({ k: 'nullable', inner, absentIsNull: opts?.absentIsNull === true }),
  nullAbsent: <T>(inner: Schema<T>): Schema<T> => as({ k: 'nullAbsent', inner }),
  /** required fields, then optional ones (left out of the output when absent); unknown fields are
   * dropped, and the output holds the fields in declaration order */
  obj: <R extends Fields, O extends Fields = Record<never, never>>(req: R, opt?: O): Schema<ObjOf<R, O>> =>
    as({ k: 'obj', req, opt: opt ?? {} }),
  /** objects told apart by the string field `tag`; each case declares it with s.tag() */
  union: <const C extends ReadonlyArray<Schema<unknown>>>(tag: string, cases: C, unknownText?: (tag: unknown) => string): Schema<Infer<C[number]>> =>
    as({ k: 'union', tag, cases, ...(unknownText !== undefined ? { unknownText } : {}) }),
  refine: <T>(inner: Schema<T>, check: (v: T) => Problem | undefined): Schema<T> => as({ k: 'refine', inner, check }),
  rooted: <T>(inner: Schema<T>, name: string, prefix: string): Schema<T> => as({ k: 'rooted', inner, name, prefix })
}

// ---- the compiler ----

/** A failure on its way up: stackless; `path` holds `[]` where a list index goes, `indices` the
 * indices (outermost first) added by the lists it passed through. */
class Fail {
  readonly indices: number[] = []
  constructor (readonly kind: ErrorKind, readonly path: string, readonly text: (path: string, prefix: string) => string, readonly prefix = '') {}
  message (): string {
    const fill = (t: string): string => { let i = 0; return t.replace(/\[\]/g, () => `[${this.indices[i++]}]`) }
    return this.indices.length === 0 ? this.text(this.path, this.prefix) : this.text(fill(this.path), fill(this.prefix))
  }
}

const fail = (kind: ErrorKind, path: string, text: (path: string, prefix: string) => string, prefix = ''): never => { throw new Fail(kind, path, text, prefix) }

type Check = (x: unknown) => unknown

function isMap (x: unknown): x is Record<string, unknown> {
  return x != null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array)
}

function show (x: unknown): string {
  try { return JSON.stringify(x) ?? String(x) } catch { return typeof x }
}

function build (n: Node, path: string, prefix: string, optional = false): Check {
  switch (n.k) {
    case 'str': {
      const { max, re, reKind, reText } = n
      const notStr = (p: string): string => `${p} must be a string`
      const long = (p: string): string => `${p} is longer than ${max}`
      if (re === undefined) {
        return (x) => {
          if (typeof x !== 'string') fail('InvalidCommand', path, notStr)
          if ((x as string).length > max) fail('TooLarge', path, long)
          return x
        }
      }
      return (x) => {
        if (typeof x !== 'string') fail('InvalidCommand', path, notStr)
        if ((x as string).length > max) fail('TooLarge', path, long)
        if (!re.test(x as string)) fail(reKind ?? 'InvalidCommand', path, (p) => reText === undefined ? `${p} is malformed` : reText(p, x as string))
        return x
      }
    }
    case 'int': {
      const { min, max, kind } = n
      const notInt = (p: string): string => `${p} must be an integer`
      const range = (p: string): string => `${p} must be in ${min}..${max}`
      return (x) => {
        if (typeof x !== 'number' || !Number.isInteger(x)) fail('InvalidCommand', path, notInt)
        if ((x as number) < min || (x as number) > max) fail(kind, path, range)
        return x
      }
    }
    case 'num': {
      const { min, max, kind } = n
      const notNum = (p: string): string => `${p} must be a finite number`
      const range = (p: string): string => `${p} must be in ${min}..${max}`
      return (x) => {
        if (typeof x !== 'number' || !Number.isFinite(x)) fail('InvalidCommand', path, notNum)
        if ((x as number) < min || (x as number) > max) fail(kind, path, range)
        return x
      }
    }
    case 'enum': {
      const values = n.values
      const text = (p: string): string => `${p} must be one of ${values.join(', ')}`
      return (x) => {
        if (typeof x !== 'string' || !values.includes(x)) fail('InvalidCommand', path, text)
        return x
      }
    }
    case 'true':
      return (x) => x === true ? true : fail('InvalidCommand', path, (p) => `${p} must be true${optional ? ' or absent' : ''}, got ${show(x)}`)
    case 'tag': {
      const value = n.value
      return () => value
    }
    case 'bytes': {
      const len = n.len
      return (x) => {
        if (!(x instanceof Uint8Array)) fail('InvalidCommand', path, (p) => `${p} must be bytes`)
        if ((x as Uint8Array).byteLength !== len) fail('InvalidCommand', path, (p) => `${p} must be ${len} bytes`)
        return new Uint8Array(x as Uint8Array)
      }
    }
    case 'labels': {
      const { maxKeys, maxLen } = n
      const notMap = (p: string): string => `${p} must be a map`
      return (x) => {
        if (!isMap(x)) fail('InvalidCommand', path, notMap)
        const o = x as Record<string, unknown>
        const keys = Object.keys(o)
        if (keys.length > maxKeys) fail('TooLarge', path, (p) => `${p} has more than ${maxKeys} labels`)
        const out: Record<string, string> = {}
        // Sorted so that the same labels always encode (and hash) the same.
        for (const k of keys.sort()) {
          if (k.length > maxLen) fail('TooLarge', path, (p) => `${p} key is longer than ${maxLen}`)
          if (k.length === 0) fail('InvalidCommand', path, (p) => `${p} has an empty key`)
          const v = o[k]
          if (typeof v !== 'string') fail('InvalidCommand', path, (p) => `${p}.${k} must be a string`)
          if ((v as string).length > maxLen) fail('TooLarge', path, (p) => `${p}.${k} is longer than ${maxLen}`)
          out[k] = v as string
        }
        return out
      }
    }
    case 'list': {
      const max = n.max
      const item = build(n.item, `${path}[]`, `${path}[].`)
      const notList = (p: string): string => `${p} must be a list`
      const long = (p: string): string => `${p} has more than ${max} items`
      return (x) => {
        if (!Array.isArray(x)) fail('InvalidCommand', path, notList)
        const a = x as unknown[]
        if (a.length > max) fail('TooLarge', path, long)
        const out = new Array<unknown>(a.length)
        let i = 0
        try {
          for (; i < a.length; i++) out[i] = item(a[i])
        } catch (e) {
          if (e instanceof Fail) e.indices.unshift(i)
          throw e
        }
        return out
      }
    }
    case 'nullable': {
      const inner = build(n.inner, path, prefix)
      return n.absentIsNull ? (x) => x == null ? null : inner(x) : (x) => x === null ? null : inner(x)
    }
    case 'nullAbsent': return build(n.inner, path, prefix, optional)
    case 'obj': return buildObj(n.req, n.opt, path, prefix)
    case 'union': {
      const { tag, unknownText } = n
      const cases = new Map<string, Check>()
      for (const c of n.cases) cases.set(tagOf(c, tag), build(c, path, prefix))
      const names = [...cases.keys()].join(', ')
      const notMap = (p: string): string => `${p} must be a map`
      return (x) => {
        if (!isMap(x)) fail('InvalidCommand', path, notMap)
        const t = (x as Record<string, unknown>)[tag]
        const c = typeof t === 'string' ? cases.get(t) : undefined
        if (c === undefined) return fail('InvalidCommand', prefix + tag, unknownText !== undefined ? () => unknownText(t) : (p) => `${p} must be one of ${names}`)
        return c(x)
      }
    }
    case 'refine': {
      const inner = build(n.inner, path, prefix, optional)
      const check = n.check as (v: unknown) => Problem | undefined
      return (x) => {
        const v = inner(x)
        const p = check(v)
        if (p !== undefined) fail(p.kind, path, p.message, prefix)
        return v
      }
    }
    case 'rooted': return build(n.inner, n.name, n.prefix)
  }
}

/** The value of a union case's tag field (declared with s.tag()). */
function tagOf (n: Node, tag: string): string {
  if (n.k === 'refine') return tagOf(n.inner, tag)
  const t = n.k === 'obj' ? n.req[tag] : undefined
  if (t?.k !== 'tag') throw new Error(`schema: a union case has no s.tag() field '${tag}'`)
  return t.value
}

function buildObj (req: Readonly<Record<string, Node>>, opt: Readonly<Record<string, Node>>, path: string, prefix: string): Check {
  const reqKeys = Object.keys(req)
  const optKeys = Object.keys(opt)
  const checks = [
    ...reqKeys.map((k) => build(req[k], prefix + k, `${prefix}${k}.`)),
    ...optKeys.map((k) => build(opt[k], prefix + k, `${prefix}${k}.`, true))
  ]
  const notMap = (p: string): string => `${p} must be a map`
  const notAMap = (): never => fail('InvalidCommand', path, notMap)
  // The one generated piece: an object's field reads and its output literal, written out per
  // shape, so that each read and the literal have their own inline cache, as in a hand-written
  // checker (a loop over a key table makes them megamorphic: 1.15-1.3x slower on a VmSpec). Only
  // the field names (JSON-quoted) and table indices go into the source; no input does.
  const q = (k: string): string => JSON.stringify(k)
  const src = [
    'if (x == null || typeof x !== "object" || Array.isArray(x) || x instanceof Uint8Array) notAMap()',
    `const out = { ${reqKeys.map((k, i) => `${q(k)}: c[${i}](x[${q(k)}])`).join(', ')} }`,
    ...optKeys.map((k, j) => {
      const i = reqKeys.length + j
      const absent = opt[k].k === 'nullAbsent' ? 'v == null' : 'v === undefined'
      return `{ const v = x[${q(k)}]; if (!(${absent})) out[${q(k)}] = c[${i}](v) }`
    }),
    'return out'
  ].join('\n')
  // eslint-disable-next-line no-new-func -- see above: generated from the schema's field names only
  return new Function('c', 'notAMap', `return function check (x) {\n${src}\n}`)(checks, notAMap) as Check
}

/** The checker of a schema, its failures named from `name` (the root) and `prefix` (its fields):
 * returns a fresh, clean copy or throws a stackless BlixardError naming the path and the bound. */
export function compile<T> (schema: Schema<T>, name: string, prefix = `${name}.`): (x: unknown) => T {
  const check = build(schema, name, prefix)
  return (x) => {
    try {
      return check(x) as T
    } catch (e) {
      if (e instanceof Fail) throw BlixardError.quiet(e.kind, e.message())
      throw e
    }
  }
}
