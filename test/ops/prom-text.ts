// Reads samples out of Prometheus text exposition for the tests' value checks
// (promtool is the judge of the format; this only looks values up).
export interface Sample { name: string, labels: Record<string, string>, value: number }

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function parseSamples (text: string): Sample[] {
  const out: Sample[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (m == null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_x, c: string) => c === 'n' ? '\n' : c)
    out.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return out
}

/** Samples named `name` whose labels include `match`. */
export function find (samples: Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
}

/** The sum of the samples named `name` with labels including `match`; throws when there is none. */
export function value (samples: Sample[], name: string, match: Record<string, string> = {}): number {
  const f = find(samples, name, match)
  if (f.length === 0) throw new Error(`no sample ${name}${JSON.stringify(match)}`)
  return f.reduce((a, s) => a + s.value, 0)
}
