// What the host has now, parsed from `ip -j -d link show` and `bridge -j fdb show`:
// the planner compares it with what the networks need.

export type LinkKind = 'bridge' | 'vxlan' | 'vlan' | 'tun' | 'veth' | 'other'

export interface LinkState {
  name: string
  kind: LinkKind
  /** administratively up (the UP flag; a TAP nobody opened is up but has no carrier) */
  up: boolean
  master: string | null
  vxlan?: { vni: number, local: string | null, port: number }
  vlan?: { vid: number, link: string | null }
}

export type HostLinks = Map<string, LinkState>

function rec (v: unknown): Record<string, unknown> | null {
  return v != null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : null
}

const KINDS: readonly LinkKind[] = ['bridge', 'vxlan', 'vlan', 'tun', 'veth']

/** Parses `ip -j -d link show` output; entries it cannot read are skipped. */
export function parseLinks (json: string): HostLinks {
  const out: HostLinks = new Map()
  const raw: unknown = json.trim() === '' ? [] : JSON.parse(json)
  if (!Array.isArray(raw)) return out
  for (const e of raw) {
    const o = rec(e)
    if (o == null || typeof o.ifname !== 'string') continue
    const info = rec(o.linkinfo)
    const k = typeof info?.info_kind === 'string' ? info.info_kind : ''
    const kind: LinkKind = (KINDS as readonly string[]).includes(k) ? k as LinkKind : 'other'
    const flags = Array.isArray(o.flags) ? o.flags : []
    const l: LinkState = { name: o.ifname, kind, up: flags.includes('UP'), master: typeof o.master === 'string' ? o.master : null }
    const data = rec(info?.info_data)
    if (kind === 'vxlan' && data != null) {
      l.vxlan = { vni: Number(data.id), local: typeof data.local === 'string' ? data.local : null, port: Number(data.port) }
    }
    if (kind === 'vlan' && data != null) {
      l.vlan = { vid: Number(data.id), link: typeof o.link === 'string' ? o.link : null }
    }
    out.set(l.name, l)
  }
  return out
}

/** The remote endpoints of a VXLAN device: destinations of its all-zeros (flood) fdb entries. */
export function parseFloodList (json: string): string[] {
  const raw: unknown = json.trim() === '' ? [] : JSON.parse(json)
  if (!Array.isArray(raw)) return []
  const out = new Set<string>()
  for (const e of raw) {
    const o = rec(e)
    if (o != null && o.mac === '00:00:00:00:00:00' && typeof o.dst === 'string') out.add(o.dst)
  }
  return [...out].sort()
}
