// The executor: observes the host (or a network namespace), runs the plans of
// plan.ts, and keeps VXLAN flood lists current. One operation at a time per
// host, so two VMs joining one network never both try to create its bridge.
import { execFile } from 'node:child_process'
import type { NetworkRecord } from '../../protocols/model.ts'
import { silentLogger, type Logger } from '../log.ts'
import { NetError } from './errors.ts'
import { macFor, OUR_PREFIX, tapName } from './names.ts'
import { parseFloodList, parseLinks, type HostLinks } from './observe.ts'
import {
  hostNetwork, planEnsureNetwork, planEnsureTap, planPeers, planRemoveNetwork, planRemoveTap,
  type HostNetConfig, type HostNetwork, type NetCommand
} from './plan.ts'

/** Runs one command and returns its stdout; throws NetError('CommandFailed') on failure. */
export type CommandRunner = (argv: NetCommand) => Promise<string>

export interface HostNetOptions {
  /** the LAN interface VLAN sub-interfaces hang off */
  uplink?: string | null
  /** this host's underlay address (the VXLAN source), or how to find it when needed */
  underlayIp?: string | null | (() => string | null)
  /** work inside this network namespace (`ip -n NS`, `bridge -n NS`): tests, and hosts that keep guests apart */
  netns?: string
  run?: CommandRunner
  log?: Logger
  /** called with each mutating command before it runs (tests, audit) */
  onCommand?: (argv: NetCommand) => void
}

export interface VmNic {
  tap: string
  mac: string
  bridge: string
  network: string
}

const CMD_TIMEOUT_MS = 10_000

export function execRunner (netns?: string): CommandRunner {
  return async (argv) => {
    const [bin, ...rest] = argv
    if (bin !== 'ip' && bin !== 'bridge') throw new NetError('InvalidSpec', `not a networking command: ${argv.join(' ')}`)
    const args = netns != null ? ['-n', netns, ...rest] : [...rest]
    return await new Promise<string>((resolve, reject) => {
      execFile(bin, args, { timeout: CMD_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        if (err == null) { resolve(stdout); return }
        reject(new NetError('CommandFailed', `${bin} ${args.join(' ')}: ${stderr.trim() || err.message}`))
      })
    })
  }
}

export class HostNet {
  readonly netns: string | undefined
  private readonly uplink: string | null
  private readonly underlay: () => string | null
  private readonly run: CommandRunner
  private readonly log: Logger
  private readonly onCommand: ((argv: NetCommand) => void) | undefined
  private queue: Promise<unknown> = Promise.resolve()

  constructor (opts: HostNetOptions = {}) {
    this.netns = opts.netns
    this.uplink = opts.uplink ?? null
    const u = opts.underlayIp
    this.underlay = typeof u === 'function' ? u : () => u ?? null
    this.run = opts.run ?? execRunner(opts.netns)
    this.log = (opts.log ?? silentLogger).child({ component: 'net-host', ...(opts.netns != null ? { netns: opts.netns } : {}) })
    this.onCommand = opts.onCommand
  }

  /** What this host needs for a network (pure; throws when the host cannot carry it). */
  plan (rec: Pick<NetworkRecord, 'name' | 'kind'>, peers: readonly string[] = []): HostNetwork {
    const cfg: HostNetConfig = { uplink: this.uplink, underlayIp: this.underlay() }
    return hostNetwork(rec, cfg, peers)
  }

  async links (): Promise<HostLinks> {
    return parseLinks(await this.run(['ip', '-j', '-d', 'link', 'show']))
  }

  /** Names of the interfaces Blixard made (prefix blx): what must be gone after cleanup. */
  async ourLinks (): Promise<string[]> {
    return [...(await this.links()).keys()].filter((n) => n.startsWith(OUR_PREFIX)).sort()
  }

  /** Bridge, VLAN or VXLAN device, and the VXLAN flood list; returns the commands it ran. */
  async ensureNetwork (rec: Pick<NetworkRecord, 'name' | 'kind'>, peers: readonly string[] = []): Promise<{ net: HostNetwork, commands: NetCommand[] }> {
    const net = this.plan(rec, peers)
    return await this.serial(async () => {
      const commands = await this.apply(planEnsureNetwork(net, await this.links()))
      if (net.kind === 'vxlan') commands.push(...await this.applyPeers(net.ifname, net.peers))
      return { net, commands }
    })
  }

  /** Bring a VXLAN network's flood list to exactly these peers (the node list changed). */
  async syncPeers (rec: Pick<NetworkRecord, 'name' | 'kind'>, peers: readonly string[]): Promise<NetCommand[]> {
    const net = this.plan(rec, peers)
    if (net.kind !== 'vxlan') return []
    return await this.serial(async () => {
      if (!(await this.links()).has(net.ifname)) return []
      return await this.applyPeers(net.ifname, net.peers)
    })
  }

  async removeNetwork (rec: Pick<NetworkRecord, 'name' | 'kind'>): Promise<NetCommand[]> {
    // a removal must work even where the network could not be built (no uplink, no underlay)
    const net = safePlan(() => this.plan(rec)) ?? { kind: 'bridge' as const, network: rec.name, bridge: this.plan({ name: rec.name, kind: { type: 'bridge' } }).bridge }
    return await this.serial(async () => await this.apply(planRemoveNetwork(net, await this.links())))
  }

  /** The TAP of a VM's index-th NIC, on the network's bridge (the network must exist here). */
  async ensureTap (vmId: string, index: number, rec: Pick<NetworkRecord, 'name' | 'kind'>): Promise<VmNic> {
    const tap = tapName(vmId, index)
    const bridge = this.plan({ name: rec.name, kind: { type: 'bridge' } }).bridge
    await this.serial(async () => {
      const links = await this.links()
      if (!links.has(bridge)) throw new NetError('Unavailable', `network ${rec.name} has no bridge ${bridge} on this host yet`)
      await this.apply(planEnsureTap(tap, bridge, links))
    })
    return { tap, mac: macFor(vmId, index), bridge, network: rec.name }
  }

  async removeTap (tap: string): Promise<NetCommand[]> {
    return await this.serial(async () => await this.apply(planRemoveTap(tap, await this.links())))
  }

  /** Deletes one interface if present (orphans of networks deleted while this host was away). */
  async removeLink (name: string): Promise<NetCommand[]> {
    return await this.serial(async () => await this.apply((await this.links()).has(name) ? [['ip', 'link', 'del', name]] : []))
  }

  /** For QemuDriver's `network` option: cleanup() of a VM removes its TAPs. */
  driverHook (): { removeTap: (tap: string, vmId: string) => Promise<void> } {
    return { removeTap: async (tap) => { await this.removeTap(tap) } }
  }

  private async applyPeers (ifname: string, want: readonly string[]): Promise<NetCommand[]> {
    const have = parseFloodList(await this.run(['bridge', '-j', 'fdb', 'show', 'dev', ifname]))
    return await this.apply(planPeers(ifname, want, have))
  }

  private async apply (cmds: NetCommand[]): Promise<NetCommand[]> {
    for (const c of cmds) {
      this.onCommand?.(c)
      this.log.info('net command', { cmd: c.join(' ') })
      await this.run(c)
    }
    return cmds
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return await run
  }
}

function safePlan (fn: () => HostNetwork): HostNetwork | null {
  try { return fn() } catch { return null }
}
