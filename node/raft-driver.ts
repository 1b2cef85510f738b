// The Raft shell of a real node: ticks the pure core on a timer, persists each
// Ready through the LMDB log store (synced before any message that depends on
// it is sent), applies committed entries to the LMDB state machine, and turns
// proposals and ReadIndex requests into promises.
//
// Two things keep fsyncs off the write path, as etcd's shell does:
// - a leader sends its messages before writing its own entries (Raft thesis 10.2.1): the core
//   counts the leader's entries toward a quorum only after advance(), and nothing a leader sends
//   acknowledges its own disk. Not when term or vote changed: votes must be durable first;
// - a HardState whose only change is the commit index is not written at once (every LogStore
//   save is an fsync) but with the next save: Raft does not need commit to be durable, and after
//   a crash the core re-learns it from the leader and hands the entries out again (the driver
//   skips those the state machine already has). It is written before a compaction and at stop.
import { randomBytes, randomUUID, randomInt } from 'node:crypto'
import { RawNode } from '../protocols/raft/rawnode.ts'
import type { ConfChange, Message, Ready, NodeId } from '../protocols/raft/types.ts'
import { RaftError } from '../protocols/raft/types.ts'
import type { LogStore } from '../protocols/raft/storage.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'
import { encodeEnvelope } from '../storage/state-machine.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { Logger } from './log.ts'
import { ReadyPersistence } from './core/raft-loop.ts'
import type { NodeMetrics } from './metrics.ts'
import { raftIngressContext } from './core/raft-ingress-context.ts'
import { admitRaftMessage, DropLogOnce } from './core/raft-ingress.ts'

export interface RaftDriverOptions {
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
  /** take a state-machine snapshot and compact the log every this many applied entries */
  snapshotEvery?: number
  /** entries kept behind a snapshot so slow followers can still catch up without one */
  snapshotKeep?: number
  proposalTimeoutMs?: number
  /** called after every applied command (watch streams, events, agents) */
  onApplied?: (index: number, env: CommandEnvelope, result: ApplyResult) => void
  /** called when leadership or the leader changes */
  onLeaderChange?: (leader: NodeId | null, isLeader: boolean, term: number) => void
}

interface Pending {
  resolve: (r: ApplyResult) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
  t0: bigint
}

interface ReadWaiter {
  resolve: () => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
  index: number | null
}

/** After the leader's connection closes, the remaining voters campaign in turns of this long
 * (the first within it), so that two of them rarely split the vote. */
const LEADER_LOST_SLOT_MS = 150

/** A PRNG for election jitter: the core takes randomness as a parameter; here it is real randomness. */
function cryptoRandom (): number {
  return randomInt(0, 2 ** 47) / 2 ** 47
}

export class RaftDriver {
  readonly id: NodeId
  private readonly node: RawNode
  private readonly opts: Required<Pick<RaftDriverOptions, 'tickMs' | 'snapshotEvery' | 'snapshotKeep' | 'proposalTimeoutMs'>> & RaftDriverOptions
  private readonly pending = new Map<string, Pending>()
  private readonly reads = new Map<string, ReadWaiter>()
  /** reads whose index is known, waiting for apply */
  private readonly readsByIndex: ReadWaiter[] = []
  private ticker: NodeJS.Timeout | null = null
  private scheduled = false
  private stopped = false
  private leader: NodeId | null = null
  private lastSnapshotIndex: number
  /** last log index handed to us as committed and processed (conf entries included, which the
   * state machine never sees): what ReadIndex waits for */
  private appliedIdx = 0
  /** role as of the last Ready's soft state */
  private leading = false
  /** what reached disk and the commit-only HardState not written yet (see the file comment) */
  private readonly persistence: ReadyPersistence
  private readonly dropLog = new DropLogOnce()

  constructor (opts: RaftDriverOptions) {
    this.id = opts.id
    this.opts = { tickMs: 50, snapshotEvery: 10_000, snapshotKeep: 1_000, proposalTimeoutMs: 10_000, ...opts }
    const snap = opts.store.snapshot()
    this.lastSnapshotIndex = snap.meta.index
    // The state machine lives in its own LMDB env, committed without fsync (the synced log is the
    // source of truth and committed entries are re-applied after a crash). If it fell behind the
    // log's snapshot, the entries in between may be compacted away: start from the snapshot.
    if (snap.meta.index > opts.sm.applied()) {
      opts.sm.restore(snap.data, snap.meta.index)
      opts.log.info('state machine restored from the log snapshot', { index: snap.meta.index })
    }
    this.appliedIdx = Math.max(opts.sm.applied(), snap.meta.index)
    const hs = opts.store.initialState().hardState
    this.persistence = new ReadyPersistence(hs)
    this.node = new RawNode({
      id: opts.id,
      storage: opts.store,
      electionTick: opts.electionTick ?? 20,
      heartbeatTick: opts.heartbeatTick ?? 2,
      random: cryptoRandom,
      applied: opts.sm.applied(),
      maxSizePerMsg: 1 << 20,
      maxInflightMsgs: 256,
      preVote: true,
      checkQuorum: true
    })
  }

  start (): void {
    if (this.ticker != null) return
    this.ticker = setInterval(() => { this.node.tick(); this.schedule() }, this.opts.tickMs)
    this.schedule()
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.ticker != null) clearInterval(this.ticker)
    this.ticker = null
    this.flushDeferredHard()
    const err = new BlixardError('Unavailable', 'the node is shutting down; retry on another node')
    for (const [k, p] of this.pending) { clearTimeout(p.timer); p.reject(err); this.pending.delete(k) }
    for (const [k, r] of this.reads) { clearTimeout(r.timer); r.reject(err); this.reads.delete(k) }
    for (const r of this.readsByIndex.splice(0)) { clearTimeout(r.timer); r.reject(err) }
  }

  status (): ReturnType<RawNode['status']> { return this.node.status() }
  isLeader (): boolean { return this.node.status().role === 'leader' }
  leaderId (): NodeId | null { return this.node.status().lead }

  /** A message from the transport (already validated). */
  step (m: Message): void {
    if (this.stopped) return
    this.opts.metrics?.raftMessagesReceived.inc({ type: m.type })
    // who may speak Raft (node/core/raft-ingress.ts); the transport has checked m.from is the stream's peer
    const verdict = admitRaftMessage(m.from, m, raftIngressContext(this.id, this.node))
    if (!verdict.ok) {
      this.opts.metrics?.raftMessagesDropped.inc({ reason: verdict.reason })
      if (this.dropLog.first(m.from, verdict.reason)) this.opts.log.warn('raft message dropped (logged once per peer and reason)', { peer: m.from, type: m.type, reason: verdict.reason, detail: verdict.detail })
      return
    }
    try { this.node.step(m) } catch (e) { this.opts.log.warn('raft step failed', { type: m.type, from: m.from, err: e }) }
    this.schedule()
  }

  reportUnreachable (peer: NodeId): void { this.node.reportUnreachable(peer); this.schedule() }

  /** Every connection to `peer` closed. If it was our leader (a killed process's kernel resets
   * its sockets at once), campaign within ~150 ms instead of waiting out the election timeout;
   * a leader that is in fact alive keeps its lease with the other followers (RawNode.leaderLost). */
  peerDisconnected (peer: NodeId): void {
    if (this.stopped || this.node.status().lead !== peer) return
    const slot = Math.max(1, Math.round(LEADER_LOST_SLOT_MS / this.opts.tickMs))
    this.opts.log.info('lost the connection to the leader: campaigning early', { leader: peer, slotMs: slot * this.opts.tickMs })
    this.node.leaderLost(peer, slot)
    this.schedule()
  }
  reportSnapshot (peer: NodeId, ok: boolean): void { this.node.reportSnapshot(peer, ok); this.schedule() }

  /** Propose a command on this node, which must be the leader. Resolves with the command's result once applied here. */
  async propose (env: CommandEnvelope): Promise<ApplyResult> {
    if (this.stopped) throw new BlixardError('Unavailable', 'the node is shutting down')
    const key = env.key ?? randomUUID()
    const full: CommandEnvelope = { ...env, key }
    const existing = this.pending.get(key)
    if (existing != null) throw new BlixardError('InFlight', `a command with idempotency key ${key} is already in flight; retry later with the same key`)
    return await new Promise<ApplyResult>((resolve, reject) => {
      try {
        this.node.propose(encodeEnvelope(full))
      } catch (e) {
        reject(raftToBlix(e)); return
      }
      const timer = setTimeout(() => {
        this.pending.delete(key)
        reject(new BlixardError('Timeout', `command not committed within ${this.opts.proposalTimeoutMs} ms; it may still apply — retry with the same key`))
      }, this.opts.proposalTimeoutMs)
      this.pending.set(key, { resolve, reject, timer, t0: process.hrtime.bigint() })
      this.schedule()
    })
  }

  async proposeConfChange (cc: ConfChange): Promise<void> {
    try { this.node.proposeConfChange(cc) } catch (e) { throw raftToBlix(e) }
    this.schedule()
    // Wait until the core has applied it (it leaves pendingConfIndex behind).
    const deadline = Date.now() + this.opts.proposalTimeoutMs
    while (Date.now() < deadline) {
      const st = this.node.status()
      const inConf = cc.type === 'remove'
        ? !st.conf.voters.includes(cc.node) && !st.conf.learners.includes(cc.node)
        : cc.type === 'promote' ? st.conf.voters.includes(cc.node) : st.conf.learners.includes(cc.node) || st.conf.voters.includes(cc.node)
      if (inConf) return
      if (st.role !== 'leader') throw new BlixardError('NotLeader', 'leadership changed during the membership change', st.lead ?? undefined)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new BlixardError('Timeout', `membership change ${cc.type} ${cc.node} not applied in time`)
  }

  transferLeadership (to: NodeId): void { this.node.transferLeadership(to); this.schedule() }
  campaign (): void { this.node.campaign(); this.schedule() }

  /** Linearizable read barrier: resolves once this node has applied everything committed before the call. */
  async readBarrier (timeoutMs = 5_000): Promise<void> {
    if (this.stopped) throw new BlixardError('Unavailable', 'the node is shutting down')
    const ctx = randomBytes(12)
    const k = ctx.toString('hex')
    return await new Promise<void>((resolve, reject) => {
      try { this.node.readIndex(ctx) } catch (e) { reject(raftToBlix(e)); return }
      const timer = setTimeout(() => {
        this.reads.delete(k)
        const i = this.readsByIndex.indexOf(w); if (i >= 0) this.readsByIndex.splice(i, 1)
        reject(new BlixardError('Timeout', `linearizable read not confirmed within ${timeoutMs} ms (no quorum?); retry, or read with --stale`))
      }, timeoutMs)
      const w: ReadWaiter = { resolve, reject, timer, index: null }
      this.reads.set(k, w)
      this.schedule()
    })
  }

  private schedule (): void {
    if (this.scheduled || this.stopped) return
    this.scheduled = true
    setImmediate(() => { this.scheduled = false; this.drain() })
  }

  private drain (): void {
    for (let i = 0; i < 64 && !this.stopped && this.node.hasReady(); i++) {
      const t0 = process.hrtime.bigint()
      try { this.handle(this.node.ready()) } catch (err) {
        // A Ready half-handled (the log not written or not known durable, the state not committed) can never be taken as
        // done: stop at once, sending nothing more, and let the process exit; the restart recovers
        // from what the log holds (storage/lmdb-log-store.ts LogDurabilityError).
        this.stopped = true
        this.opts.log.error('fatal: storage failed while handling Raft output (log write, fsync or state-machine commit); stopping this node: it recovers from its log on restart', { err: String(err) })
        throw err
      }
      this.opts.metrics?.raftReadySeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9)
    }
    if (this.node.hasReady()) this.schedule()
  }

  private handle (rd: Ready): void {
    const { store, sm } = this.opts
    if (rd.softState != null) {
      this.leading = rd.softState.role === 'leader'
      this.noteSoftState(rd.softState.leader, this.leading)
    }
    this.persistence.persistAndSend(rd, this.leading, {
      store,
      send: (msgs) => this.sendAll(msgs),
      installSnapshot: (snap) => {
        // A joiner's first snapshot may be the leader's index-0 one: only the initial membership, no state.
        if (snap.meta.index > 0 || snap.data.byteLength > 0) sm.restore(snap.data, snap.meta.index)
        this.lastSnapshotIndex = snap.meta.index
        this.appliedIdx = Math.max(this.appliedIdx, snap.meta.index)
        this.opts.log.info('installed snapshot', { index: snap.meta.index, term: snap.meta.term })
      }
    })
    // Every committed command of this Ready in one state-machine transaction (one LMDB commit
    // instead of one per command), then the callers and hooks, in log order.
    const batch: Array<{ index: number, data: Uint8Array }> = []
    for (const e of rd.committedEntries) {
      this.appliedIdx = Math.max(this.appliedIdx, e.index)
      if (e.type === 'normal' && e.index > sm.applied()) batch.push({ index: e.index, data: e.data })
    }
    const envs: Array<CommandEnvelope | null> = []
    const results = batch.length > 0 ? sm.applyBatch(batch, envs) : []
    for (const [i, { index }] of batch.entries()) {
      const result = results[i]
      const env = envs[i]
      if (env?.key != null) {
        const p = this.pending.get(env.key)
        if (p != null) {
          this.pending.delete(env.key)
          clearTimeout(p.timer)
          this.opts.metrics?.raftProposalSeconds.observe(Number(process.hrtime.bigint() - p.t0) / 1e9)
          p.resolve(result)
        }
      }
      if (env != null && this.opts.onApplied != null) {
        try { this.opts.onApplied(index, env, result) } catch (err) { this.opts.log.warn('onApplied hook failed', { err }) }
      }
    }
    for (const rs of rd.readStates) {
      const k = Buffer.from(rs.context).toString('hex')
      const w = this.reads.get(k)
      if (w == null) continue
      this.reads.delete(k)
      w.index = rs.index
      this.readsByIndex.push(w)
    }
    this.releaseReads()
    this.node.advance(rd)
    this.maybeCompact()
    const st = this.node.status()
    const m = this.opts.metrics
    if (m != null) { m.raftTerm.set(st.term); m.raftCommitIndex.set(st.commit); m.raftAppliedIndex.set(sm.applied()) }
  }

  private sendAll (msgs: Message[]): void {
    if (msgs.length === 0) return
    for (const m of msgs) this.opts.metrics?.raftMessagesSent.inc({ type: m.type })
    this.opts.send(msgs)
  }

  private flushDeferredHard (): void {
    this.persistence.flushDeferred(this.opts.store)
  }

  private releaseReads (): void {
    const applied = this.appliedIdx
    for (let i = this.readsByIndex.length - 1; i >= 0; i--) {
      const w = this.readsByIndex[i]
      if (w.index != null && w.index <= applied) {
        this.readsByIndex.splice(i, 1)
        clearTimeout(w.timer)
        w.resolve()
      }
    }
  }

  private noteSoftState (leader: NodeId | null, isLeader: boolean): void {
    if (leader !== this.leader) {
      this.leader = leader
      this.opts.metrics?.raftLeaderChanges.inc()
      this.opts.log.info('leader changed', { leader, isLeader, term: this.node.status().term })
      this.opts.onLeaderChange?.(leader, isLeader, this.node.status().term)
    }
    this.opts.metrics?.raftIsLeader.set(isLeader ? 1 : 0)
    if (!isLeader && this.pending.size > 0) {
      // Our proposals may or may not commit under the new leader; callers retry with the same key (applied once).
      const err = new BlixardError('Unavailable', 'leadership changed before the command committed; retry with the same key')
      for (const [k, p] of this.pending) { clearTimeout(p.timer); p.reject(err); this.pending.delete(k) }
    }
  }

  private maybeCompact (): void {
    const applied = this.opts.sm.applied()
    if (applied - this.lastSnapshotIndex < this.opts.snapshotEvery) return
    const t0 = performance.now()
    const conf = this.node.status().conf
    // the snapshot must not get ahead of the commit index on disk
    this.flushDeferredHard()
    const snap = this.opts.sm.snapshot()
    this.opts.store.compact(applied, conf, snap, this.opts.snapshotKeep)
    this.lastSnapshotIndex = applied
    this.opts.log.info('compacted log', { index: applied, snapshotBytes: snap.byteLength, ms: Math.round(performance.now() - t0) })
  }
}

export function raftToBlix (e: unknown): Error {
  if (e instanceof RaftError) {
    if (e.kind === 'NotLeader') return new BlixardError('NotLeader', e.message, e.leaderHint ?? undefined)
    if (e.kind === 'ConfChangeInProgress') return new BlixardError('Conflict', e.message)
    if (e.kind === 'InvalidConfChange') return new BlixardError('InvalidCommand', e.message)
    return new BlixardError('Unavailable', e.message)
  }
  return e instanceof Error ? e : new Error(String(e))
}
