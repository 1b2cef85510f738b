// blixard-node: one daemon per host, the composition root. It wires the libp2p host (transport,
// RPC, load gossip) to the Raft driver over the LMDB log and state machine, and starts the loops and
// services: membership (node/membership.ts), scheduler, agent, HTTP endpoints. What those decide
// lives beside them: events (node/events.ts), the console proxy (node/console-proxy.ts), gauges
// (node/metrics-wiring.ts), own-command signing (node/own-commands.ts), write forwarding
// (node/core/forwarder.ts).
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import { RpcError } from '../protocols/rpc.ts'
import { RPC_MEMBER_MAX_CONCURRENT } from '../protocols/limits.ts'
import type { Message } from '../protocols/raft/types.ts'
import { LmdbLogStore } from '../storage/lmdb-log-store.ts'
import { LmdbKv } from '../storage/lmdb-kv.ts'
import { StateMachine } from '../storage/state-machine.ts'
import type { LoadHint } from '../placement/types.ts'
import type { NodeConfig } from './config.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { readClusterKey } from './keygen.ts'
import { createBlixardHost } from './net/host.ts'
import type { BlixardHost } from './net/host.ts'
import { raftTransport, RAFT_PROTOCOL } from './net/raft-transport.ts'
import type { RaftTransport } from './net/raft-transport.ts'
import { rpcServer } from './net/rpc.ts'
import type { RpcClient } from './net/rpc.ts'
import type { RpcServer } from './net/rpc.ts'
import { loadGossip } from './net/load-gossip.ts'
import type { LoadGossip } from './net/load-gossip.ts'
import type { NetLog } from './net/log.ts'
import { RaftDriver } from './raft-driver.ts'
import { createLogger } from './log.ts'
import type { Logger } from './log.ts'
import { createMetrics } from './metrics.ts'
import { NodeGauges, sampleHostLoad } from './metrics-wiring.ts'
import { openCheckedLogStore } from './store-check.ts'
import type { NodeMetrics } from './metrics.ts'
import { createApi, leaderRefusal } from './api.ts'
import type { Signer } from '../protocols/auth.ts'
import { instrumentAuthorize, instrumentHandlers } from './rpc-metrics.ts'
import { EventLog } from './events.ts'
import type { ClusterEvent } from './events.ts'
import { Scheduler } from './scheduler.ts'
import type { LoadBoard } from './scheduler.ts'
import { startHttp } from './http.ts'
import { QemuDriver } from './qemu/driver.ts'
import { Agent } from './agent.ts'
import { Forwarder } from './core/forwarder.ts'
import { signOwn } from './own-commands.ts'
import { handoffTarget, isMember, mayCall } from './core/membership-rules.ts'
import { RpcClients } from './net/rpc-clients.ts'
import { vmConsole } from './console-proxy.ts'
import { Membership, MEMBERSHIP_LOOP_MS, SELF_REGISTRATION_EVERY_MS } from './membership.ts'
import type { ConsoleOptions } from './console-proxy.ts'
import { HostNet } from './net-host/host-net.ts'
import { ownUnderlayIp } from './net-host/peers.ts'
import { HostResources } from './host-resources.ts'
import { cephSettings, rbdClientFor } from './ceph-env.ts'
import type { VmRecord } from '../protocols/model.ts'
import type { HttpServer } from './http.ts'
import { HaService } from './ha/service.ts'
import { MigrationService, maxBandwidthFromEnv } from './migration/service.ts'

export interface DaemonOptions {
  /** fresh clusters wait to see this many nodes before one bootstraps (Consul's bootstrap_expect) */
  bootstrapExpect?: number
  /** peer ids made admins when this node bootstraps a new cluster */
  admins?: string[]
  log?: Logger
}

type Services = { raft: RaftTransport, rpc: RpcServer, load: LoadGossip }

/** graceful stop: how long a leader waits for its chosen successor to take over, and how often it looks */
const HANDOFF_WAIT_MS = 3_000
const HANDOFF_POLL_MS = 25

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export class Daemon {
  readonly log: Logger
  readonly metrics: NodeMetrics
  host!: BlixardHost<Services>
  driver: RaftDriver | null = null
  readonly store: LmdbLogStore
  readonly kv: LmdbKv
  readonly sm: StateMachine
  http: HttpServer | null = null
  qemu: QemuDriver | null = null
  agent: Agent | null = null
  ha: HaService | null = null
  migrations: MigrationService | null = null
  private readonly listeners = new Set<(i: number, env: CommandEnvelope, r: ApplyResult) => void>()
  /** writes: proposed here when leading, else forwarded (batched, retried) to the leader */
  private readonly forwarder: Forwarder<RpcClient>
  private readonly events: EventLog
  private readonly gauges: NodeGauges
  private readonly membership: Membership
  private readonly clients = new RpcClients(() => this.host)
  private timers: NodeJS.Timeout[] = []
  private scheduler: Scheduler | null = null
  private stopping = false
  /** this node's identity key: signs its own commands and its scheduling decisions */
  private signer: Signer | null = null

  private constructor (readonly cfg: NodeConfig, readonly opts: DaemonOptions) {
    this.log = opts.log ?? createLogger({ node: cfg.name })
    this.metrics = createMetrics()
    this.store = openCheckedLogStore(cfg.dataDir) // bad data: CorruptStoreError, a clear exit (node/store-check.ts)
    this.kv = LmdbKv.open(join(cfg.dataDir, 'state'), { sync: 'lazy' })
    this.sm = new StateMachine(this.kv)
    this.events = new EventLog(this.sm, Date.now)
    this.gauges = new NodeGauges({
      metrics: this.metrics,
      load: () => this.host.services.load,
      connections: () => this.host.getConnections().length,
      sm: this.sm,
      raft: () => this.driver?.status()
    })
    this.membership = new Membership({
      self: () => this.id,
      cfg,
      expect: this.expect(),
      admins: opts.admins ?? [],
      sm: this.sm,
      store: this.store,
      driver: () => this.driver,
      startDriver: () => { this.startDriver() },
      connectedPeers: () => this.host.getConnections().map((c) => c.remotePeer.toString()),
      ownAddrs: () => this.host.getMultiaddrs().map(String),
      raftTransport: () => this.host.services.raft,
      client: async (peer) => await this.client(peer),
      propose: async (env) => await this.propose(env),
      note: (text) => { this.events.note(text) },
      log: this.log,
      now: Date.now,
      sleep
    })
    this.forwarder = new Forwarder<RpcClient>({
      isLeader: () => this.driver?.isLeader() === true,
      leaderId: () => this.driver?.leaderId() ?? null,
      refusal: (env) => leaderRefusal(this.sm, this.id, env, this.driver?.status().term),
      proposeLocal: async (env) => {
        const drv = this.driver
        if (drv == null) throw new RpcError('Unavailable', 'Raft is not running on this node yet')
        return await drv.propose(env)
      },
      connect: async (leader) => await this.client(leader),
      callOne: async (c, env, timeoutMs) => await c.call('internal.propose', { env }, { timeoutMs }),
      callMany: async (c, envs, timeoutMs) => await c.call('internal.proposeMany', { envs }, { timeoutMs }),
      dropConnection: (leader) => { this.clients.drop(leader) },
      defer: (run) => { setImmediate(run) },
      sleep,
      stopping: () => this.stopping
    })
  }

  get id (): string { return this.host.peerId.toString() }

  static async start (cfg: NodeConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    const d = new Daemon(cfg, opts)
    await d.boot()
    return d
  }

  private netLog (): NetLog {
    return (level, event, fields) => { this.log[level](event, fields) }
  }

  private async boot (): Promise<void> {
    const { privateKey, created } = await loadOrCreateIdentity(this.cfg.dataDir)
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    this.signer = { peerId: peerIdFromPrivateKey(privateKey).toString(), sign: (data) => privateKey.sign(data) }
    const clusterKey = await readClusterKey(this.cfg.clusterKeyFile)
    const board: LoadBoard = { hints: () => this.loadHints() }
    const api = createApi({
      id: () => this.id,
      cephConfig: this.cfg.ceph,
      sm: this.sm,
      driver: () => this.driver,
      propose: async (env) => await this.propose(env),
      subscribe: (fn) => { this.listeners.add(fn); return () => { this.listeners.delete(fn) } },
      load: board,
      loadReports: () => this.host.services.load.reports(),
      hello: () => this.membership.hello(),
      vmLogs: (vm, o, signal) => this.vmLogs(vm, o, signal),
      recentEvents: () => this.recentEvents(),
      subscribeNotes: (fn) => this.events.subscribeNotes(fn),
      describe: (_i, env, r) => this.events.describe(env, r),
      join: async (peer, addrs) => await this.membership.admit(peer, addrs),
      metrics: this.metrics
    })
    this.host = await createBlixardHost<Services>({
      privateKey,
      clusterKey,
      listen: this.cfg.listen,
      bootstrap: this.cfg.bootstrap,
      mdns: this.cfg.mdns,
      services: {
        raft: raftTransport({
          onMessage: (from, msg) => { this.membership.heard(from); this.driver?.step(msg, from) },
          onUnreachable: (peer) => { this.driver?.reportUnreachable(peer) },
          onSnapshotStatus: (peer, ok) => { this.driver?.reportSnapshot(peer, ok) },
          log: this.netLog()
        }),
        rpc: rpcServer({
          handlers: instrumentHandlers({ ...api, 'internal.renewLease': async (p, ctx) => { if (this.ha == null) throw new RpcError('Unavailable', 'leases not started'); return await this.ha.receive(ctx.peer, p.epoch) } }, this.metrics),
          authorize: instrumentAuthorize((peer, method) => this.authorize(peer, method), this.metrics),
          maxConcurrentFor: (peer) => this.isMember(peer) ? RPC_MEMBER_MAX_CONCURRENT : undefined,
          onRefused: (reason) => { this.metrics.rpcRefused.inc({ reason }) },
          log: this.netLog()
        }),
        load: loadGossip({ sample: async () => await sampleHostLoad(this.cfg.dataDir, this.sm, this.id), onReport: () => { this.metrics.gossipReports.inc({ result: 'accepted' }) }, log: this.netLog() })
      }
    })
    this.log.info('node started', { id: this.id, identityCreated: created, addrs: this.host.getMultiaddrs().map(String) })
    this.host.addEventListener('connection:open', () => { this.gauges.connectionsChanged() })
    this.host.addEventListener('connection:close', () => { this.gauges.connectionsChanged() })
    // all connections to a peer gone: if it led us, do not wait out the election timeout
    this.host.addEventListener('peer:disconnect', (e) => { this.driver?.peerDisconnected(e.detail.toString()) })

    const { conf } = this.store.initialState()
    if (conf.voters.length === 0 && conf.learners.length === 0) {
      this.log.info('fresh data dir: looking for a cluster to join, or peers to bootstrap one with', { expect: this.expect() })
      this.membership.bindFresh()
    }
    // A member resumes from its log; a fresh node runs Raft with an empty membership, so it only
    // listens until a leader adds it (or the membership loop bootstraps a new cluster).
    this.startDriver()
    this.every(MEMBERSHIP_LOOP_MS, async () => await this.membership.formationRound())
    this.every(this.cfg.autopilot.intervalMs, async () => await this.membership.autopilotRound())
    this.every(SELF_REGISTRATION_EVERY_MS, async () => await this.membership.registerSelf())
    this.every(SELF_REGISTRATION_EVERY_MS, async () => await this.membership.voteRecovery())
    this.scheduler = new Scheduler({
      sm: this.sm,
      load: board,
      isLeader: () => this.driver?.isLeader() === true,
      propose: async (env) => await this.propose(env),
      log: this.log.child({ part: 'scheduler' }),
      metrics: this.metrics
    })
    this.scheduler.start()
    // host networking: the uplink VLANs tag onto and the underlay address VXLAN tunnels start from
    const underlay = this.cfg.network.underlayIp
    const hostNet = new HostNet({
      uplink: this.cfg.network.uplink,
      underlayIp: underlay ?? (() => ownUnderlayIp(this.sm.listNodes(), this.id)),
      log: this.log.child({ part: 'net' })
    })
    const ceph = cephSettings(this.cfg.ceph)
    const fencer = ceph == null ? null : rbdClientFor(ceph)
    const hostResources = new HostResources({
      nodeId: this.id, sm: this.sm, propose: async (env) => await this.propose(env), net: hostNet, ceph, log: this.log,
      fence: fencer == null ? null : async (pool, image) => await fencer.fence(pool, image)
    })
    this.qemu = new QemuDriver({ dataDir: this.cfg.dataDir, qemuBinary: this.cfg.qemuBinary, accel: 'auto', network: hostNet.driverHook(), log: this.log.child({ part: 'qemu' }) })
    this.ha = new HaService({ self: () => this.id, dataDir: this.cfg.dataDir, sm: this.sm, settings: this.cfg.lease, isLeader: () => this.driver?.isLeader() === true, leaderId: () => this.driver?.leaderId() ?? null, propose: async (env) => await this.propose(env), callLeader: async (leader, epoch, timeoutMs) => await (await this.client(leader)).call('internal.renewLease', { epoch }, { timeoutMs }), note: (t) => { this.events.note(t) }, kickScheduler: () => { void this.scheduler?.kick() }, kickAgent: () => { this.agent?.kick() }, log: this.log.child({ part: 'ha' }) })
    await this.ha.start() // the fence watchdog is armed before the agent may adopt or start a guest
    this.migrations = new MigrationService({ self: () => this.id, sm: this.sm, driver: this.qemu, host: this.host, dataDir: this.cfg.dataDir, propose: async (env) => await this.propose(env), bindings: async (vm, o) => await hostResources.bindings(vm, o), mayRun: () => this.ha == null ? 'leases not started' : this.ha.mayRun(), isLeader: () => this.driver?.isLeader() === true, maxBandwidth: maxBandwidthFromEnv(), log: this.log.child({ part: 'migration' }) })
    await this.migrations.start()
    this.agent = new Agent({
      mayRun: () => this.ha == null ? 'leases not started' : this.ha.mayRun(),
      migrating: (vmId) => this.migrations?.holds(vmId) === true,
      nodeId: this.id,
      sm: this.sm,
      driver: this.qemu,
      propose: async (env) => await this.propose(env),
      log: this.log.child({ part: 'agent' }),
      resources: hostResources,
      metrics: this.metrics
    })
    await this.agent.start()
    this.http = await startHttp(this)
  }

  expect (): number { return this.opts.bootstrapExpect ?? 3 }

  private startDriver (): void {
    this.driver = new RaftDriver({
      id: this.id,
      store: this.store,
      sm: this.sm,
      send: (msgs: Message[]) => { this.host.services.raft.send(msgs) },
      log: this.log.child({ part: 'raft' }),
      metrics: this.metrics,
      tickMs: this.cfg.raft.tickMs,
      electionTick: this.cfg.raft.electionTick,
      heartbeatTick: this.cfg.raft.heartbeatTick,
      snapshotEvery: this.cfg.raft.snapshotEvery,
      snapshotKeep: this.cfg.raft.snapshotKeep,
      onApplied: (i, env, r) => { this.onApplied(i, env, r) },
      admitters: () => this.membership.admitters(),
      onLeaderChange: (leader, isLeader) => {
        if (isLeader) void this.scheduler?.kick()
        this.forwarder.leaderChanged(leader)
        this.log.debug('leader', { leader })
      }
    })
    this.driver.start()
  }

  private every (ms: number, fn: () => Promise<void>): void {
    let busy = false
    const t = setInterval(() => {
      if (busy || this.stopping) return
      busy = true
      fn().catch((err) => { this.log.debug('loop failed', { err }) }).finally(() => { busy = false })
    }, ms)
    this.timers.push(t)
  }

  recentEvents (): ClusterEvent[] { return this.events.recent() }

  private onApplied (i: number, env: CommandEnvelope, r: ApplyResult): void {
    for (const fn of this.listeners) fn(i, env, r)
    this.events.applied(i, env, r)
    // Learn every registered node's addresses, so Raft can reach members it never discovered.
    if (r.ok && (env.cmd.type === 'RegisterNode' || env.cmd.type === 'UpdateNode')) {
      const id = env.cmd.type === 'RegisterNode' ? env.cmd.node.id : env.cmd.id
      const rec = this.sm.getNode(id)
      if (rec != null && id !== this.id) void this.membership.learnAddrs(id, rec.addrs)
    }
    if (r.ok && env.cmd.type === 'CreateVm') void this.scheduler?.kick()
    if (r.ok && env.cmd.type !== 'ReportVmStatus' && env.cmd.type !== 'AddAdmin') this.agent?.kick()
    if (r.ok && (env.cmd.type === 'StartMigration' || env.cmd.type === 'EvacuateVm' || env.cmd.type === 'ReportMigration' || env.cmd.type === 'CancelMigration' || env.cmd.type === 'ExpireMigration' || env.cmd.type === 'MarkNodeDown')) this.migrations?.kick()
    // VMs by phase are counted at scrape time (refreshGauges), not on every applied command.
  }

  // ---- writes: propose here when leader, else forward to the leader ----

  /** this node's RPC client to a peer (one per peer, reused) */
  async client (peer: string): Promise<RpcClient> { return await this.clients.get(peer) }

  /** A write from this node (its own commands, the API's): proposed wherever the leader is, under
   * one idempotency key for every attempt (node/core/forwarder.ts says when it is Indeterminate). */
  async propose (env: CommandEnvelope): Promise<ApplyResult> {
    const key = env.key ?? crypto.randomUUID()
    const full = await signOwn({ ...env, key }, this.signer, this.sm, this.driver?.status().term)
    return await this.forwarder.propose({ ...full, key })
  }

  private authorize (peer: string, method: string): boolean {
    return mayCall(peer, method, this.driver?.status().conf, (p) => this.sm.getNode(p) != null, (p) => this.sm.isAdmin(p))
  }

  private isMember (peer: string): boolean { return isMember(peer, this.driver?.status().conf, (p) => this.sm.getNode(p) != null) }

  /** A VM's console: from our driver when the VM is here, else proxied from its host (node/console-proxy.ts). */
  vmLogs (vm: VmRecord, o: ConsoleOptions, signal: AbortSignal): AsyncGenerator<string> {
    return vmConsole({ selfId: () => this.id, selfName: this.cfg.name, qemu: () => this.qemu, client: async (p) => await this.client(p) }, vm, o, signal)
  }

  loadHints (): Map<string, LoadHint> { return this.gauges.loadHints() }

  /** called by /metrics before each scrape (node/metrics-wiring.ts) */
  refreshMetrics (): void { this.gauges.refresh() }

  // ---- shutdown ----

  /** Graceful stop: hand leadership to the most caught-up voter first, then close everything. */
  async stop (): Promise<void> {
    if (this.stopping) return
    const drv = this.driver
    if (drv?.isLeader() === true) {
      const target = handoffTarget(this.id, drv.status())
      if (target != null) {
        this.log.info('transferring leadership before shutdown', { to: target })
        drv.transferLeadership(target)
        const deadline = Date.now() + HANDOFF_WAIT_MS
        while (drv.isLeader() && Date.now() < deadline) await sleep(HANDOFF_POLL_MS)
      }
    }
    this.stopping = true
    for (const t of this.timers) clearInterval(t)
    this.scheduler?.stop()
    this.ha?.stop()
    await this.migrations?.stop()
    await this.agent?.stop()
    await this.qemu?.close() // guests keep running; the next daemon re-adopts them
    await this.driver?.stop()
    await this.http?.close()
    this.clients.closeAll()
    await this.host.stop()
    this.store.close()
    this.kv.close()
    this.log.info('node stopped')
  }
}

export { RAFT_PROTOCOL }
