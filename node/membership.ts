// Membership of one node, the shell around node/bootstrap.ts, node/autopilot.ts and
// node/core/membership-rules.ts: a fresh node gathers hellos and bootstraps or joins; the leader
// admits joiners as learners and runs autopilot; every member keeps its own record registered and
// casts a pending admin-recovery vote. Every decision is pure; this file only does the I/O, and all
// of that through its deps: node/daemon.ts wires them to libp2p, LMDB and real timers,
// sim/replica.ts to the simulated network, store and clock, so the seeds run these rounds too.
import type { HypervisorCapability } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'
import type { ParamsOf, ResultOf } from '../protocols/rpc.ts'
import type { AnyConfChange } from '../protocols/raft/types.ts'
import type { RaftStatus } from '../protocols/raft/rawnode.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { NodeConfig } from './config.ts'
import type { Logger } from './log.ts'
import { decideBootstrap } from './bootstrap.ts'
import type { PeerHello } from './bootstrap.ts'
import { decide as autopilotDecide } from './autopilot.ts'
import { autopilotEventText } from './events.ts'
import { autopilotInput, inCluster, registration } from './core/membership-rules.ts'

/** a fresh node asks its peers who they are this often */
export const MEMBERSHIP_LOOP_MS = 500
/** a member checks its own record (and a pending recovery vote) this often */
export const SELF_REGISTRATION_EVERY_MS = 1_000
/** how long a fresh node waits for one peer's cluster.hello */
export const HELLO_TIMEOUT_MS = 1_000
/** how long a fresh node waits for cluster.join (retried on the next round) */
export const JOIN_TIMEOUT_MS = 5_000
/** how long a member waits for the leader to admit a joiner it forwarded */
export const ADMIT_FORWARD_TIMEOUT_MS = 10_000
/** after bootstrapping, how long the first leader waits to win its election before adding the first admins */
export const BOOTSTRAP_LEADER_WAIT_MS = 10_000
export const BOOTSTRAP_LEADER_POLL_MS = 50
/** how long the bootstrap node keeps proposing a first admin that failed for a passing reason */
export const FIRST_ADMINS_WAIT_MS = 120_000
export const FIRST_ADMINS_RETRY_MS = 1_000
/** bounds the cost of a bogus joiner's address list */
export const MAX_JOIN_ADDRS = 16
/** a member checks that it is connected to every other member this often */
export const REACH_MEMBERS_EVERY_MS = 2_000
/** members looked for at once (each may take a dial timeout and a DHT lookup) */
export const REACH_MAX_PER_ROUND = 4
/** a member not found is looked for again after this, doubling per failure up to the max */
export const REACH_RETRY_MIN_MS = 2_000
export const REACH_RETRY_MAX_MS = 30_000

/** What membership needs of the Raft node (node/raft-service.ts RaftService is one). */
export interface MembershipRaft {
  status: () => RaftStatus
  leaderId: () => string | null
  isLeader: () => boolean
  stop: () => Promise<void>
  campaign: () => void
  /** resolves once the change applied on this node (the leader) */
  proposeConfChange: (cc: AnyConfChange) => Promise<void>
}

/** The RPCs membership makes to a peer (node/net/rpc.ts RpcClient is one). */
export type MembershipMethod = 'cluster.hello' | 'cluster.join' | 'internal.admit'
export interface MembershipClient {
  call: <M extends MembershipMethod>(method: M, params: ParamsOf<M>, opts?: { timeoutMs?: number }) => Promise<ResultOf<M>>
}

/** The configuration keys membership reads (a Ceph client configured here: the node advertises rbd). */
export type MembershipConfig = Pick<NodeConfig, 'name' | 'labels' | 'capacity' | 'autopilot'> & { ceph: Pick<NodeConfig['ceph'], 'conf'> }

export interface MembershipDeps {
  self: () => string
  cfg: MembershipConfig
  /** fresh clusters wait to see this many nodes before one bootstraps */
  expect: number
  /** peer ids made admins when this node bootstraps a new cluster */
  admins: readonly string[]
  sm: StateMachine
  store: Pick<LogStore, 'initialState' | 'save' | 'sync'>
  raft: () => MembershipRaft | null
  /** starts a Raft service over the store as it is now (the old one stopped) */
  startRaft: () => void
  /** the transport side: connected peers, our addresses, and where the Raft transport finds a peer */
  connectedPeers: () => string[]
  ownAddrs: () => string[]
  addPeerAddrs: (peer: string, addrs: string[]) => Promise<void>
  /** connect to a member: at its recorded addresses, else through the DHT (node/net/host.ts
   * reachPeer); says how. Absent: no reach round (the simulator, whose network connects all). */
  reach?: (peer: string, addrs: string[]) => Promise<'connected' | 'known-addrs' | 'dht' | 'unreachable'>
  client: (peer: string) => Promise<MembershipClient>
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** an admin recovery this node must vote for (`blixard-node admin recover` left a note), and
   * the call that clears it once voted */
  recovery: { pending: () => Promise<string | null>, done: () => Promise<void> }
  /** an event that is not a command (node/events.ts) */
  note: (text: string) => void
  log: Logger
  now: () => number
  sleep: (ms: number) => Promise<void>
}

export class Membership {
  private readonly lastHeard = new Map<string, number>()
  private readonly hellos = new Map<string, PeerHello>()
  private joining = false
  private registering = false
  /** bootstrapping: the configured first admins are being added (this node registers after them) */
  private addingFirstAdmins = false
  private autopilotBusy = false
  private reaching = false
  /** members not found: when to look again, and the current wait */
  private readonly reachRetry = new Map<string, { at: number, waitMs: number }>()
  private lastAutopilotEvent: string | null = null

  /** A fresh node accepts a leader's Raft traffic only from the peers it asked to join through and
   * the leader that answered (node/core/raft-ingress.ts IngressContext.admitters); null: unbound
   * (a node that starts with a configuration, or before bindFresh). */
  private joinAdmitters: Set<string> | null = null

  constructor (private readonly d: MembershipDeps) {}

  /** This node starts with no configuration: bind it to the peers that will admit it. */
  bindFresh (): void { this.joinAdmitters = new Set() }

  /** At start: a store without a configuration is a fresh node, bound until a leader admits it. */
  bindIfFresh (): void {
    const { conf } = this.d.store.initialState()
    if (conf.voters.length > 0 || conf.learners.length > 0) return
    this.d.log.info('fresh data dir: looking for a cluster to join, or peers to bootstrap one with', { expect: this.d.expect })
    this.bindFresh()
  }

  /** The periodic rounds the daemon runs, each with its period: formation (bootstrap or join),
   * autopilot (on the leader), self-registration, and vote recovery. */
  rounds (): Array<[number, () => Promise<void>]> {
    return [
      [MEMBERSHIP_LOOP_MS, async () => { await this.formationRound() }],
      [this.d.cfg.autopilot.intervalMs, async () => { await this.autopilotRound() }],
      [SELF_REGISTRATION_EVERY_MS, async () => { await this.registerSelf() }],
      [SELF_REGISTRATION_EVERY_MS, async () => { await this.voteRecovery() }],
      [REACH_MEMBERS_EVERY_MS, async () => { await this.reachMembers() }]
    ]
  }

  /** The peers a fresh node takes Raft traffic from (undefined: not bound). */
  admitters (): readonly string[] | undefined { return this.joinAdmitters === null ? undefined : [...this.joinAdmitters] }

  /** a Raft message from `peer` arrived */
  heard (peer: string): void { this.lastHeard.set(peer, this.d.now()) }

  inCluster (): boolean { return inCluster(this.d.self(), this.d.raft()?.status(), this.lastHeard, this.d.now()) }

  hello (): { id: string, inCluster: boolean, lowestKnown: string, leader: string | null } {
    const self = this.d.self()
    const fresh = [self, ...[...this.hellos.values()].filter((h) => !h.inCluster).map((h) => h.id)].sort()
    return { id: self, inCluster: this.inCluster(), lowestKnown: fresh[0], leader: this.d.raft()?.leaderId() ?? null }
  }

  /** Peers that speak our Raft protocol (so: hold the key and run blixard-node, not a CLI). */
  private blixardPeers (): string[] {
    const self = this.d.self()
    return [...new Set(this.d.connectedPeers())].filter((p) => p !== self)
  }

  /** Fresh node: gather hellos from everyone we are connected to, then bootstrap, join or wait. */
  async formationRound (): Promise<void> {
    if (this.inCluster()) return
    await Promise.all(this.blixardPeers().map(async (p) => {
      try {
        const c = await this.d.client(p)
        const h = await c.call('cluster.hello', {}, { timeoutMs: HELLO_TIMEOUT_MS })
        this.hellos.set(p, { id: h.id, inCluster: h.inCluster, lowestKnown: h.lowestKnown })
      } catch { this.hellos.delete(p) } // a CLI or a peer that went away
    }))
    const dec = decideBootstrap(this.d.self(), this.d.expect, [...this.hellos.values()])
    if (dec.action === 'bootstrap') await this.bootstrapCluster(dec.why)
    else if (dec.action === 'join') await this.join(dec.via)
  }

  private async bootstrapCluster (why: string): Promise<void> {
    if (this.inCluster()) return
    const { sm, store, log } = this.d
    log.info('bootstrapping a new cluster', { why })
    // The new cluster starts from a snapshot at index 1 whose membership is this node alone: a joiner's
    // first step is to install the leader's snapshot, which must carry the membership (and state).
    await this.d.raft()?.stop()
    const data = sm.snapshot()
    sm.restore(data, 1)
    store.save({ snapshot: { meta: { index: 1, term: 1, conf: { voters: [this.d.self()], learners: [] } }, data }, hardState: { term: 1, vote: null, commit: 1 } })
    store.sync()
    this.d.startRaft()
    this.d.raft()?.campaign()
    // First admins: the configured operator identities. Anyone may sign them only while no node is
    // registered (storage/state-machine.ts checkAuthority), so they go first, all at once (one
    // Ready carries them), this node does not register itself until they are in, and one that
    // failed for a passing reason (a lost leadership, a timeout) is proposed again: an admin lost
    // here is lost for good, and the operator would meet "not an admin" on their first command.
    this.addingFirstAdmins = true
    try {
      const deadline = this.d.now() + BOOTSTRAP_LEADER_WAIT_MS
      while (this.d.raft()?.isLeader() !== true && this.d.now() < deadline) await this.d.sleep(BOOTSTRAP_LEADER_POLL_MS)
      const pending = new Set(this.d.admins)
      const until = this.d.now() + FIRST_ADMINS_WAIT_MS
      while (pending.size > 0) {
        await Promise.all([...pending].map(async (peerId) => {
          try {
            const r = await this.d.propose({ cmd: { type: 'AddAdmin', peerId, name: 'operator' }, at: this.d.now(), key: `bootstrap-admin-${peerId}` })
            // refused by apply: proposing it again would be refused again
            pending.delete(peerId)
            if (r.ok) log.info('first admin', { peerId })
            else log.error('first admin refused', { peerId, error: r.error, next: 'add it with `blixard admin add` as an admin, or `blixard-node admin recover`' })
          } catch (err) {
            if (sm.isAdmin(peerId)) pending.delete(peerId)
            else log.warn('could not add a first admin yet; trying again', { peerId, err })
          }
        }))
        if (pending.size === 0) break
        if (this.d.now() >= until) {
          log.error('first admins not added', { missing: [...pending], next: 'add them with `blixard admin add` as an admin, or `blixard-node admin recover`' })
          break
        }
        await this.d.sleep(FIRST_ADMINS_RETRY_MS)
      }
    } finally { this.addingFirstAdmins = false }
  }

  private async join (via: string): Promise<void> {
    if (this.joining) return
    this.joining = true
    try {
      this.joinAdmitters?.add(via)
      const c = await this.d.client(via)
      const r = await c.call('cluster.join', { addrs: this.d.ownAddrs() }, { timeoutMs: JOIN_TIMEOUT_MS })
      this.joinAdmitters?.add(r.leader)
      this.d.log.info('asked to join the cluster', { via, leader: r.leader })
    } catch (err) {
      this.d.log.debug('join request failed; retrying', { via, err })
    } finally { this.joining = false }
  }

  /** cluster.join (from the fresh node itself) or internal.admit (forwarded by a member):
   * the joiner becomes a learner. Done by the leader; others forward. */
  async admit (peer: string, addrs: string[]): Promise<{ leader: string }> {
    const raft = this.d.raft()
    const leader = raft?.leaderId()
    if (raft == null || leader == null) throw new BlixardError('Unavailable', 'no leader yet; retry')
    if (!raft.isLeader()) {
      const c = await this.d.client(leader)
      return await c.call('internal.admit', { peer, addrs: addrs.slice(0, MAX_JOIN_ADDRS) }, { timeoutMs: ADMIT_FORWARD_TIMEOUT_MS })
    }
    const conf = raft.status().conf
    const member = conf.voters.includes(peer) || conf.learners.includes(peer)
    // the join policy (a cluster setting): under "approve", only peer ids an admin approved
    if (!member && !this.d.sm.mayJoin(peer)) {
      throw new BlixardError('Unauthorized', `${peer} is not approved to join this cluster (join policy "approve"; an admin runs: blixard node approve ${peer})`)
    }
    await this.learnAddrs(peer, addrs.slice(0, MAX_JOIN_ADDRS))
    if (!member) {
      // it has not spoken Raft to us yet: without this, autopilot sees a learner silent since
      // forever and removes it at once
      this.heard(peer)
      await raft.proposeConfChange({ type: 'addLearner', node: peer })
      this.d.log.info('added a learner', { peer })
    }
    return { leader: this.d.self() }
  }

  /** Tell the Raft transport where a peer is (a joiner, or a node whose record was applied). */
  async learnAddrs (peer: string, addrs: string[]): Promise<void> {
    try {
      await this.d.addPeerAddrs(peer, addrs)
    } catch (err) { this.d.log.debug('bad peer addresses', { peer, err }) }
  }

  /** Leader only: keep the voter set at its target (node/autopilot.ts). */
  async autopilotRound (): Promise<void> {
    const raft = this.d.raft()
    if (raft == null || !raft.isLeader() || this.autopilotBusy) return
    const self = this.d.self()
    const dec = autopilotDecide(autopilotInput({
      self,
      st: raft.status(),
      lastHeard: this.lastHeard,
      now: this.d.now(),
      connected: new Set(this.blixardPeers()),
      registered: this.d.sm.listNodes().map((n) => n.id),
      applied: this.d.sm.applied(),
      deadAfterMs: this.d.cfg.autopilot.deadAfterMs
    }))
    // Every decision is a cluster event with its reason, once per change of mind (the loop runs
    // every few seconds and would otherwise repeat "at its target" forever).
    const text = autopilotEventText(dec)
    if (text !== this.lastAutopilotEvent && dec.why !== 'a membership change is in flight') {
      this.lastAutopilotEvent = text
      this.d.note(text)
      this.d.log.info('autopilot', { decision: dec.kind, ...(dec.kind === 'change' ? { change: dec.change } : {}), ...(dec.kind === 'replace' ? { promote: dec.promote, remove: dec.remove } : {}), why: dec.why })
    }
    if (dec.kind === 'none') return
    this.autopilotBusy = true
    try {
      if (dec.kind === 'replace') await this.replaceVoter(raft, dec.promote, dec.remove)
      else await raft.proposeConfChange(dec.change)
    } catch (err) {
      this.d.log.warn('autopilot change not applied', { err: String(err) })
      this.lastAutopilotEvent = null // retried next round: say so again
    } finally { this.autopilotBusy = false }
  }

  /**
   * Autopilot's `replace`: the one place that knows how a voter is swapped. One joint conf change
   * (3 voters → joint (old 3, new 3) → new 3): while joint every commit needs a majority of both
   * sets, so the voter count and fault tolerance never drop; transition 'auto' has the leader
   * propose the leave itself, and if it changes in between the next leader leaves.
   */
  private async replaceVoter (raft: MembershipRaft, promote: string, remove: string): Promise<void> {
    await raft.proposeConfChange({ changes: [{ type: 'add-voter', node: promote }, { type: 'remove', node: remove }], transition: 'auto' })
  }

  /**
   * A member keeps a connection to every other member: those it is not connected to are dialed at
   * their recorded addresses, and when those fail (the member moved: a new lease, re-IPed, another
   * subnet) found through the DHT, whose members connected to it know where it is now. The moved
   * node then corrects its own record (registerSelf), and everyone learns it when it applies.
   * Without this, a restarted node waits for mDNS (LAN only) or for someone to dial it.
   */
  async reachMembers (): Promise<void> {
    const reach = this.d.reach
    const raft = this.d.raft()
    if (reach == null || raft == null || this.reaching) return
    const self = this.d.self()
    const conf = raft.status().conf
    if (!conf.voters.includes(self) && !conf.learners.includes(self)) return
    const connected = new Set(this.d.connectedPeers())
    const now = this.d.now()
    const members = [...new Set([...conf.voters, ...conf.learners])].filter((p) => p !== self)
    for (const p of this.reachRetry.keys()) if (!members.includes(p) || connected.has(p)) this.reachRetry.delete(p)
    const todo = members.filter((p) => !connected.has(p) && (this.reachRetry.get(p)?.at ?? 0) <= now).slice(0, REACH_MAX_PER_ROUND)
    if (todo.length === 0) return
    this.reaching = true
    try {
      await Promise.all(todo.map(async (p) => {
        const addrs = (this.d.sm.getNode(p)?.addrs ?? []).slice(0, MAX_JOIN_ADDRS)
        let how: Awaited<ReturnType<typeof reach>> = 'unreachable'
        try { how = await reach(p, addrs) } catch (err) { this.d.log.debug('reach failed', { peer: p, err }) }
        if (how === 'unreachable') {
          const waitMs = Math.min(REACH_RETRY_MAX_MS, 2 * (this.reachRetry.get(p)?.waitMs ?? REACH_RETRY_MIN_MS / 2))
          this.reachRetry.set(p, { at: this.d.now() + waitMs, waitMs })
          this.d.log.debug('member unreachable at its addresses and through the DHT', { peer: p, retryMs: waitMs })
          return
        }
        this.reachRetry.delete(p)
        if (how === 'dht') this.d.log.info('member found through the DHT at a new address', { peer: p, recorded: addrs })
      }))
    } finally { this.reaching = false }
  }

  /** Once in the cluster, put (and keep) this node's record in the replicated state. */
  async registerSelf (): Promise<void> {
    const raft = this.d.raft()
    if (raft == null || raft.leaderId() == null || this.registering || this.addingFirstAdmins) return
    const self = this.d.self()
    const conf = raft.status().conf
    if (!conf.voters.includes(self) && !conf.learners.includes(self)) return
    const { cfg, sm, log } = this.d
    const mine = sm.getNode(self)
    // rbd: a Ceph client is configured here, so this node can open volumes and reconcile them
    const capabilities: HypervisorCapability[] = cfg.ceph.conf != null ? ['qemu', 'rbd'] : ['qemu']
    const cmd = registration({ id: self, name: cfg.name, addrs: this.d.ownAddrs(), labels: cfg.labels, capacity: cfg.capacity, capabilities }, mine)
    if (cmd == null) return
    this.registering = true
    try {
      const r = await this.d.propose({ cmd, at: this.d.now() })
      if (r.ok) log.info(mine == null ? 'registered this node' : 'updated this node', { name: cfg.name })
      else log.warn('registration rejected', { error: r.error })
    } catch (err) {
      log.debug('registration not committed yet', { err })
    } finally { this.registering = false }
  }

  /** `blixard-node admin recover` left a note: once registered, vote (signed by this node's key). */
  async voteRecovery (): Promise<void> {
    const { sm, log } = this.d
    const peerId = await this.d.recovery.pending()
    if (peerId == null || sm.getNode(this.d.self()) == null || this.d.raft()?.leaderId() == null) return
    const r = await this.d.propose({ cmd: { type: 'RecoverAdmin', peerId }, at: this.d.now() })
    if (!r.ok) { log.warn('admin recovery vote refused', { peerId, error: r.error }); return }
    log.info('admin recovery: voted', { peerId, result: r.value })
    await this.d.recovery.done()
  }
}
