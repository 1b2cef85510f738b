// Pure planning: from a replicated network record and what the host has now
// (observe.ts) to the exact ip/bridge commands that make the host match.
// Each plan is empty when the host already matches: that is the idempotency.
import type { NetworkRecord } from '../../protocols/model.ts'
import { parseIpv4 } from '../../protocols/command-schema.ts'
import { NetError } from './errors.ts'
import type { HostLinks, LinkState } from './observe.ts'
import { VXLAN_PORT, bridgeName, checkIfName, checkVlan, checkVni, vlanIfName, vxlanName } from './names.ts'

/** One command: argv starting with `ip` or `bridge` (the executor adds `-n NS` when told). */
export type NetCommand = readonly string[]

/** What this host needs for one network. */
export type HostNetwork =
  | { kind: 'bridge', network: string, bridge: string }
  | { kind: 'vlan', network: string, bridge: string, uplink: string, vid: number, ifname: string }
  | { kind: 'vxlan', network: string, bridge: string, vni: number, ifname: string, local: string, port: number, peers: string[] }

/** Host facts the replicated record does not hold. */
export interface HostNetConfig {
  /** the LAN interface VLAN sub-interfaces hang off */
  uplink?: string | null
  /** this host's underlay address: the VXLAN source */
  underlayIp?: string | null
}

/** The one IPv4 rule (protocols/command-schema.ts parseIpv4): a dotted quad, each part 0-255
 * without a leading zero, since `010` reads as octal to some tools and as ten to others. */
export function checkIpv4 (ip: string, what: string): string {
  if (parseIpv4(ip) === null) throw new NetError('InvalidSpec', `${what} is not an IPv4 address: ${JSON.stringify(ip)}`)
  return ip
}

export function hostNetwork (rec: Pick<NetworkRecord, 'name' | 'kind'>, cfg: HostNetConfig, peers: readonly string[] = []): HostNetwork {
  const bridge = bridgeName(rec.name)
  switch (rec.kind.type) {
    case 'bridge':
      return { kind: 'bridge', network: rec.name, bridge }
    case 'vlan': {
      if (cfg.uplink == null || cfg.uplink === '') throw new NetError('Unavailable', `network ${rec.name} is VLAN ${rec.kind.vlan}: this host has no uplink interface configured`)
      const vid = checkVlan(rec.kind.vlan)
      return { kind: 'vlan', network: rec.name, bridge, uplink: checkIfName(cfg.uplink), vid, ifname: vlanIfName(cfg.uplink, vid) }
    }
    case 'vxlan': {
      if (cfg.underlayIp == null || cfg.underlayIp === '') throw new NetError('Unavailable', `network ${rec.name} is VXLAN ${rec.kind.vni}: this host has no underlay address configured`)
      const local = checkIpv4(cfg.underlayIp, 'underlay address')
      const vni = checkVni(rec.kind.vni)
      const want = [...new Set(peers.map((p) => checkIpv4(p, 'peer')))].filter((p) => p !== local).sort()
      return { kind: 'vxlan', network: rec.name, bridge, vni, ifname: vxlanName(vni), local, port: VXLAN_PORT, peers: want }
    }
  }
}

function expectKind (l: LinkState, kind: LinkState['kind']): void {
  if (l.kind !== kind) throw new NetError('Conflict', `interface ${l.name} exists but is a ${l.kind}, not a ${kind}`)
}

/** Enslave and bring up an existing (or about to exist) port. */
function portCommands (name: string, bridge: string, l: LinkState | undefined): NetCommand[] {
  const out: NetCommand[] = []
  if (l?.master !== bridge) out.push(['ip', 'link', 'set', name, 'master', bridge])
  if (l?.up !== true) out.push(['ip', 'link', 'set', name, 'up'])
  return out
}

/** The bridge, and the VLAN sub-interface or VXLAN device attached to it (peers: planPeers). */
export function planEnsureNetwork (net: HostNetwork, links: HostLinks): NetCommand[] {
  const out: NetCommand[] = []
  const br = links.get(net.bridge)
  if (br == null) out.push(['ip', 'link', 'add', net.bridge, 'type', 'bridge'])
  else expectKind(br, 'bridge')
  if (br?.up !== true) out.push(['ip', 'link', 'set', net.bridge, 'up'])
  if (net.kind === 'vlan') {
    const v = links.get(net.ifname)
    if (v == null) {
      if (!links.has(net.uplink)) throw new NetError('Unavailable', `uplink ${net.uplink} does not exist on this host`)
      out.push(['ip', 'link', 'add', 'link', net.uplink, 'name', net.ifname, 'type', 'vlan', 'id', String(net.vid)])
    } else {
      expectKind(v, 'vlan')
      if (v.vlan != null && v.vlan.vid !== net.vid) throw new NetError('Conflict', `${v.name} is VLAN ${v.vlan.vid}, not ${net.vid}`)
    }
    out.push(...portCommands(net.ifname, net.bridge, v))
  }
  if (net.kind === 'vxlan') {
    let v = links.get(net.ifname)
    if (v != null) {
      expectKind(v, 'vxlan')
      // vni, source and port cannot change on a live device: replace it
      if (v.vxlan == null || v.vxlan.vni !== net.vni || v.vxlan.local !== net.local || v.vxlan.port !== net.port) {
        out.push(['ip', 'link', 'del', net.ifname])
        v = undefined
      }
    }
    if (v == null) out.push(['ip', 'link', 'add', net.ifname, 'type', 'vxlan', 'id', String(net.vni), 'local', net.local, 'dstport', String(net.port)])
    out.push(...portCommands(net.ifname, net.bridge, v))
  }
  return out
}

/** The flood list of a VXLAN device: head-end replication to every other host. */
export function planPeers (ifname: string, want: readonly string[], have: readonly string[]): NetCommand[] {
  const out: NetCommand[] = []
  for (const ip of want) if (!have.includes(ip)) out.push(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', ifname, 'dst', ip])
  for (const ip of have) if (!want.includes(ip)) out.push(['bridge', 'fdb', 'del', '00:00:00:00:00:00', 'dev', ifname, 'dst', ip])
  return out
}

/** Deletes what planEnsureNetwork made; TAPs still attached are detached by the kernel. */
export function planRemoveNetwork (net: HostNetwork, links: HostLinks): NetCommand[] {
  const out: NetCommand[] = []
  if (net.kind !== 'bridge' && links.has(net.ifname)) out.push(['ip', 'link', 'del', net.ifname])
  if (links.has(net.bridge)) out.push(['ip', 'link', 'del', net.bridge])
  return out
}

export function planEnsureTap (tap: string, bridge: string, links: HostLinks): NetCommand[] {
  checkIfName(tap)
  const t = links.get(tap)
  const out: NetCommand[] = []
  if (t == null) out.push(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
  else expectKind(t, 'tun')
  out.push(...portCommands(tap, bridge, t))
  return out
}

export function planRemoveTap (tap: string, links: HostLinks): NetCommand[] {
  checkIfName(tap)
  return links.has(tap) ? [['ip', 'link', 'del', tap]] : []
}
