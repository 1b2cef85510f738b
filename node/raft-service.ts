// The Raft node of a real process: node/core/raft-node.ts (the Ready loop the simulator runs too)
// wired to the LMDB log store and state machine, the libp2p transport, real timers and crypto
// randomness, with metrics and logs as its observers, and its callbacks turned into promises.
// The loop's two fsync savers (send-first when leading, deferred commit-only HardState) are
// explained in node/core/raft-loop.ts; the deferred HardState is written at a clean stop.
import { randomBytes, randomUUID, randomInt } from 'node:crypto'
import type { AnyConfChange, ConfState, Message, NodeId } from '../protocols/raft/types.ts'
import type { RaftStatus } from '../protocols/raft/rawnode.ts'
import { decodeConfChange } from '../protocols/raft/confchange.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { Logger } from './log.ts'
import { RaftNode, raftToBlix as coreRaftToBlix } from './core/raft-node.ts'
import type { NodeMetrics } from './metrics.ts'
import { CONFIG_DEFAULTS } from './config.ts'
import { raftIngressContext } from './core/raft-ingress-context.ts'
import { admitRaftMessage, DropLogOnce } from './core/raft-ingress.ts'

export interface RaftServiceOptions {
  id: NodeId
  store: LogStore
  sm: StateMachine
  /** hands messages to the transport; must not block */
  send: (msgs: Message[]) => void
  log: Logger
  metrics?: NodeMetrics
  /** one Raft tick; election timeout = electionTick × tickMs (randomized up to 2×) */
  tickMs?: number
  electionTick?: number
  heartbeatTick?: number
  /** learners take their feed from a follower, not the leader (protocols/raft/relay.ts) */
  relayLearners?: boolean
  /** take a state-machine snapshot and compact the log every this many applied entries */
  snapshotEvery?: number
  /** entries kept behind a snapshot so slow followers can still catch up without one */
  snapshotKeep?: number
  proposalTimeoutMs?: number
  /** called after every applied command (watch streams, events, agents) */
  onApplied?: (index: number, env: CommandEnvelope, result: ApplyResult) => void
  /** called after every applied membership change (events on every node) */
  onConfApplied?: (index: number, cc: AnyConfChange) => void
  /** the admission filter on the receive path (node/core/raft-node.ts RaftNodeOptions.admit) */
  admit?: (m: Message, fromPeer: NodeId | null) => string | null
  /** while this node has no configuration: the peers it asked to join through and the leader
   * that answered (node/core/raft-ingress.ts IngressContext.admitters); undefined: unbound */
  admitters?: () => readonly NodeId[] | undefined
  /** called when leadership or the leader changes */
  onLeaderChange?: (leader: NodeId | null, isLeader: boolean, term: number) => void
}

/** After the leader's connection closes, the remaining voters campaign in turns of this long
 * (the first within it), so that two of them rarely split the vote. */
const LEADER_LOST_SLOT_MS = 150
/** Raft timing and snapshot defaults are the configuration's (node/config.ts), one source for both. */
const DEFAULT_TICK_MS = CONFIG_DEFAULTS.raft.tickMs
const DEFAULT_ELECTION_TICK = CONFIG_DEFAULTS.raft.electionTick
const DEFAULT_HEARTBEAT_TICK = CONFIG_DEFAULTS.raft.heartbeatTick
const DEFAULT_RELAY_LEARNERS = CONFIG_DEFAULTS.raft.relayLearners
const DEFAULT_SNAPSHOT_EVERY = CONFIG_DEFAULTS.raft.snapshotEvery
const DEFAULT_SNAPSHOT_KEEP = CONFIG_DEFAULTS.raft.snapshotKeep
export const DEFAULT_PROPOSAL_TIMEOUT_MS = 10_000
export const DEFAULT_READ_TIMEOUT_MS = 5_000
/** Replication batching: bytes per append message and appends in flight per follower. */
const MAX_SIZE_PER_MSG = 1 << 20
const MAX_INFLIGHT_MSGS = 256
/** Ready passes per event-loop turn before yielding to I/O. */
const READIES_PER_DRAIN = 64
/** How often proposeConfChange looks whether the change has applied. */
const CONF_POLL_MS = 20

/** Election jitter: the core takes randomness as a parameter; here it is real randomness. */
function cryptoRandom (): number {
  return randomInt(0, 2 ** 47) / 2 ** 47
}

function secondsSince (t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9
}

export class RaftService {
  readonly id: NodeId
  private readonly core: RaftNode
  private readonly proposalTimeoutMs: number
  private readonly tickMs: number

  constructor (private readonly opts: RaftServiceOptions) {
    this.id = opts.id
    this.tickMs = opts.tickMs ?? DEFAULT_TICK_MS
    this.proposalTimeoutMs = opts.proposalTimeoutMs ?? DEFAULT_PROPOSAL_TIMEOUT_MS
    const snapshotEvery = opts.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY
    const snapshotKeep = opts.snapshotKeep ?? DEFAULT_SNAPSHOT_KEEP
    const m = opts.metrics
    let readyT0 = 0n
    let leaderSeen: NodeId | null = null
    const dropLog = new DropLogOnce()
    this.core = new RaftNode({
      id: opts.id,
      store: opts.store,
      sm: opts.sm,
      send: opts.send,
      timers: {
        after: (ms, run) => { const t = setTimeout(run, ms); return () => { clearTimeout(t) } }
      },
      defer: (run) => { setImmediate(run) },
      random: cryptoRandom,
      readContextPrefix: randomBytes(12).toString('hex'),
      tickMs: this.tickMs,
      electionTick: opts.electionTick ?? DEFAULT_ELECTION_TICK,
      heartbeatTick: opts.heartbeatTick ?? DEFAULT_HEARTBEAT_TICK,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: MAX_SIZE_PER_MSG,
      maxInflightMsgs: MAX_INFLIGHT_MSGS,
      relayLearners: opts.relayLearners ?? DEFAULT_RELAY_LEARNERS,
      proposalTimeoutMs: this.proposalTimeoutMs,
      compaction: { due: (since) => since >= snapshotEvery, keep: () => snapshotKeep },
      applyEachEntryAlone: false,
      readiesPerDrain: READIES_PER_DRAIN,
      log: opts.log,
      // who may speak Raft (node/core/raft-ingress.ts), before the core sees a message; the
      // transport has checked that m.from is the stream's authenticated peer
      admit: (msg, fromPeer) => {
        const extra = opts.admit?.(msg, fromPeer) ?? null
        if (extra != null) return extra
        const verdict = admitRaftMessage(fromPeer ?? msg.from, msg, { ...raftIngressContext(opts.id, this.core), admitters: opts.admitters?.() })
        if (verdict.ok) return null
        m?.raftMessagesDropped.inc({ reason: verdict.reason })
        if (dropLog.first(fromPeer ?? msg.from, verdict.reason)) opts.log.warn('raft message dropped (logged once per peer and reason)', { peer: fromPeer ?? msg.from, type: msg.type, reason: verdict.reason, detail: verdict.detail })
        return verdict.reason
      },
      hooks: {
        // A Ready half-handled can never be taken as done (the core stopped itself); the error
        // then ends the process and the restart recovers from what the log holds
        // (storage/wal-log-store.ts LogDurabilityError).
        onFatal: (err) => { opts.log.error('fatal: storage failed while handling Raft output (log write, fsync or state-machine commit); stopping this node: it recovers from its log on restart', { err: String(err) }) },
        onRole: (role, leader, term) => {
          const isLeader = role === 'leader'
          m?.raftIsLeader.set(isLeader ? 1 : 0)
          if (leader === leaderSeen) return
          leaderSeen = leader
          m?.raftLeaderChanges.inc()
          opts.log.info('leader changed', { leader, isLeader, term })
          opts.onLeaderChange?.(leader, isLeader, term)
        },
        onApplied: opts.onApplied == null && opts.onConfApplied == null
          ? undefined
          : (e, env, result) => {
              if (e.type === 'conf' && opts.onConfApplied != null) {
                try { opts.onConfApplied(e.index, decodeConfChange(e.data)) } catch (err) { opts.log.warn('onConfApplied hook failed', { err }) }
                return
              }
              if (env == null || result == null) return
              try { opts.onApplied?.(e.index, env, result) } catch (err) { opts.log.warn('onApplied hook failed', { err }) }
            },
        onCompacted: (index, keep) => { opts.log.info('compacted log', { index, keep }) },
        onMessagesSent: m == null ? undefined : (msgs) => { for (const x of msgs) m.raftMessagesSent.inc({ type: x.type }) },
        onMessageReceived: m == null ? undefined : (x) => { m.raftMessagesReceived.inc({ type: x.type }) },
        onReadyStart: m == null ? undefined : () => { readyT0 = process.hrtime.bigint() },
        onReadyDone: m == null
          ? undefined
          : () => {
              m.raftReadySeconds.observe(secondsSince(readyT0))
              const st = this.core.status()
              m.raftTerm.set(st.term); m.raftCommitIndex.set(st.commit); m.raftAppliedIndex.set(opts.sm.applied())
            }
      }
    })
  }

  start (): void { this.core.start() }

  async stop (): Promise<void> { this.core.stop(true) }

  status (): RaftStatus { return this.core.status() }
  isLeader (): boolean { return this.core.coreRole() === 'leader' }
  term (): number { return this.core.term() }
  /** the configuration, shared: do not modify */
  conf (): Readonly<ConfState> { return this.core.conf() }
  leaderId (): NodeId | null { return this.core.leaderId() }

  /** A message from the transport (already decoded): the receive path into the core, where the
   * admission filter (opts.admit) runs. */
  step (m: Message, fromPeer: NodeId | null = null): void {
    this.core.receive(m, fromPeer)
  }

  reportUnreachable (peer: NodeId): void { this.core.reportUnreachable(peer) }
  reportSnapshot (peer: NodeId, ok: boolean): void { this.core.reportSnapshot(peer, ok) }

  /** Every connection to `peer` closed. If it was our leader (a killed process's kernel resets
   * its sockets at once), campaign within ~150 ms instead of waiting out the election timeout;
   * a leader that is in fact alive keeps its lease with the other followers (RawNode.leaderLost). */
  peerDisconnected (peer: NodeId): void {
    const slot = Math.max(1, Math.round(LEADER_LOST_SLOT_MS / this.tickMs))
    if (this.core.leaderLost(peer, slot)) this.opts.log.info('lost the connection to the leader: campaigning early', { leader: peer, slotMs: slot * this.tickMs })
  }

  /** Propose a command on this node, which must be the leader. Resolves with the command's result once applied here. */
  async propose (env: CommandEnvelope): Promise<ApplyResult> {
    const full = { ...env, key: env.key ?? randomUUID() }
    const t0 = process.hrtime.bigint()
    return await new Promise<ApplyResult>((resolve, reject) => {
      this.core.propose(full, (o) => {
        if (!o.ok) { reject(o.error); return }
        this.opts.metrics?.raftProposalSeconds.observe(secondsSince(t0))
        resolve(o.result)
      })
    })
  }

  /** Resolves once the change has applied here (the leader), rejects as the core says why not. */
  async proposeConfChange (cc: AnyConfChange): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.core.proposeConfChangeWatched(cc, this.proposalTimeoutMs, CONF_POLL_MS, (err) => { if (err != null) reject(err); else resolve() })
    })
  }

  transferLeadership (to: NodeId): void { this.core.transferLeadership(to) }
  campaign (): void { this.core.campaign() }

  /** Linearizable read barrier: resolves once this node has applied everything committed before the call. */
  async readBarrier (timeoutMs = DEFAULT_READ_TIMEOUT_MS): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.core.readIndex(timeoutMs, (err) => { if (err != null) reject(err); else resolve() })
    })
  }
}

export function raftToBlix (e: unknown): Error {
  try { return coreRaftToBlix(e) } catch { return e instanceof Error ? e : new Error(String(e)) }
}
