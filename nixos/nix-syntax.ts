// Printing values as Nix source. Every string that reaches a rendered .nix file goes
// through nixString: a guest name or kernel parameter must never become Nix code.
import { BlixardError } from '../protocols/errors.ts'

/**
 * A piece of Nix code written by us (never built from user input without nixString).
 * A class, not a shape: a user-supplied object with a `nixRaw` key stays data.
 */
export class NixRaw {
  readonly nixRaw: string
  constructor (code: string) { this.nixRaw = code }
}

export type NixValue =
  | string
  | number
  | boolean
  | null
  | NixRaw
  | readonly NixValue[]
  | { readonly [key: string]: NixValue | undefined }

export function raw (code: string): NixRaw {
  return new NixRaw(code)
}

/**
 * A Nix double-quoted string literal whose value is exactly `s`.
 * Escapes `\`, `"` and every `$` (so neither `${` nor `$${` can start an
 * interpolation), and writes newline, CR and tab as escapes so the literal stays
 * on one line. Nix strings are C strings inside the evaluator: NUL is refused.
 */
export function nixString (s: string): string {
  if (s.includes('\0')) throw new BlixardError('InvalidSpec', 'a string for Nix contains a NUL byte')
  let out = '"'
  for (const ch of s) {
    switch (ch) {
      case '\\': out += '\\\\'; break
      case '"': out += '\\"'; break
      case '$': out += '\\$'; break
      case '\n': out += '\\n'; break
      case '\r': out += '\\r'; break
      case '\t': out += '\\t'; break
      default: out += ch
    }
  }
  return out + '"'
}

const NIX_KEYWORDS = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit', 'or'])

/** An attribute name: bare when it is a plain identifier, a quoted string otherwise. */
export function nixAttrName (name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) && !NIX_KEYWORDS.has(name) ? name : nixString(name)
}

function isRaw (v: NixValue): v is NixRaw {
  return v instanceof NixRaw
}

/** Nix source for a value, indented by `indent` levels of two spaces. Undefined attributes are left out. */
export function toNix (v: NixValue, indent = 0): string {
  const pad = '  '.repeat(indent + 1)
  const end = '  '.repeat(indent)
  if (v === null) return 'null'
  if (typeof v === 'string') return nixString(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number') {
    // Nix has 64-bit ints and floats; we only ever emit integers.
    if (!Number.isSafeInteger(v)) throw new BlixardError('InvalidSpec', `not an integer for Nix: ${v}`)
    return v < 0 ? `(${v})` : String(v)
  }
  if (isRaw(v)) return v.nixRaw
  if (Array.isArray(v)) {
    if (v.length === 0) return '[ ]'
    // Parenthesise elements: in a Nix list, `f x` would be two elements.
    return '[\n' + v.map((x: NixValue) => pad + wrap(x, indent + 1)).join('\n') + '\n' + end + ']'
  }
  const entries = Object.entries(v as Record<string, NixValue | undefined>).filter((e): e is [string, NixValue] => e[1] !== undefined)
  if (entries.length === 0) return '{ }'
  return '{\n' + entries.map(([k, x]) => `${pad}${nixAttrName(k)} = ${toNix(x, indent + 1)};`).join('\n') + '\n' + end + '}'
}

function wrap (x: NixValue, indent: number): string {
  const s = toNix(x, indent)
  return isRaw(x) && !/^[A-Za-z0-9_.]+$/.test(s) ? `(${s})` : s
}
