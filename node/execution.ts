// The execution block of a node: what places and runs guests on this host. The scheduler (placement
// decisions, on the leader), host networking and resources (bridges, VLANs, VXLAN, Ceph images),
// the hypervisor (the QEMU driver, or microvm.nix on NixOS hosts: node/hypervisor/choose.ts), HA
// leases (with the fence watchdog), and the agent that reconciles guests. Built in the order their
// safety needs: the fence watchdog is armed before the agent may adopt or start a guest.
// node/daemon.ts wires it to Raft and libp2p through ExecutionDeps.
import { Rebalancer, rebalancePlacementConfig } from './rebalancer.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { NodeConfig } from './config.ts'
import type { Logger } from './log.ts'
import type { NodeMetrics } from './metrics.ts'
import type { RpcClient } from './net/rpc.ts'
import { Scheduler } from './scheduler.ts'
import type { LoadBoard } from './scheduler.ts'
import { HostNet } from './net-host/host-net.ts'
import { ownUnderlayIp } from './net-host/peers.ts'
import { HostResources } from './host-resources.ts'
import { cephSettings, rbdClientFor } from './ceph-env.ts'
import { QemuDriver } from './qemu/driver.ts'
import { QemuHypervisor } from './hypervisor/qemu.ts'
import { MicrovmHypervisor, hostExecutor } from './hypervisor/microvm.ts'
import { chooseHypervisor, hypervisorSettingFromEnv, probeHostCapabilities } from './hypervisor/choose.ts'
import type { Hypervisor } from './hypervisor/types.ts'
import { HaService } from './ha/service.ts'
import { Agent } from './agent.ts'
import { MigrationService, maxBandwidthFromEnv, multifdFromEnv, transportFromEnv } from './migration/service.ts'
import { migrationAddress } from './migration/tls.ts'
import type { BlixardHost } from './net/host.ts'
import { VolumeReconciler } from './volumes/reconciler.ts'
import { SnapshotService } from './snapshots/service.ts'
import { WarmPoolService } from './pools/service.ts'

export interface ExecutionDeps {
  id: string
  cfg: NodeConfig
  sm: StateMachine
  board: LoadBoard
  isLeader: () => boolean
  leaderId: () => string | null
  /** a write from this node, wherever the leader is (node/write-path.ts) */
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  client: (peer: string) => Promise<RpcClient>
  /** a line for the cluster's event log */
  note: (text: string) => void
  log: Logger
  metrics: NodeMetrics
  /** the libp2p host (live migration streams) */
  host: BlixardHost
}

export interface Execution {
  scheduler: Scheduler
  /** the leader's rebalancer (acts only while leading); null when config rebalance.mode is off */
  rebalancer: Rebalancer | null
  /** what runs this host's guests: the agent's only way to them */
  hypervisor: Hypervisor
  /** the QEMU driver: the hypervisor of hosts without microvm.nix, and live migration's engine */
  qemu: QemuDriver
  ha: HaService
  agent: Agent
  migrations: MigrationService
  /** VM memory snapshots this host holds: saves, restores, deletes (node/snapshots/service.ts) */
  snapshots: SnapshotService
  /** warm pool guests this host keeps booted and paused for matching creates (node/pools/service.ts) */
  pools: WarmPoolService
  /** carries out volume changes when this node is the volume reconciler; null without Ceph here */
  volumes: VolumeReconciler | null
  /** stops the loops; guests keep running (the next daemon re-adopts them) */
  stop: () => Promise<void>
}

export async function startExecution (d: ExecutionDeps): Promise<Execution> {
  const propose = d.propose
  const scheduler = new Scheduler({ sm: d.sm, load: d.board, isLeader: d.isLeader, propose, log: d.log.child({ part: 'scheduler' }), metrics: d.metrics })
  scheduler.start()
  // live-migration rebalancing (config rebalance.mode): by default it fills nodes that join
  const { mode } = d.cfg.rebalance
  const rebalancer = mode === 'off' ? null : new Rebalancer({ sm: d.sm, load: d.board, isLeader: d.isLeader, propose, log: d.log.child({ part: 'rebalancer' }), config: rebalancePlacementConfig(d.cfg.rebalance), mode })
  rebalancer?.start()
  // host networking: the uplink VLANs tag onto and the underlay address VXLAN tunnels start from
  const hostNet = new HostNet({
    uplink: d.cfg.network.uplink,
    underlayIp: d.cfg.network.underlayIp ?? (() => ownUnderlayIp(d.sm.listNodes(), d.id)),
    log: d.log.child({ part: 'net' })
  })
  const ceph = cephSettings(d.cfg.ceph)
  const fencer = ceph == null ? null : rbdClientFor(ceph)
  const resources = new HostResources({
    nodeId: d.id, sm: d.sm, propose, net: hostNet, ceph, log: d.log,
    fence: fencer == null ? null : async (pool, image) => await fencer.fence(pool, image)
  })
  const qemu = new QemuDriver({ dataDir: d.cfg.dataDir, qemuBinary: d.cfg.qemuBinary, accel: d.cfg.accel, network: hostNet.driverHook(), log: d.log.child({ part: 'qemu' }) })
  const choice = chooseHypervisor(hypervisorSettingFromEnv(), await probeHostCapabilities())
  d.log.info('guests run through ' + (choice.kind === 'microvm' ? 'microvm.nix' : 'the QEMU driver'), { why: choice.why })
  const hypervisor: Hypervisor = choice.kind === 'microvm'
    ? new MicrovmHypervisor({ dataDir: d.cfg.dataDir, exec: hostExecutor(), volumeSizeGiB: (_pool, image) => d.sm.getVolume(image)?.sizeGiB ?? null, log: d.log.child({ part: 'microvm' }) })
    : new QemuHypervisor(qemu, { log: d.log.child({ part: 'qemu' }) })
  let agent: Agent | null = null
  const ha = new HaService({
    self: () => d.id,
    dataDir: d.cfg.dataDir,
    sm: d.sm,
    settings: d.cfg.lease,
    isLeader: d.isLeader,
    leaderId: d.leaderId,
    propose,
    callLeader: async (leader, epoch, timeoutMs) => await (await d.client(leader)).call('internal.renewLease', { epoch }, { timeoutMs }),
    note: d.note,
    kickScheduler: () => { void scheduler.kick() },
    kickAgent: () => { agent?.kick() },
    log: d.log.child({ part: 'ha' })
  })
  await ha.start() // the fence watchdog is armed before the agent may adopt or start a guest
  // live migrations (node/migration/service.ts): the agent leaves a VM alone while one holds it
  // Live migration moves QEMUs the driver runs itself; a microvm.nix guest runs in its systemd unit,
  // so such a host takes no incoming migration (the move fails with this reason, nothing starts twice)
  const migrationHeld = (): string | null => choice.kind === 'microvm' ? 'this host runs guests through microvm.nix; live migration needs the QEMU driver' : ha.mayRun()
  const migrations = new MigrationService({ self: () => d.id, sm: d.sm, driver: qemu, host: d.host, dataDir: d.cfg.dataDir, propose, bindings: async (vm, o) => await resources.bindings(vm, o), mayRun: migrationHeld, isLeader: d.isLeader, maxBandwidth: maxBandwidthFromEnv(), transport: transportFromEnv(), multifd: multifdFromEnv(), listenAddress: () => migrationAddress(d.host.getMultiaddrs()), migrationPorts: { low: d.cfg.migration.portLow, high: d.cfg.migration.portHigh }, client: d.client, log: d.log.child({ part: 'migration' }) })
  await migrations.start()
  // memory snapshots go through the QEMU driver too; the agent leaves a guest alone while one is saved or restored
  const snapshots = new SnapshotService({
    self: () => d.id, sm: d.sm, driver: qemu, dataDir: d.cfg.dataDir, propose, log: d.log.child({ part: 'snapshots' }),
    // with Ceph here, disks are snapshotted with the memory and the state goes to the cluster's pool
    ceph: fencer == null || ceph == null ? null : { rbd: fencer, pool: ceph.pool },
    bindings: async (vm, o) => await resources.bindings(vm, o),
    unsupported: () => choice.kind === 'microvm' ? 'this host runs guests through microvm.nix; memory snapshots need the QEMU driver' : null
  })
  // warm pools: pre-booted paused guests a matching create is handed instead of a boot
  const pools = new WarmPoolService({
    nodeId: d.id, sm: d.sm, driver: qemu, mayRun: () => ha.mayRun(), log: d.log.child({ part: 'pools' }),
    unsupported: () => choice.kind === 'microvm' ? 'this host runs guests through microvm.nix; warm pools need the QEMU driver' : null
  })
  agent = new Agent({ mayRun: () => ha.mayRun(), migrating: (vmId) => migrations.holds(vmId) || snapshots.holds(vmId), claimWarm: async (vm) => await pools.claim(vm), resumeClone: async (vm, host) => { await snapshots.resumeClone(vm, host) }, makeRoom: async (vm) => { await pools.makeRoom(vm) }, nodeId: d.id, sm: d.sm, hypervisor, propose, log: d.log.child({ part: 'agent' }), resources, metrics: d.metrics })
  await agent.start()
  snapshots.start()
  pools.start()
  const started = agent
  // volumes (node/volumes/): only a node with a Ceph client can be the one that makes the images
  const volumes = fencer == null ? null : new VolumeReconciler({ self: () => d.id, sm: d.sm, rbd: fencer, propose, log: d.log.child({ part: 'volumes' }) })
  volumes?.start()
  return {
    scheduler, rebalancer, hypervisor, qemu, ha, agent: started, migrations, snapshots, pools, volumes,
    stop: async () => {
      scheduler.stop()
      snapshots.stop()
      await pools.stop()
      rebalancer?.stop()
      await volumes?.stop()
      ha.stop()
      await migrations.stop()
      await started.stop()
      await hypervisor.close()
      await qemu.close() // again for the QEMU hypervisor: closing is idempotent
    }
  }
}
