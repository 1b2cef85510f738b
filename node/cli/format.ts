// Human output of the CLI: aligned tables (kubectl style: upper-case headers, two spaces) and
// small value formatters. Every command also has --json, which bypasses all of this.

export function table (headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c == null || c === '' ? '-' : String(c))))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(headers.map((h) => h.toUpperCase())), ...cells.map(line)].join('\n')
}

export function keyValues (pairs: Array<[string, string | number | null | undefined]>): string {
  const w = Math.max(...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${(k + ':').padEnd(w + 1)}  ${v == null || v === '' ? '-' : String(v)}`).join('\n')
}

export function mib (n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}G` : `${n}M`
}

export function ago (ms: number): string {
  if (ms < 0) return 'now'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.round(s / 60)
  if (m < 60) return `${m}m`
  const h = Math.round(m / 60)
  return h < 48 ? `${h}h` : `${Math.round(h / 24)}d`
}

export function shortId (id: string | null | undefined, n = 12): string {
  if (id == null) return '-'
  return id.length > n ? id.slice(-n) : id
}

export function pct (x: number | null | undefined): string {
  return x == null ? '-' : `${Math.round(x)}%`
}


/** A libp2p Ed25519 peer id inside free text (a VM's reason written by the state machine). */
const PEER_ID_IN_TEXT = /12D3KooW[1-9A-HJ-NP-Za-km-z]{44}/g

/** `text` with node ids replaced by node names (people read names; `-o wide`/--json keep ids). */
export function named (text: string, names: ReadonlyMap<string, string>): string {
  return text.replace(PEER_ID_IN_TEXT, (id) => names.get(id) ?? shortId(id))
}
