// A test network of namespaces, never the host's own: a "switch" namespace holds a bridge, and
// each node (or client) namespace joins it through a veth pair (its end is eth0 in the namespace,
// the switch end is the port). Nothing is routed out: the switch has no uplink. A port set down
// cuts that namespace off (the partition tests, the chaos harness). Used by the mDNS test, the HA
// partition test and the Jepsen-style chaos run. Needs root and `ip netns`.
import { execFileSync } from 'node:child_process'

export const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

export class NetnsSwitch {
  /** the switch namespace */
  readonly sw: string
  private readonly spaces: string[] = []
  private readonly rootLinks: string[] = []

  /** `tag` prefixes every namespace (make it unique per process); `subnet` is the /24's first three octets */
  constructor (readonly tag: string, readonly subnet: string) {
    this.sw = `${tag}sw`
  }

  addr (host: number): string { return `${this.subnet}.${host}` }

  /** Creates the switch (after removing one a crashed earlier run of this tag left). */
  up (): void {
    this.teardown()
    ip('netns', 'add', this.sw)
    ip('-n', this.sw, 'link', 'set', 'lo', 'up')
    ip('-n', this.sw, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', this.sw, 'link', 'set', 'br0', 'up')
  }

  /** A new namespace `ns` on switch port `port`, eth0 = subnet.host/24; multicast routed to eth0 for mDNS. */
  attach (ns: string, port: string, host: number, o: { multicast?: boolean } = {}): void {
    try { ip('netns', 'del', ns) } catch { /* none left by an earlier run */ }
    ip('netns', 'add', ns)
    this.spaces.push(ns)
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    this.plug(ns, port, host, 'eth0')
    // without it mDNS fails silently
    if (o.multicast === true) ip('-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0')
  }

  /**
   * A namespace another switch made (and tears down) joins this one too, as link `ifname`: a second
   * network, so that one can be cut while the other stays (the HA test's storage network).
   */
  join (ns: string, port: string, host: number, ifname: string): void {
    this.plug(ns, port, host, ifname)
  }

  private plug (ns: string, port: string, host: number, ifname: string): void {
    ip('-n', this.sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns)
    ip('-n', this.sw, 'link', 'set', port, 'master', 'br0')
    ip('-n', this.sw, 'link', 'set', port, 'up')
    ip('-n', ns, 'addr', 'add', `${this.addr(host)}/24`, 'dev', ifname)
    ip('-n', ns, 'link', 'set', ifname, 'up')
  }

  /** The test process's own port on the switch: link `link` in the host namespace with subnet.host/24. */
  attachRoot (link: string, host: number): void {
    ip('link', 'add', link, 'type', 'veth', 'peer', 'name', 'r0', 'netns', this.sw)
    this.rootLinks.push(link)
    ip('-n', this.sw, 'link', 'set', 'r0', 'master', 'br0')
    ip('-n', this.sw, 'link', 'set', 'r0', 'up')
    ip('addr', 'add', `${this.addr(host)}/24`, 'dev', link)
    ip('link', 'set', link, 'up')
  }

  /** Cuts a namespace off (its switch port down), or heals it. */
  setPort (port: string, up: boolean): void {
    ip('-n', this.sw, 'link', 'set', port, up ? 'up' : 'down')
  }

  /** Removes the namespaces and root links this switch made. Idempotent (also at process exit). */
  teardown (): void {
    for (const ns of [...this.spaces, this.sw]) { try { ip('netns', 'del', ns) } catch { /* not created */ } }
    this.spaces.length = 0
    for (const l of this.rootLinks) { try { ip('link', 'del', l) } catch { /* gone with the switch */ } }
    this.rootLinks.length = 0
  }
}
