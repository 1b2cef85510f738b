// The VXLAN remote endpoints from the replicated node list: one underlay IPv4
// address per other node, taken from its advertised libp2p multiaddrs.
import type { NodeRecord } from '../../protocols/model.ts'

function ip4s (addrs: readonly string[]): string[] {
  const out: string[] = []
  for (const a of addrs) {
    const m = /^\/ip4\/(\d{1,3}(?:\.\d{1,3}){3})(?:\/|$)/.exec(a)
    if (m != null && !m[1].startsWith('127.') && m[1] !== '0.0.0.0') out.push(m[1])
  }
  return out
}

/** Other nodes' underlay addresses (the first fitting one per node), sorted.
 * inSubnet, when given, picks the address on the underlay among several. Nodes marked down
 * are kept: their VMs may still run, and a stale flood entry only costs a copy per packet. */
export function underlayPeers (nodes: readonly NodeRecord[], selfId: string, inSubnet?: (ip: string) => boolean): string[] {
  const out = new Set<string>()
  for (const n of nodes) {
    if (n.id === selfId) continue
    const ip = ip4s(n.addrs).find((a) => inSubnet == null || inSubnet(a))
    if (ip != null) out.add(ip)
  }
  return [...out].sort()
}

/** This node's own underlay address: its first advertised non-loopback IPv4. */
export function ownUnderlayIp (nodes: readonly NodeRecord[], selfId: string): string | null {
  const me = nodes.find((n) => n.id === selfId)
  return me == null ? null : ip4s(me.addrs)[0] ?? null
}
