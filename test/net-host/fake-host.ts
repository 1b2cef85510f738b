// A fake host for the executor: interprets the ip/bridge commands HostNet issues
// against an in-memory link table and answers its JSON queries like iproute2 does,
// including the VLAN path this machine's kernel cannot run (no 802.1Q).
import type { CommandRunner } from '../../node/net-host/host-net.ts'
import { NetError } from '../../node/net-host/errors.ts'

interface FakeLink { ifname: string, kind: string, up: boolean, master?: string, link?: string, data?: Record<string, unknown> }

export class FakeHost {
  readonly links = new Map<string, FakeLink>()
  readonly fdb = new Map<string, Set<string>>()
  readonly log: string[] = []

  constructor (physical: string[] = ['lo', 'eth0']) {
    for (const p of physical) this.links.set(p, { ifname: p, kind: '', up: true })
  }

  readonly run: CommandRunner = async (argv) => {
    const a = [...argv]
    const line = a.join(' ')
    const fail = (msg: string): never => { throw new NetError('CommandFailed', `${line}: ${msg}`) }
    if (a[0] === 'ip' && a[1] === '-j') {
      return JSON.stringify([...this.links.values()].map((l) => ({
        ifname: l.ifname, flags: l.up ? ['BROADCAST', 'UP'] : ['BROADCAST'], ...(l.master != null ? { master: l.master } : {}),
        ...(l.link != null ? { link: l.link } : {}),
        ...(l.kind !== '' ? { linkinfo: { info_kind: l.kind, ...(l.data != null ? { info_data: l.data } : {}) } } : {})
      })))
    }
    if (a[0] === 'bridge' && a[1] === '-j') {
      const dev = a[a.indexOf('dev') + 1]
      return JSON.stringify([...(this.fdb.get(dev) ?? [])].map((dst) => ({ mac: '00:00:00:00:00:00', dst, flags: ['self'] })))
    }
    this.log.push(line)
    if (line.startsWith('ip link add link ')) {
      // ip link add link UPLINK name NAME type vlan id VID
      const [uplink, name, vid] = [a[4], a[6], Number(a[10])]
      if (!this.links.has(uplink)) fail('Cannot find device')
      if (this.links.has(name)) fail('File exists')
      this.links.set(name, { ifname: name, kind: 'vlan', up: false, link: uplink, data: { protocol: '802.1Q', id: vid } })
    } else if (line.startsWith('ip link add ')) {
      const name = a[3]
      if (this.links.has(name)) fail('File exists')
      const kind = a[5]
      const data = kind === 'vxlan' ? { id: Number(a[7]), local: a[9], port: Number(a[11]) } : undefined
      this.links.set(name, { ifname: name, kind, up: false, ...(data != null ? { data } : {}) })
    } else if (line.startsWith('ip tuntap add dev ')) {
      if (this.links.has(a[4])) fail('File exists')
      this.links.set(a[4], { ifname: a[4], kind: 'tun', up: false })
    } else if (line.startsWith('ip link set ')) {
      const l = this.links.get(a[3]) ?? fail('Cannot find device')
      if (a[4] === 'up') l.up = true
      else if (a[4] === 'master') { if (!this.links.has(a[5])) fail('Cannot find master'); l.master = a[5] } else fail('unsupported')
    } else if (line.startsWith('ip link del ')) {
      if (!this.links.delete(a[3])) fail('Cannot find device')
      this.fdb.delete(a[3])
      for (const l of this.links.values()) if (l.master === a[3]) delete l.master
    } else if (a[0] === 'bridge' && a[2] === 'append') {
      const dev = a[5]
      if (!this.links.has(dev)) fail('Cannot find device')
      const s = this.fdb.get(dev) ?? new Set<string>()
      s.add(a[7]); this.fdb.set(dev, s)
    } else if (a[0] === 'bridge' && a[2] === 'del') {
      if (this.fdb.get(a[5])?.delete(a[7]) !== true) fail('No such entry')
    } else fail('unknown command')
    return ''
  }
}
