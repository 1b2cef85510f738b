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

/** A value list with its own wording when a value is not in it (else the dialect's). */
interface EnumText { kind: ErrorKind, text: (path: string, got: unknown) => string }

export type Node =
  | { readonly k: 'str', readonly max: number, readonly min: number, readonly re?: RegExp, readonly reKind?: ErrorKind, readonly reText?: (path: string, v: string) => string }
  | { readonly k: 'int', readonly min: number, readonly max: number, readonly kind: ErrorKind }
  | { readonly k: 'num', readonly min: number, readonly max: number, readonly kind: ErrorKind }
  | { readonly k: 'bool' }
  | { readonly k: 'enum', readonly values: readonly string[], readonly text?: EnumText }
  | { readonly k: 'true' }
  | { readonly k: 'tag', readonly value: string }
  | { readonly k: 'bytes', readonly len: number }
  | { readonly k: 'blob', readonly max: number }
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
  /** a checker of its own that throws a BlixardError (a part checked in another dialect); with
   * `named`, its message is put after the path ("params.envs[2]: ...") */
  | { readonly k: 'custom', readonly check: (x: unknown) => unknown, readonly named: boolean }

export type Schema<T> = Node & Typed<T>
export type Infer<S> = S extends Typed<infer T> ? T : never

type Fields = Record<string, Schema<unknown>>
/** Flattens an intersection into one object type (what editors show, and what Extract<> sees). */
type Flat<T> = [keyof T] extends [never] ? Record<string, never> : { [K in keyof T]: T[K] } & {}
type ObjOf<R extends Fields, O extends Fields> = Flat<{ -readonly [K in keyof R]: Infer<R[K]> } & { -readonly [K in keyof O]?: Infer<O[K]> }>

const as = <T>(n: Node): Schema<T> => n as Schema<T>

export const s = {
  /** a string of `min` (default 0) to `max` characters; with `re`, matching it (else `kind`, `text`) */
  str: (max: number, opts?: { min?: number, re?: RegExp, kind?: ErrorKind, text?: (path: string, v: string) => string }): Schema<string> =>
    as({ k: 'str', max, min: opts?.min ?? 0, ...(opts?.re !== undefined ? { re: opts.re, reKind: opts.kind ?? 'InvalidCommand', ...(opts.text !== undefined ? { reText: opts.text } : {}) } : {}) }),
  int: (min: number, max: number, kind: ErrorKind = 'InvalidCommand'): Schema<number> => as({ k: 'int', min, max, kind }),
  num: (min: number, max: number, kind: ErrorKind = 'InvalidSpec'): Schema<number> => as({ k: 'num', min, max, kind }),
  bool: (): Schema<boolean> => as({ k: 'bool' }),
  oneOf: <const T extends string>(values: readonly T[], text?: EnumText): Schema<T> => as({ k: 'enum', values, ...(text !== undefined ? { text } : {}) }),
  /** `true` (an optional flag that is either set or absent) */
  true: (): Schema<true> => as({ k: 'true' }),
  /** the tag field of a union case: checked by the union, copied as is */
  tag: <const T extends string>(value: T): Schema<T> => as({ k: 'tag', value }),
  /** bytes of exactly `len`, copied out of the decoder's buffer */
  bytes: (len: number): Schema<Uint8Array> => as({ k: 'bytes', len }),
  /** string → string map, keys sorted on output so that equal maps encode equal */
  /** bytes of at most `max`, handed on as a view of the decoder's buffer (not copied: a Raft
   * entry's data or a snapshot is large, and nothing keeps the buffer apart from it) */
  blob: (max: number): Schema<Uint8Array> => as({ k: 'blob', max }),
  labels: (maxKeys: number, maxLen: number): Schema<Record<string, string>> => as({ k: 'labels', maxKeys, maxLen }),
  list: <T>(max: number, item: Schema<T>): Schema<T[]> => as({ k: 'list', max, item }),
  nullable: <T>(inner: Schema<T>, opts?: { absentIsNull: true }): Schema<T | null> => as({ k: 'nullable', inner, absentIsNull: opts?.absentIsNull === true }),
  nullAbsent: <T>(inner: Schema<T>): Schema<T> => as({ k: 'nullAbsent', inner }),
  /** required fields, then optional ones (left out of the output when absent); the output holds
   * the fields in declaration order (unknown fields: dropped, or refused in the wire dialect) */
  obj: <R extends Fields, O extends Fields = Record<never, never>>(req: R, opt?: O): Schema<ObjOf<R, O>> =>
    as({ k: 'obj', req, opt: opt ?? {} }),
  /** objects told apart by the string field `tag`; each case declares it with s.tag() */
  union: <const C extends ReadonlyArray<Schema<unknown>>>(tag: string, cases: C, unknownText?: (tag: unknown) => string): Schema<Infer<C[number]>> =>
    as({ k: 'union', tag, cases, ...(unknownText !== undefined ? { unknownText } : {}) }),
  refine: <T>(inner: Schema<T>, check: (v: T) => Problem | undefined): Schema<T> => as({ k: 'refine', inner, check }),
  rooted: <T>(inner: Schema<T>, name: string, prefix: string): Schema<T> => as({ k: 'rooted', inner, name, prefix }),
  custom: <T>(check: (x: unknown) => T, opts?: { named: true }): Schema<T> => as({ k: 'custom', check, named: opts?.named === true })
}

// ---- the dialects ----

function describe (x: unknown): string {
  if (x === null) return 'null'
  if (Array.isArray(x)) return 'array'
  if (x instanceof Uint8Array) return 'bytes'
  return typeof x
}

function show (x: unknown): string {
  try { return JSON.stringify(x) ?? String(x) } catch { return typeof x }
}

type Text = (path: string, x: unknown) => string

interface Dialect {
  /** unknown fields refused, absent required ones named */
  strict: boolean
  /** Map objects are refused as objects (a decoder's maps with non-string keys) */
  noMaps: boolean
  shape: ErrorKind
  size: ErrorKind
  notMap: Text, notStr: Text
  /** not a string where a non-empty one is wanted (else notStr) */
  notText?: Text
  long: (max: number) => Text, short: (min: number) => Text
  notBytes: Text, longBytes: (max: number) => Text
  notInt: Text, notNum: Text, range: (min: number, max: number) => Text, notBool: Text
  notEnum: (values: readonly string[]) => Text, notList: Text, longList: (max: number) => Text
  unknown: (path: string, key: string) => string, missing: (path: string, key: string) => string
}

export type DialectName = 'command' | 'wire' | 'config'

const DIALECTS: Record<DialectName, Dialect> = {
  command: {
    strict: false,
    noMaps: false,
    shape: 'InvalidCommand',
    size: 'TooLarge',
    notMap: (p) => `${p} must be a map`,
    notStr: (p) => `${p} must be a string`,
    notBytes: (p) => `${p} must be bytes`,
    longBytes: (max) => (p, x) => `${p} is longer than ${max} bytes (${(x as Uint8Array).byteLength})`,
    long: (max) => (p) => `${p} is longer than ${max}`,
    short: (min) => (p) => min === 1 ? `${p} must not be empty` : `${p} is shorter than ${min}`,
    notInt: (p) => `${p} must be an integer`,
    notNum: (p) => `${p} must be a finite number`,
    range: (min, max) => (p) => `${p} must be in ${min}..${max}`,
    notBool: (p) => `${p} must be a boolean`,
    notEnum: (values) => (p) => `${p} must be one of ${values.join(', ')}`,
    notList: (p) => `${p} must be a list`,
    longList: (max) => (p) => `${p} has more than ${max} items`,
    unknown: (p, k) => `${p} has an unknown field '${k.slice(0, 64)}'`,
    missing: (p, k) => `${p} is missing field '${k}'`
  },
  wire: {
    strict: true,
    noMaps: true,
    shape: 'BadMessage',
    size: 'BadMessage',
    notMap: (p, x) => `${p}: expected an object, got ${describe(x)}`,
    notStr: (p, x) => `${p}: expected a string, got ${describe(x)}`,
    notBytes: (p, x) => `${p}: expected bytes, got ${describe(x)}`,
    longBytes: (max) => (p, x) => `${p}: ${(x as Uint8Array).byteLength} bytes exceeds ${max}`,
    long: (max) => (p) => `${p}: string longer than ${max}`,
    short: (min) => (p) => min === 1 ? `${p}: must not be empty` : `${p}: string shorter than ${min}`,
    notInt: (p, x) => `${p}: expected an integer, got ${describe(x)}`,
    notNum: (p, x) => `${p}: expected a finite number, got ${describe(x)}`,
    range: (min, max) => (p, x) => `${p}: ${String(x)} is outside [${min}, ${max}]`,
    notBool: (p, x) => `${p}: expected a boolean, got ${describe(x)}`,
    notEnum: (values) => (p, x) => `${p}: expected one of ${values.join('|')}, got ${typeof x === 'string' ? `'${x.slice(0, 64)}'` : describe(x)}`,
    notList: (p, x) => `${p}: expected an array, got ${describe(x)}`,
    longList: (max) => (p) => `${p}: array longer than ${max}`,
    unknown: (p, k) => `${p}: unknown field '${k.slice(0, 64)}'`,
    missing: (p, k) => `${p}: missing field '${k}'`
  },
  // node/config.ts: an operator reads these next to the key and where it came from, so they show
  // the value that was given (cut short); the kinds do not matter there (a ConfigError has none)
  config: {
    strict: false,
    noMaps: false,
    shape: 'InvalidSpec',
    size: 'InvalidSpec',
    notMap: (p, x) => `${p}: expected a table, got ${showShort(x)}`,
    notStr: (p, x) => `${p} must be a string, got ${showShort(x)}`,
    notBytes: (p, x) => `${p}: expected bytes, got ${showShort(x)}`,
    longBytes: (max) => (p, x) => `${p}: ${(x as Uint8Array).byteLength} bytes exceeds ${max}`,
    notText: (p, x) => `${p}: expected a non-empty string, got ${showShort(x)}`,
    long: (max) => (p) => `${p}: longer than ${max} characters`,
    short: (min) => (p) => min === 1 ? `${p}: expected a non-empty string` : `${p}: shorter than ${min} characters`,
    notInt: (p, x) => `${p}: expected an integer, got ${showShort(x)}`,
    notNum: (p, x) => `${p}: expected a finite number, got ${showShort(x)}`,
    range: (min, max) => (p, x) => `${p}: ${String(x)} is outside [${min}, ${max}]`,
    notBool: (p, x) => `${p}: expected true or false, got ${showShort(x)}`,
    notEnum: (values) => (p, x) => `${p}: expected ${values.join('|')}, got ${showShort(x)}`,
    notList: (p, x) => `${p}: expected a list, got ${showShort(x)}`,
    longList: (max) => (p) => `${p}: more than ${max} items`,
    unknown: (p, k) => `${p}: unknown key '${k.slice(0, 64)}'`,
    missing: (p, k) => `${p}: missing key '${k}'`
  }
}

/** A value as JSON, cut to what an error line can hold. */
function showShort (x: unknown): string {
  return typeof x === 'bigint' ? String(x) : show(x).slice(0, 80)
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
/** A dialect's text about the value x, as a Fail's text (built only when something failed). */
const about = (text: Text, x: unknown) => (p: string): string => text(p, x)

type Check = (x: unknown) => unknown

function build (n: Node, d: Dialect, path: string, prefix: string, optional = false): Check {
  switch (n.k) {
    case 'str': {
      const { max, min, re, reKind, reText } = n
      const long = d.long(max)
      const short = d.short(min)
      const notStr = min >= 1 && d.notText !== undefined ? d.notText : d.notStr
      return (x) => {
        if (typeof x !== 'string') fail(d.shape, path, about(notStr, x))
        if ((x as string).length > max) fail(d.size, path, long)
        if ((x as string).length < min) fail(d.shape, path, short)
        if (re !== undefined && !re.test(x as string)) fail(reKind ?? d.shape, path, (p) => reText === undefined ? `${p} is malformed` : reText(p, x as string))
        return x
      }
    }
    case 'int':
    case 'num': {
      const { min, max, kind } = n
      const range = d.range(min, max)
      const rangeKind = d.strict ? d.shape : kind
      const wrongType = n.k === 'int' ? d.notInt : d.notNum
      const isNumber = n.k === 'int' ? Number.isInteger : Number.isFinite
      return (x) => {
        if (typeof x !== 'number' || !isNumber(x)) fail(d.shape, path, about(wrongType, x))
        if ((x as number) < min || (x as number) > max) fail(rangeKind, path, about(range, x))
        return x
      }
    }
    case 'bool':
      return (x) => typeof x === 'boolean' ? x : fail(d.shape, path, about(d.notBool, x))
    case 'enum': {
      const values = n.values
      const kind = n.text?.kind ?? d.shape
      const text = n.text?.text ?? d.notEnum(values)
      return (x) => {
        if (typeof x !== 'string' || !values.includes(x)) fail(kind, path, about(text, x))
        return x
      }
    }
    case 'true':
      return (x) => x === true ? true : fail(d.shape, path, (p) => `${p} must be true${optional ? ' or absent' : ''}, got ${show(x)}`)
    case 'tag': {
      const value = n.value
      return () => value
    }
    case 'bytes': {
      const len = n.len
      return (x) => {
        if (!(x instanceof Uint8Array)) fail(d.shape, path, (p) => `${p} must be bytes`)
        if ((x as Uint8Array).byteLength !== len) fail(d.shape, path, (p) => `${p} must be ${len} bytes`)
        return new Uint8Array(x as Uint8Array)
      }
    }
    case 'blob': {
      const long = d.longBytes(n.max)
      const max = n.max
      return (x) => {
        if (!(x instanceof Uint8Array)) fail(d.shape, path, about(d.notBytes, x))
        const b = x as Uint8Array
        if (b.byteLength > max) fail(d.size, path, about(long, b))
        // a plain Uint8Array view: decoders may hand out Buffers
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
      }
    }
    case 'labels': {
      const { maxKeys, maxLen } = n
      return (x) => {
        if (!isMap(x, d)) fail(d.shape, path, about(d.notMap, x))
        const o = x as Record<string, unknown>
        const keys = Object.keys(o)
        if (keys.length > maxKeys) fail(d.size, path, (p) => `${p} has more than ${maxKeys} labels`)
        const out: Record<string, string> = {}
        // Sorted so that the same labels always encode (and hash) the same.
        for (const k of keys.sort()) {
          if (k.length > maxLen) fail(d.size, path, (p) => `${p} key is longer than ${maxLen}`)
          if (k.length === 0) fail(d.shape, path, (p) => `${p} has an empty key`)
          const v = o[k]
          if (typeof v !== 'string') fail(d.shape, path, (p) => d.notStr(`${p}.${k}`, v))
          if ((v as string).length > maxLen) fail(d.size, path, (p) => d.long(maxLen)(`${p}.${k}`, v))
          out[k] = v as string
        }
        return out
      }
    }
    case 'list': {
      const max = n.max
      const item = build(n.item, d, `${path}[]`, `${path}[].`)
      const long = d.longList(max)
      return (x) => {
        if (!Array.isArray(x)) fail(d.shape, path, about(d.notList, x))
        const a = x as unknown[]
        if (a.length > max) fail(d.size, path, long)
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
      const inner = build(n.inner, d, path, prefix)
      return n.absentIsNull ? (x) => x == null ? null : inner(x) : (x) => x === null ? null : inner(x)
    }
    case 'nullAbsent': return build(n.inner, d, path, prefix, optional)
    case 'obj': return buildObj(n.req, n.opt, d, path, prefix)
    case 'union': {
      const { tag, unknownText } = n
      const cases = new Map<string, Check>()
      for (const c of n.cases) cases.set(tagOf(c, tag), build(c, d, path, prefix))
      const names = [...cases.keys()]
      const notEnum = d.notEnum(names)
      return (x) => {
        if (!isMap(x, d)) fail(d.shape, path, about(d.notMap, x))
        const t = (x as Record<string, unknown>)[tag]
        const c = typeof t === 'string' ? cases.get(t) : undefined
        if (c === undefined) return fail(d.shape, prefix + tag, unknownText !== undefined ? () => unknownText(t) : about(notEnum, t))
        return c(x)
      }
    }
    case 'refine': {
      const inner = build(n.inner, d, path, prefix, optional)
      const check = n.check as (v: unknown) => Problem | undefined
      return (x) => {
        const v = inner(x)
        const p = check(v)
        if (p !== undefined) fail(p.kind, path, p.message, prefix)
        return v
      }
    }
    case 'rooted': return build(n.inner, d, n.name, n.prefix)
    case 'custom': {
      const check = n.check
      if (!n.named) return check
      return (x) => {
        try {
          return check(x)
        } catch (e) {
          if (e instanceof BlixardError) fail(e.kind, path, (p) => `${p}: ${e.message}`)
          throw e
        }
      }
    }
  }
}

function isMap (x: unknown, d: Dialect): x is Record<string, unknown> {
  return x != null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array) && !(d.noMaps && x instanceof Map)
}

/** The value of a union case's tag field (declared with s.tag()). */
function tagOf (n: Node, tag: string): string {
  if (n.k === 'refine') return tagOf(n.inner, tag)
  const t = n.k === 'obj' ? n.req[tag] : undefined
  if (t?.k !== 'tag') throw new Error(`schema: a union case has no s.tag() field '${tag}'`)
  return t.value
}

function buildObj (req: Readonly<Record<string, Node>>, opt: Readonly<Record<string, Node>>, d: Dialect, path: string, prefix: string): Check {
  const reqKeys = Object.keys(req)
  const optKeys = Object.keys(opt)
  const checks = [
    ...reqKeys.map((k) => build(req[k], d, prefix + k, `${prefix}${k}.`)),
    ...optKeys.map((k) => build(opt[k], d, prefix + k, `${prefix}${k}.`, true))
  ]
  const notAMap = (x: unknown): never => fail(d.shape, path, about(d.notMap, x))
  const known = new Set([...reqKeys, ...optKeys])
  /** strict: the first unknown field, then the first absent required one, by name */
  const strictCheck = (o: Record<string, unknown>): void => {
    for (const k of Object.keys(o)) if (!known.has(k)) fail(d.shape, path, (p) => d.unknown(p, k))
    for (const k of reqKeys) if (o[k] === undefined && req[k].k !== 'tag') fail(d.shape, path, (p) => d.missing(p, k))
  }
  // The one generated piece: an object's field reads and its output literal, written out per
  // shape, so that each read and the literal have their own inline cache, as in a hand-written
  // checker (a loop over a key table makes them megamorphic: 1.15-1.3x slower on a VmSpec). Only
  // the field names (JSON-quoted) and table indices go into the source; no input does.
  const q = (k: string): string => JSON.stringify(k)
  const src = [
    `if (x == null || typeof x !== "object" || Array.isArray(x) || x instanceof Uint8Array${d.noMaps ? ' || x instanceof Map' : ''}) notAMap(x)`,
    d.strict ? 'strictCheck(x)' : '',
    `const out = { ${reqKeys.map((k, i) => `${q(k)}: c[${i}](x[${q(k)}])`).join(', ')} }`,
    ...optKeys.map((k, j) => {
      const i = reqKeys.length + j
      const absent = opt[k].k === 'nullAbsent' ? 'v == null' : 'v === undefined'
      return `{ const v = x[${q(k)}]; if (!(${absent})) out[${q(k)}] = c[${i}](v) }`
    }),
    'return out'
  ].join('\n')
  // eslint-disable-next-line no-new-func -- see above: generated from the schema's field names only
  return new Function('c', 'notAMap', 'strictCheck', `return function check (x) {\n${src}\n}`)(checks, notAMap, strictCheck) as Check
}

/** The checker of a schema, its failures named from `name` (the root) and `prefix` (its fields)
 * in the dialect's words: returns a fresh, clean copy or throws a stackless BlixardError. */
export function compile<T> (schema: Schema<T>, name: string, prefix = `${name}.`, dialect: DialectName = 'command'): (x: unknown) => T {
  const check = build(schema, DIALECTS[dialect], name, prefix)
  return (x) => {
    try {
      return check(x) as T
    } catch (e) {
      if (e instanceof Fail) throw BlixardError.quiet(e.kind, e.message())
      throw e
    }
  }
}
