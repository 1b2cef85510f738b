// A small, strict argument parser: positionals plus --flag VALUE / --flag=VALUE /
// boolean --flag, with the set of flags declared per command so a typo is an
// error that names the flag (kubectl style), never silently ignored.

import { formatMiB } from '../../protocols/vm-limits.ts'
import type { VmImage } from '../../protocols/images.ts'

export interface FlagSpec {
  /** takes a value (otherwise boolean) */
  value?: boolean
  /** may be given several times (values collected) */
  repeat?: boolean
  short?: string
  /** what it does, for `help` (one line) */
  help?: string
  /** the value's placeholder in help (N, SIZE, NODE); default VALUE */
  arg?: string
  /** the default, as help shows it, when there is one worth saying */
  default?: string
}

export class UsageError extends Error {
  constructor (message: string) { super(message); this.name = 'UsageError' }
}

export interface Parsed {
  positionals: string[]
  flags: Map<string, string[]>
}

export function parseArgs (argv: string[], specs: Record<string, FlagSpec>): Parsed {
  const positionals: string[] = []
  const flags = new Map<string, string[]>()
  const byShort = new Map(Object.entries(specs).filter(([, s]) => s.short != null).map(([k, s]) => [s.short!, k]))
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break }
    let name: string | null = null
    let inline: string | undefined
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2)
      inline = eq >= 0 ? a.slice(eq + 1) : undefined
    } else if (a.startsWith('-') && a.length === 2 && a !== '-') {
      name = byShort.get(a.slice(1)) ?? null
      if (name == null) throw new UsageError(`unknown flag ${a}`)
    }
    if (name == null) { positionals.push(a); continue }
    let spec = specs[name]
    let negated = false
    if (spec == null && name.startsWith('no-') && specs[name.slice(3)] != null && specs[name.slice(3)].value !== true) { spec = specs[name.slice(3)]; name = name.slice(3); negated = true }
    if (spec == null) throw new UsageError(`unknown flag --${name}`)
    let v: string
    if (spec.value === true) {
      if (inline !== undefined) v = inline
      else {
        if (i + 1 >= argv.length) throw new UsageError(`flag --${name} needs a value`)
        v = argv[++i]
      }
    } else {
      v = negated ? 'false' : (inline ?? 'true')
      if (v !== 'true' && v !== 'false') throw new UsageError(`flag --${name} takes no value (or =true/=false)`)
    }
    const prev = flags.get(name)
    if (prev != null && spec.repeat !== true) throw new UsageError(`flag --${name} given twice`)
    flags.set(name, [...(prev ?? []), v])
  }
  return { positionals, flags }
}

export function flag (p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name)
  return v?.[v.length - 1]
}

/** The image `--image NAME` (only the built-in "tiny") or `--flake REF` names; tiny when neither. */
export function imageFlags (p: Parsed): VmImage {
  const image = flag(p, 'image')
  const flake = flag(p, 'flake')
  if (image != null && flake != null) throw new UsageError('give --image or --flake, not both')
  if (flake != null) return { kind: 'flake', ref: flake }
  if (image != null && image !== 'tiny') throw new UsageError(`--image ${image}: only "tiny" is built in; use --flake REF for your own guest`)
  return { kind: 'tiny' }
}

export function bool (p: Parsed, name: string, dflt = false): boolean {
  const v = flag(p, name)
  return v === undefined ? dflt : v === 'true'
}

export function int (p: Parsed, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = flag(p, name)
  if (v === undefined) return dflt
  if (!/^-?\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got "${v}"`)
  const n = Number(v)
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`)
  return n
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A duration flag (90s, 10m, 2h, 1d, 500ms) in milliseconds, the error naming the flag. */
export function durationMs (p: Parsed, name: string): number | undefined {
  const v = flag(p, name)
  if (v === undefined) return undefined
  const m = DURATION.exec(v.trim())
  if (m == null) throw new UsageError(`--${name} "${v}" is not a duration: use e.g. 90s, 10m, 2h or 1d`)
  return Math.round(Number(m[1]) * DURATION_UNIT_MS[m[2]])
}

const SIZE = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT])?(?:i?[bB])?$/
const SIZE_UNIT_MIB: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 }

/** A size flag (128M, 2G, 1T; a bare number is MiB) checked against [min, max] MiB, the error naming
 * the flag the user typed and the bounds in the same units they write. */
export function sizeMiB (p: Parsed, name: string, dflt: number, min: number, max: number): number {
  const v = flag(p, name)
  if (v === undefined) return dflt
  const m = SIZE.exec(v.trim())
  if (m == null) throw new UsageError(`--${name} "${v}" is not a size: use e.g. 128M, 2G or 1T`)
  const mib = Math.round(Number(m[1]) * SIZE_UNIT_MIB[(m[2] ?? 'M').toUpperCase()])
  if (mib < min) throw new UsageError(`--${name} ${v} is too small: at least ${formatMiB(min)}`)
  if (mib > max) throw new UsageError(`--${name} ${v} is too large: at most ${formatMiB(max)}`)
  return mib
}
