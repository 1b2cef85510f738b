// The host side of a VM, built by this node before its guest starts: an IP from each
// network's subnet allocated through Raft (AllocateIp: no two VMs get one address), the
// network's bridge (and VLAN or VXLAN device) on this host, a TAP per NIC, and an RBD
// drive per volume for QEMU's own rbd driver. reconcile() keeps the host's networks in
// step with the replicated state: VXLAN flood lists follow the node list, and networks
// deleted from Raft lose their devices here (those this process built: a bridge left by
// a previous run of the daemon stays until the network is used and deleted again).
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { NetworkRecord, VmRecord } from '../protocols/model.ts'
import { parseCidr } from '../protocols/command-schema.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { HostNet } from './net-host/host-net.ts'
import { bridgeName } from './net-host/names.ts'
import { underlayPeers } from './net-host/peers.ts'
import type { CephSettings } from './ceph-env.ts'
import type { DriveSpec, NicSpec } from './qemu/cmdline.ts'
import type { HostBindings } from './qemu/launch-spec.ts'
import { silentLogger, type Logger } from './log.ts'
import { BlixardError } from '../protocols/errors.ts'

export interface HostResourcesDeps {
  nodeId: string
  sm: StateMachine
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  net: HostNet
  ceph: CephSettings | null
  /** fences a volume's previous holder before this host opens it (RbdClient.fence); null: no fencing */
  fence?: ((pool: string, image: string) => Promise<string[]>) | null
  log?: Logger
  now?: () => number
}

/** A network already set up here is checked again (devices repaired) this often. */
const RECHECK_MS = 30_000

export class HostResources {
  private readonly log: Logger
  /** bridges this node built: only those are removed as orphans, never another cluster's
   * sharing the host (test clusters, a demo next to a real node) */
  private readonly built = new Set<string>()
  /** networks set up on this host: what they were set up from, and when last checked */
  private readonly ensured = new Map<string, { sig: string, at: number }>()
  constructor (private readonly d: HostResourcesDeps) {
    this.log = (d.log ?? silentLogger).child({ component: 'host-resources' })
  }

  private peers (): string[] {
    return underlayPeers(this.d.sm.listNodes(), this.d.nodeId)
  }

  /** Our address on a network: the one Raft already holds for the VM, else a new allocation. */
  private async address (rec: NetworkRecord, vmId: string): Promise<string> {
    const held = Object.entries(rec.allocations).find(([, vm]) => vm === vmId)
    if (held != null) return held[0]
    const r = await this.d.propose({ cmd: { type: 'AllocateIp', network: rec.name, vm: vmId }, at: (this.d.now ?? Date.now)() })
    if (!r.ok) throw new BlixardError(r.error.kind, `address on network ${rec.name}: ${r.error.message}`)
    return (r.value as { ip: string }).ip
  }

  /** TAPs, addresses and drives for a VM about to start here. The tiny guest configures eth0
   * only: it gets the first network's address and gateway. `fence: false` for a live migration's
   * target: the source holds the images and hands them over at switchover, it is not stale. */
  async bindings (vm: VmRecord, opts: { fence?: boolean } = {}): Promise<Omit<HostBindings, 'tinyGuest'>> {
    const nics: NicSpec[] = []
    let ip: string | undefined
    let gw: string | undefined
    for (const [i, name] of vm.spec.networks.entries()) {
      const rec = this.d.sm.getNetwork(name)
      if (rec == null) throw new BlixardError('NotFound', `network ${name} not found`)
      const addr = await this.address(rec, vm.id)
      this.built.add(bridgeName(rec.name))
      await this.d.net.ensureNetwork(rec, this.peers())
      const nic = await this.d.net.ensureTap(vm.id, i, rec)
      nics.push({ tap: nic.tap, mac: nic.mac })
      if (i === 0) {
        ip = `${addr}/${parseCidr(rec.subnet)?.prefix ?? 24}`
        if (rec.gateway != null) gw = rec.gateway
      }
    }
    const drives: DriveSpec[] = []
    for (const name of vm.spec.volumes) {
      const v = this.d.sm.getVolume(name)
      if (v == null) throw new BlixardError('NotFound', `volume ${name} not found`)
      if (this.d.ceph == null) throw new BlixardError('Unavailable', `VM ${vm.spec.name} needs volume ${name} but this host has no Ceph client: set ceph.conf in its config ([ceph] conf = ..., --ceph-conf or BLIXARD_CEPH_CONF)`)
      // Raft assigned the VM here, so any other holder of the image is a stale host: cut it
      // off (blocklist, lock broken) before our qemu opens it, so it can never write again
      const fenced = opts.fence === false ? [] : await this.d.fence?.(v.pool, v.name) ?? []
      if (fenced.length > 0) this.log.warn('fenced the previous holder of a volume', { vmId: vm.id, volume: v.name, clients: fenced })
      drives.push({ kind: 'rbd', pool: v.pool, image: v.name, conf: this.d.ceph.conf, ...(this.d.ceph.id != null ? { id: this.d.ceph.id } : {}) })
    }
    return { nics, drives, ...(ip != null ? { ip } : {}), ...(gw != null ? { gw } : {}) }
  }

  /** Networks used by VMs assigned here are built with current peers; bridges of networks
   * that no longer exist in Raft are removed with their VLAN/VXLAN ports. */
  async reconcile (): Promise<void> {
    const used = new Set(this.d.sm.listVms({ node: this.d.nodeId }).flatMap((v) => v.spec.networks))
    const all = this.d.sm.listNetworks()
    const peers = this.peers()
    const now = (this.d.now ?? Date.now)()
    for (const rec of all) {
      if (!used.has(rec.name)) continue
      this.built.add(bridgeName(rec.name))
      // `ip` runs only when the network or its peers changed, or to repair every RECHECK_MS:
      // a process spawn per network per second showed in an idle node's CPU
      const sig = JSON.stringify([rec, peers])
      const last = this.ensured.get(rec.name)
      if (last != null && last.sig === sig && now - last.at < RECHECK_MS) continue
      try {
        await this.d.net.ensureNetwork(rec, peers)
        this.ensured.set(rec.name, { sig, at: now })
      } catch (err) { this.log.warn('network not ready on this host', { network: rec.name, err }) }
    }
    const expected = new Set(all.map((n) => bridgeName(n.name)))
    for (const name of this.ensured.keys()) if (!expected.has(bridgeName(name))) this.ensured.delete(name)
    // only a bridge this process built whose network is gone needs the host's link list
    if (![...this.built].some((b) => !expected.has(b))) return
    const links = await this.d.net.links()
    for (const l of links.values()) {
      if (l.kind !== 'bridge' || !this.built.has(l.name) || expected.has(l.name)) continue
      this.log.info('removing the devices of a deleted network', { bridge: l.name })
      for (const port of links.values()) {
        if (port.master === l.name && (port.kind === 'vxlan' || port.kind === 'vlan')) await this.d.net.removeLink(port.name)
      }
      await this.d.net.removeLink(l.name)
      this.built.delete(l.name)
    }
    for (const b of this.built) if (!expected.has(b)) this.built.delete(b) // already gone from the host
  }
}
