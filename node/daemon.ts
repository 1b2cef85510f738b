// blixard-node: one daemon per host, the composition root and nothing else. It opens the stores and
// starts the libp2p host (node/host-services.ts), the Raft service, the membership rounds
// (node/membership.ts), the execution block (node/execution.ts) and HTTP, and stops them in reverse.
// Writes: node/write-path.ts; applied-command effects: node/apply-effects.ts.
import { mkdir } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { Signer } from '../protocols/auth.ts'
import type { WalLogStore } from '../storage/wal-log-store.ts'
import type { LmdbKv } from '../storage/lmdb-kv.ts'
import { closeStateStore, openStateStore } from '../storage/state-dir.ts'
import { StateMachine } from '../storage/state-machine.ts'
import type { NodeConfig } from './config.ts'
import { loadSigningIdentity } from './identity.ts'
import { readClusterKey } from './keygen.ts'
import type { BlixardHost } from './net/host.ts'
import type { RpcClient, RpcHandlers } from './net/rpc.ts'
import { RpcClients } from './net/rpc-clients.ts'
import { RaftService } from './raft-service.ts'
import { createLogger, type Logger } from './log.ts'
import { createMetrics, type NodeMetrics } from './metrics.ts'
import { NodeGauges } from './metrics-wiring.ts'
import { openCheckedLogStore } from './store-check.ts'
import { nodeApi, type AppliedListener } from './api-deps.ts'
import { EventLog, type ClusterEvent } from './events.ts'
import type { LoadBoard } from './scheduler.ts'
import { startHttp, type HttpServer } from './http.ts'
import { consoleInput, vmConsole, type ConsoleOptions, type ConsoleProxyDeps } from './console-proxy.ts'
import { Membership } from './membership.ts'
import { recoveryNote } from './recover.ts'
import type { VmRecord } from '../protocols/model.ts'
import { hostView, startNodeHost, type NodeServices } from './host-services.ts'
import { startExecution, type Execution } from './execution.ts'
import { WritePath } from './write-path.ts'
import { carryOut, effectsOf } from './apply-effects.ts'
import { Loops } from './loops.ts'
import { handOffLeadership } from './handoff.ts'

export interface DaemonOptions {
  /** fresh clusters wait to see this many nodes before one bootstraps (Consul's bootstrap_expect) */
  bootstrapExpect?: number
  /** peer ids made admins when this node bootstraps a new cluster */
  admins?: string[]
  log?: Logger
}

/** nodes a fresh cluster waits for before bootstrapping, unless the config says otherwise */
export const DEFAULT_BOOTSTRAP_EXPECT = 3

export class Daemon {
  readonly log: Logger
  readonly metrics: NodeMetrics = createMetrics()
  host!: BlixardHost<NodeServices>
  raft: RaftService | null = null
  readonly store: WalLogStore
  readonly kv: LmdbKv
  readonly sm: StateMachine
  http: HttpServer | null = null
  /** the API's handlers, which the dashboard's actions and VM view call in-process (node/http.ts) */
  api: RpcHandlers = {}
  /** scheduler, HA, agent, QEMU: null until boot has started them */
  exec: Execution | null = null
  private readonly listeners = new Set<AppliedListener>()
  private readonly events: EventLog
  private readonly gauges: NodeGauges
  private readonly membership: Membership
  private readonly clients = new RpcClients(() => this.host)
  private readonly writes: WritePath
  private get console (): ConsoleProxyDeps { return { selfId: () => this.id, selfName: this.cfg.name, hypervisor: () => this.exec?.hypervisor ?? null, qemu: () => this.exec?.qemu ?? null, client: async (p) => await this.client(p), vm: (id) => this.sm.getVm(id) } }
  private readonly loops: Loops
  /** services started after the execution block, stopped before it (last started, first stopped) */
  private readonly stoppers: Array<() => Promise<void> | void> = []
  private stopping = false
  /** this node's identity key: signs its own commands and its scheduling decisions */
  private signer: Signer | null = null

  private constructor (readonly cfg: NodeConfig, readonly opts: DaemonOptions) {
    this.log = opts.log ?? createLogger({ node: cfg.name })
    this.loops = new Loops(this.log)
    this.store = openCheckedLogStore(cfg.dataDir, (m) => { this.log.info('raft log migrated from LMDB to the WAL', { ...m }) }) // bad data: CorruptStoreError, a clear exit (node/store-check.ts)
    this.kv = openStateStore(cfg.dataDir, (m) => { this.log.warn('state machine store moved aside and rebuilt from the Raft log (storage/state-dir.ts)', { ...m }) })
    this.sm = new StateMachine(this.kv)
    this.events = new EventLog(this.sm, Date.now)
    this.gauges = new NodeGauges({ metrics: this.metrics, load: () => this.host.services.load, connections: () => this.host.getConnections().length, sm: this.sm, raft: () => this.raft?.status(), rpc: () => this.host?.services.rpc.stats() })
    this.writes = new WritePath({ self: () => this.id, sm: this.sm, raft: () => this.raft, clients: this.clients, signer: () => this.signer, stopping: () => this.stopping, sleep })
    this.membership = new Membership({
      self: () => this.id, cfg, expect: opts.bootstrapExpect ?? DEFAULT_BOOTSTRAP_EXPECT, admins: opts.admins ?? [], sm: this.sm, store: this.store,
      raft: () => this.raft,
      startRaft: () => { this.startRaft() },
      ...hostView(() => this.host),
      client: async (peer) => await this.client(peer),
      propose: async (env) => await this.propose(env),
      recovery: recoveryNote(cfg.dataDir), note: (text) => { this.events.note(text) },
      log: this.log, now: Date.now, sleep
    })
  }

  get id (): string { return this.host.peerId.toString() }

  static async start (cfg: NodeConfig, opts: DaemonOptions = {}): Promise<Daemon> {
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    const d = new Daemon(cfg, opts)
    await d.boot()
    return d
  }

  private async boot (): Promise<void> {
    const { privateKey, created, signer } = await loadSigningIdentity(this.cfg.dataDir)
    this.signer = signer
    const board: LoadBoard = { hints: () => this.gauges.loadHints() }
    const propose = async (env: CommandEnvelope): Promise<ApplyResult> => await this.propose(env)
    const api = nodeApi({ id: () => this.id, cfg: this.cfg, sm: this.sm, raft: () => this.raft, propose, listeners: this.listeners, board, gossip: () => this.host.services.load, membership: this.membership, events: this.events, vmLogs: (vm, o, signal) => this.vmLogs(vm, o, signal), consoleInput: async (vm, data) => await consoleInput(this.console, vm, data), metrics: this.metrics })
    this.api = api
    this.host = await startNodeHost({
      privateKey, clusterKey: await readClusterKey(this.cfg.clusterKeyFile), cfg: this.cfg, sm: this.sm, self: () => this.id, raft: () => this.raft, api,
      renewLease: () => { const ha = this.exec?.ha; return ha == null ? null : async (peer, epoch) => await ha.receive(peer, epoch) },
      consoleHistory: () => { const m = this.exec?.migrations; return m == null ? null : (peer, p) => m.consoleHistory(peer, p) },
      heard: (peer) => { this.membership.heard(peer) },
      warm: () => this.exec?.pools.report() ?? [],
      log: this.log, metrics: this.metrics
    })
    this.log.info('node started', { id: this.id, identityCreated: created, addrs: this.host.getMultiaddrs().map(String) })
    for (const ev of ['connection:open', 'connection:close'] as const) this.host.addEventListener(ev, () => { this.gauges.connectionsChanged() })
    // all connections to a peer gone: if it led us, do not wait out the election timeout
    this.host.addEventListener('peer:disconnect', (e) => { this.raft?.peerDisconnected(e.detail.toString()) })

    this.membership.bindIfFresh()
    // A member resumes from its log; a fresh node runs Raft with an empty membership, so it only
    // listens until a leader adds it (or the membership loop bootstraps a new cluster).
    this.startRaft()
    for (const [ms, round] of this.membership.rounds()) this.loops.every(ms, round)
    this.exec = await startExecution({
      id: this.id, cfg: this.cfg, sm: this.sm, board, propose, log: this.log, metrics: this.metrics, host: this.host,
      isLeader: () => this.raft?.isLeader() === true,
      leaderId: () => this.raft?.leaderId() ?? null,
      client: async (peer) => await this.client(peer),
      note: (t) => { this.events.note(t) }
    })
    // further services go here, each one line: start it and push its stop onto this.stoppers
    this.http = await startHttp(this)
  }

  private startRaft (): void {
    this.raft = new RaftService({
      ...this.cfg.raft, // ticks and snapshot cadence, named in node/config.ts
      id: this.id, store: this.store, sm: this.sm, log: this.log.child({ part: 'raft' }), metrics: this.metrics,
      send: (msgs) => { this.host.services.raft.send(msgs) },
      onApplied: (i, env, res) => { this.onApplied(i, env, res) },
      onConfApplied: (i, cc) => { this.events.confApplied(i, cc) },
      admitters: () => this.membership.admitters(),
      onLeaderChange: (leader, isLeader) => {
        if (isLeader) void this.exec?.scheduler.kick()
        this.writes.forwarder.leaderChanged(leader)
        this.log.debug('leader', { leader })
      }
    })
    this.raft.start()
  }

  recentEvents (): ClusterEvent[] { return this.events.recent() }

  /** one VM's recent events, for the dashboard's VM view */
  vmHistory (id: string): ClusterEvent[] { return this.events.vmHistory(id) }

  private onApplied (i: number, env: CommandEnvelope, r: ApplyResult): void {
    this.events.beforeDescribe(env, r)
    for (const fn of this.listeners) fn(i, env, r)
    this.events.applied(i, env, r)
    carryOut(effectsOf(this.id, env, r), this.exec, { addrsOf: (n) => this.sm.getNode(n)?.addrs, learnAddrs: async (n, a) => await this.membership.learnAddrs(n, a) })
  }

  /** this node's RPC client to a peer (one per peer, reused) */
  async client (peer: string): Promise<RpcClient> { return await this.clients.get(peer) }

  /** A write from this node, wherever the leader is (node/write-path.ts). */
  async propose (env: CommandEnvelope): Promise<ApplyResult> { return await this.writes.propose(env) }

  /** A VM's console: from our hypervisor when the VM is here, else proxied from its host. */
  vmLogs (vm: VmRecord, o: ConsoleOptions, signal: AbortSignal): AsyncGenerator<string> { return vmConsole(this.console, vm, o, signal) }

  /** called by /metrics before each scrape (node/metrics-wiring.ts) */
  refreshMetrics (): void { this.gauges.refresh() }

  /** Graceful stop: hand leadership to the most caught-up voter first, then close everything. */
  async stop (): Promise<void> {
    if (this.stopping) return
    await handOffLeadership(this.id, this.raft, this.log, sleep, Date.now)
    this.stopping = true
    this.loops.stop()
    for (const stop of this.stoppers.reverse()) await stop()
    await this.exec?.stop()
    await this.raft?.stop()
    await this.http?.close()
    this.clients.closeAll()
    await this.host.stop()
    this.store.close()
    closeStateStore(this.kv, this.cfg.dataDir, (err) => { this.log.error('state machine store not flushed at stop: a start after a reboot rebuilds it from the Raft log', { err }) })
    this.log.info('node stopped')
  }
}
