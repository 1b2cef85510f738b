// One run of the scale model: N hosts in one topology (topology.ts) on the simulator's virtual
// clock and network. The voters are the node core that ships (node/core/raft-node.ts over
// sim/memory-log-store.ts), so every Raft frame the leader sends or receives is one the shipped
// loop produced; in leader-fed and raft-relay every learner is such a node too (raft-relay: the
// core's own relayed learners, protocols/raft/relay.ts). The relays of follower-relay,
// relay-tree and read-through are modelled on top (relay.ts). A steady workload proposes a batch
// of writes at the leader every few ms (the forwarder batches per turn); the run counts, per node,
// the frames and bytes sent and received while those writes commit, how long each committed
// entry took to reach every learner (or, read-through, the host it concerns), and a checker
// (sim/checkers/relay-logs.ts) judges every relayed log. Pure and deterministic: virtual time,
// one seeded PRNG, no I/O.
import type { Entry, Message } from '../../protocols/raft/types.ts'
import type { CommandEnvelope } from '../../protocols/commands.ts'
import { RaftNode } from '../../node/core/raft-node.ts'
import type { CoreStateMachine } from '../../node/core/raft-node.ts'
import { encodeEnvelope, tryDecodeEnvelope } from '../../storage/envelope.ts'
import { encodePayload } from '../../protocols/framing.ts'
import { MemoryLogStore } from '../memory-log-store.ts'
import { EventQueue } from '../event-queue.ts'
import { Network } from '../network.ts'
import { Prng } from '../prng.ts'
import { ELECTION_TICK, HEARTBEAT_TICK, TICK_MS } from '../replica.ts'
import { RelayLogs } from '../checkers/relay-logs.ts'
import type { Violation } from '../checkers/checker.ts'
import type { Traffic } from './cost.ts'
import { Feeder, RelayLearner, WatchHost } from './relay.ts'
import type { RelayBug, RelayMsg } from './relay.ts'
import { DEFAULT_FANOUT, feederCandidates, rendezvous, shapeOf, treeDepth, treeParents, watchCandidates } from './topology.ts'
import type { Shape, Topology } from './topology.ts'

/** A libp2p peer id (Ed25519, base58) is 52 characters; the model's ids are short, so each id a
 * message carries is counted at that length. */
export const PEER_ID_CHARS = 52
/** Per frame on the wire: varint length, yamux header (12), Noise length (2) and tag (16). */
export const FRAME_OVERHEAD_BYTES = 32

export interface ScaleOptions {
  topology: Topology
  hosts: number
  seed: number
  /** writes in the measured window */
  writes: number
  /** writes proposed together (one forwarder turn), and the virtual ms between batches */
  batch: number
  intervalMs: number
  /** one-way delay of a link, virtual ms: uniform in [hopMs, hopMs + jitterMs]; each pair's
   * stream delivers in order (sim/network.ts `ordered`) */
  hopMs: number
  jitterMs: number
  /** probability a frame is lost */
  loss: number
  /** crash relays during the workload and restart them */
  faults: boolean
  fanout: number
  /** virtual ms after the last write for everyone to converge */
  settleMs: number
  /** linearizable reads, issued from hosts other than the leader after the writes, one every
   * readIntervalMs (their own phase, so the leader's frames per read can be told apart) */
  reads: number
  readIntervalMs: number
  bugs: ReadonlySet<RelayBug>
  trace: ((line: string) => void) | null
}

export const DEFAULT_SCALE: Omit<ScaleOptions, 'topology' | 'hosts'> = {
  seed: 1, writes: 400, batch: 4, intervalMs: 2, hopMs: 1, jitterMs: 2, loss: 0, faults: false, fanout: DEFAULT_FANOUT, settleMs: 1_000, reads: 100, readIntervalMs: 4, bugs: new Set(), trace: null
}

export type NodeRole = 'leader' | 'follower' | 'learner' | 'host'

export interface NodeReport {
  id: string
  role: NodeRole
  /** per committed write in the window */
  perWrite: Traffic
  /** Raft messages (not frames) sent per write: leader only meaningful */
  raftMsgsPerWrite: number
}

export interface ScaleResult {
  topology: Topology
  hosts: number
  voters: number
  learners: number
  watchers: number
  /** relay-tree: levels of learners under the followers */
  depth: number
  writes: number
  windowMs: number
  nodes: NodeReport[]
  leader: NodeReport | null
  /** virtual ms from commit (first voter to apply) to arrival at each learner / host, sorted */
  lagMs: number[]
  lagTicks: { p50: number, p99: number, max: number }
  /** every learner and host holds what it should at the end */
  converged: boolean
  violations: Violation[]
  /** relay (re)subscriptions over the run, beyond each learner's first */
  reattaches: number
  /** linearizable reads: answered, the leader's frames (sent + received) per read beyond an
   * idle window as long, and the latency at the host that asked */
  reads: { answered: number, leaderFramesPerRead: number, latencyTicks: { p50: number, p99: number } }
}

/** A linearizable read of a host without a Raft core: the read index comes from a voter (Raft's
 * ReadIndex, through the leader), then the asker waits until it has applied that index; a host
 * without a replica asks its replica, which does the same and answers when it is there. */
type ReadMsg =
  | { kind: 'read', from: string, to: string, id: number }
  | { kind: 'read-index', from: string, to: string, id: number, index: number }
  | { kind: 'read-done', from: string, to: string, id: number }

type ScaleWire = { kind: 'raft', msgs: Message[] } | RelayMsg | ReadMsg

function quantile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]
}

function emptyTraffic (): Traffic { return { framesSent: 0, framesRecv: 0, bytesSent: 0, bytesRecv: 0 } }

/** Bytes on the wire: the CBOR the transport would send, each id at a real peer id's length. */
function wireBytes (w: ScaleWire): number {
  const ids = w.kind === 'raft' ? w.msgs.length * 2 : 2
  const idFix = (PEER_ID_CHARS + 2) - 3 // a 52-char CBOR text vs the model's ~2-char ids
  return encodePayload(w.kind === 'raft' ? w.msgs : w).byteLength + ids * idFix + FRAME_OVERHEAD_BYTES
}

/** The bench's write (bench/raft/blixard.ts adminWrite): an AddAdmin with a 110-character name,
 * signed; the key names the host the write concerns (read-through watches select on it). */
function benchWrite (seq: number, host: string, rng: Prng): CommandEnvelope & { key: string } {
  const peer = '12D3KooW' + 'A'.repeat(PEER_ID_CHARS - 8)
  const sig = new Uint8Array(64)
  for (let i = 0; i < sig.length; i++) sig[i] = rng.int(256)
  const nonce = `${rng.next().toString(16).padStart(8, '0')}-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`
  return {
    cmd: { type: 'AddAdmin', peerId: peer, name: `w${seq}-`.padEnd(110, 'x') },
    at: seq,
    key: `w${seq}@${host}`,
    auth: { signer: peer, nonce, until: 1_000_000, sig }
  }
}

/** The host a committed entry concerns (its key's suffix), cached per entry object. */
const concernsCache = new WeakMap<Entry, string | null>()
export function concerns (e: Entry): string | null {
  const hit = concernsCache.get(e)
  if (hit !== undefined) return hit
  let who: string | null = null
  if (e.type === 'normal' && e.data.byteLength > 0) {
    const d = tryDecodeEnvelope(e.data)
    const key = d.ok ? d.env.key : undefined
    const at = key == null ? -1 : key.lastIndexOf('@')
    if (key != null && at >= 0) who = key.slice(at + 1)
  }
  concernsCache.set(e, who)
  return who
}

interface Voter {
  id: string
  store: MemoryLogStore
  core: RaftNode | null
  up: boolean
  feeder: Feeder | null
  learner: boolean
  /** first index this node applied in its current life is re-applied after a restart: only
   * indexes beyond `seen` count (for lag and the checker) */
  seen: number
}

export function runScale (opts: Partial<ScaleOptions> & { topology: Topology, hosts: number }): ScaleResult {
  const o: ScaleOptions = { ...DEFAULT_SCALE, ...opts }
  const shape: Shape = shapeOf(o.topology, o.hosts, o.fanout)
  const sched = new EventQueue()
  sched.maxEvents = Number.MAX_SAFE_INTEGER
  const rng = new Prng(o.seed)
  const wl = rng.fork('workload')
  const trace = o.trace
  const checker = new RelayLogs()
  const traffic = new Map<string, Traffic>()
  const raftSent = new Map<string, number>()
  const t = (id: string): Traffic => { let x = traffic.get(id); if (x === undefined) { x = emptyTraffic(); traffic.set(id, x) } return x }

  // Raft frames and relay traffic draw their delays and losses from streams of their own, so the
  // voters' Raft exchange does not change with how many relays share the network.
  const network = (stream: string): Network<ScaleWire> => {
    const n = new Network<ScaleWire>(sched, rng.fork(stream), (from, to, w) => {
      const ok = deliver(to, w)
      if (ok) { const r = t(to); r.framesRecv++; r.bytesRecv += wireBytes(w) }
      return ok
    })
    n.faults = { loss: o.loss, duplicate: 0, minDelay: o.hopMs, maxDelay: o.hopMs + o.jitterMs, slow: 0, slowDelay: 0 }
    n.ordered = true
    return n
  }
  const raftNet = network('network/raft')
  const relayNet = network('network/relay')

  const send = (from: string, to: string, w: ScaleWire): void => {
    const s = t(from)
    s.framesSent++
    s.bytesSent += wireBytes(w)
    if (w.kind === 'raft') raftNet.send(from, to, w); else relayNet.send(from, to, w)
  }
  const relayEnv = (id: string): { now: () => number, send: (m: RelayMsg) => void } => ({ now: () => sched.now(), send: (m) => { send(id, m.to, m) } })

  // --- voters (and leader-fed learners): the shipped node core -------------------------------
  // learners that are Raft learners of the shipped core: fed by the leader, or by a follower
  const coreLearners = o.topology === 'leader-fed' || o.topology === 'raft-relay'
  const raftLearners = coreLearners ? shape.learners : []
  const conf = { voters: shape.voters, learners: raftLearners }
  const voters = new Map<string, Voter>()
  const commitAt = new Map<number, number>()
  const lags: number[] = []
  let measuring = false
  const measured = new Set<number>()
  let leaderWrites = 0
  let windowEnd = -1

  const startCore = (v: Voter): void => {
    let applied = 0
    const sm: CoreStateMachine = {
      applied: () => applied,
      applyBatch: (es) => { applied = es[es.length - 1].index; return es.map(() => ({ ok: true })) },
      restore: (_d, i) => { applied = i },
      snapshot: () => new Uint8Array(0)
    }
    const er = rng.fork(`election/${v.id}/${sched.now()}`)
    const core: RaftNode = new RaftNode({
      id: v.id,
      store: v.store,
      sm,
      send: (msgs) => {
        const byPeer = new Map<string, Message[]>()
        for (const m of msgs) { const g = byPeer.get(m.to); if (g === undefined) byPeer.set(m.to, [m]); else g.push(m) }
        raftSent.set(v.id, (raftSent.get(v.id) ?? 0) + msgs.length)
        for (const [to, g] of byPeer) send(v.id, to, { kind: 'raft', msgs: g })
      },
      timers: { after: (ms, run) => { let live = true; sched.after(ms, () => { if (live) run() }); return () => { live = false } } },
      // one Ready per turn, as setImmediate gives the daemon: what arrives together leaves together
      defer: (run) => { sched.after(0, run) },
      random: () => er.float(),
      readContextPrefix: v.id,
      tickMs: TICK_MS,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 256,
      relayLearners: o.topology === 'raft-relay',
      proposalTimeoutMs: null,
      compaction: { due: () => false, keep: () => 0 },
      applyEachEntryAlone: false,
      readiesPerDrain: 10_000,
      hooks: {
        onRole: (role) => {
          trace?.(`${sched.now()} ${v.id} role ${role}`)
          if (role === 'leader') v.feeder?.byeAll()
        },
        onApplied: (e) => {
          if (e.index <= v.seen) return
          v.seen = e.index
          const now = sched.now()
          if (!v.learner) {
            checker.onCommitted(v.id, e, now)
            if (!commitAt.has(e.index)) commitAt.set(e.index, now)
            if (core.isLeader() && measured.has(e.index) && ++leaderWrites === o.writes) endWindow()
          } else {
            checker.onLearnerAppend(v.id, e, now)
            noteArrival(e, now)
          }
          settleReads(v.id, e.index)
        },
        onReadyDone: () => { v.feeder?.pump() }
      }
    })
    v.core = core
    core.start()
  }

  const noteArrival = (e: Entry, now: number): void => {
    const c = commitAt.get(e.index)
    if (measuring && measured.has(e.index) && c !== undefined) lags.push(now - c)
  }

  for (const id of [...shape.voters, ...raftLearners]) {
    const v: Voter = { id, store: new MemoryLogStore({ conf }), core: null, up: true, feeder: null, learner: !shape.voters.includes(id), seen: 0 }
    voters.set(id, v)
    if (!v.learner && !coreLearners) {
      v.feeder = new Feeder(id, {
        committed: () => v.core?.applied() ?? 0,
        entries: (lo, hi) => v.store.entries(lo, hi)
      }, relayEnv(id), () => v.core?.leaderId() ?? null, concerns)
    }
    startCore(v)
  }

  // --- relayed learners and hosts without a replica -----------------------------------------
  const parents = treeParents(shape.voters.slice(1), shape.learners, shape.fanout)
  const followersBut = (lead: string | null): string[] => {
    // at the start nobody knows a leader: n1 campaigns first, so it is left out until told
    const l = lead ?? shape.voters[0]
    return shape.voters.filter((x) => x !== l)
  }
  const relays = new Map<string, RelayLearner>()
  const hosts = new Map<string, WatchHost>()
  if (!coreLearners) {
    for (const id of shape.learners) {
      relays.set(id, new RelayLearner(id, relayEnv(id), (lead) => feederCandidates(shape, id, followersBut(lead), parents),
        { onAppend: (who, e, now) => { checker.onLearnerAppend(who, e, now); noteArrival(e, now); settleReads(who, e.index) } }, o.bugs, concerns))
    }
    for (const id of shape.watchers) {
      hosts.set(id, new WatchHost(id, relayEnv(id), (lead) => watchCandidates(shape, id, followersBut(lead)),
        (who, e, now) => { checker.onEvent(who, e, now, concerns); noteArrival(e, now) }, o.bugs))
    }
  }

  function deliver (to: string, w: ScaleWire): boolean {
    if (w.kind === 'read' || w.kind === 'read-index' || w.kind === 'read-done') return deliverRead(to, w)
    const v = voters.get(to)
    if (v !== undefined) {
      if (!v.up || v.core === null) return false
      if (w.kind === 'raft') { for (const m of w.msgs) v.core.receive(m); return true }
      const f = v.feeder
      if (f === null) return true
      const leads = v.core.isLeader() || v.core.leaderId() === v.id
      if (w.kind === 'sub' || w.kind === 'watch') {
        if (leads) { send(to, w.from, { kind: 'bye', from: to, to: w.from, lead: to }); return true }
        if (w.kind === 'sub') f.subscribe(w.from, w.applied); else f.watch(w.from, w.since)
      } else if (w.kind === 'unsub') f.unsubscribe(w.from)
      return true
    }
    if (w.kind === 'raft') return false
    const r = relays.get(to)
    if (r !== undefined) { if (!r.up) return false; r.receive(w); return true }
    const h = hosts.get(to)
    if (h !== undefined) { if (!h.up) return false; h.receive(w); return true }
    return false
  }

  // one tick for every relay, feeder and host: heartbeats, timeouts
  const tickAll = (): void => {
    for (const v of voters.values()) if (v.up && v.core !== null && !v.core.isLeader()) v.feeder?.heartbeat()
    for (const r of relays.values()) r.tick()
    for (const h of hosts.values()) h.tick()
    sched.after(TICK_MS, tickAll)
  }
  sched.after(1, tickAll)

  // --- the workload ---------------------------------------------------------------------------
  voters.get(shape.voters[0])?.core?.campaign()
  const t0 = 200
  const leaderNow = (): Voter | undefined => [...voters.values()].find((v) => v.up && v.core?.isLeader() === true)
  let before = new Map<string, Traffic>()
  let beforeRaft = new Map<string, number>()
  let after: Map<string, Traffic> | null = null
  let afterRaft: Map<string, number> | null = null
  let seq = 0
  const batches = Math.ceil(o.writes / o.batch)
  const copy = (): Map<string, Traffic> => new Map([...traffic].map(([k, x]) => [k, { ...x }]))
  function endWindow (): void {
    if (after !== null) return
    after = copy()
    afterRaft = new Map(raftSent)
    windowEnd = sched.now()
  }
  sched.at(t0, () => { before = copy(); beforeRaft = new Map(raftSent); measuring = true })
  for (let b = 0; b < batches; b++) {
    sched.at(t0 + b * o.intervalMs, () => {
      const l = leaderNow()
      if (l === undefined || l.core === null) { trace?.(`${sched.now()} no leader for batch ${b}`); return }
      for (let i = 0; i < o.batch && seq < o.writes; i++) {
        const env = benchWrite(seq++, `n${1 + wl.int(o.hosts)}`, wl)
        // the index it will take: the leader appends each proposal to its log at once
        measured.add(l.core.lastIndex() + 1)
        l.core.proposeUnwatched(env)
      }
    })
  }
  const workEnd = t0 + batches * o.intervalMs
  // a write proposed but not committed by then (the leader lost it) ends the window anyway
  sched.at(workEnd + 500, endWindow)

  // --- faults: relays crash during the workload and come back ------------------------------------
  if (o.faults) {
    const victims: string[] = []
    if (shape.voters.length > 1) victims.push(shape.voters[1])
    if (shape.learners.length > 0) victims.push(coreLearners ? shape.learners[shape.learners.length - 1] : shape.learners[0])
    const crashAt = t0 + Math.floor((workEnd - t0) * 0.3)
    const restartAt = t0 + Math.floor((workEnd - t0) * 0.6) + 150
    for (const id of victims) {
      sched.at(crashAt, () => { trace?.(`${sched.now()} crash ${id}`); crash(id) })
      sched.at(restartAt, () => { trace?.(`${sched.now()} restart ${id}`); restart(id) })
    }
  }
  function crash (id: string): void {
    const v = voters.get(id)
    if (v !== undefined) { v.core?.crash(); v.core = null; v.up = false; v.store.crash(); v.feeder?.reset(); return }
    relays.get(id)?.crash()
  }
  function restart (id: string): void {
    const v = voters.get(id)
    if (v !== undefined) { v.up = true; v.feeder?.reset(); startCore(v); return }
    relays.get(id)?.restart()
  }

  // --- linearizable reads, in a phase of their own --------------------------------------------
  const readStart = new Map<number, number>()
  const readLat: number[] = []
  /** per replica learner: reads waiting for its log to reach an index; `host`: who to answer */
  const waiting = new Map<string, Array<{ id: number, index: number, host: string | null }>>()
  let nextRead = 1
  const readRng = rng.fork('reads')
  const doneRead = (id: number): void => {
    const t0r = readStart.get(id)
    if (t0r === undefined) return
    readStart.delete(id)
    readLat.push(sched.now() - t0r)
  }
  function settleReads (who: string, applied: number): void {
    const ws = waiting.get(who)
    if (ws === undefined) return
    const left = ws.filter((r) => {
      if (r.index > applied) return true
      if (r.host === null) doneRead(r.id)
      else send(who, r.host, { kind: 'read-done', from: who, to: r.host, id: r.id })
      return false
    })
    if (left.length === 0) waiting.delete(who); else waiting.set(who, left)
  }
  /** A replica learner asks a follower for the read index on behalf of itself or `host`. */
  const relayRead = (r: RelayLearner, id: number, host: string | null): void => {
    // its feeder when that is a voter (a connection it holds already), else its first follower
    const voter = r.feeder !== null && voters.has(r.feeder) ? r.feeder : (rendezvous(r.id, followersBut(r.knownLeader))[0] ?? shape.voters[0])
    const ws = waiting.get(r.id) ?? []
    ws.push({ id, index: Infinity, host })
    waiting.set(r.id, ws)
    send(r.id, voter, { kind: 'read', from: r.id, to: voter, id })
  }
  function deliverRead (to: string, w: ReadMsg): boolean {
    const v = voters.get(to)
    if (v !== undefined) {
      if (!v.up || v.core === null) return false
      if (w.kind !== 'read') return true
      v.core.readIndex(2_000, (err, index) => {
        if (err === null) send(to, w.from, { kind: 'read-index', from: to, to: w.from, id: w.id, index })
        else trace?.(`${sched.now()} read ${w.id} at ${to}: ${err.message}`)
      })
      return true
    }
    const r = relays.get(to)
    if (r !== undefined) {
      if (!r.up) return false
      if (w.kind === 'read') relayRead(r, w.id, w.from)
      else if (w.kind === 'read-index') {
        const ws = waiting.get(to)?.find((x) => x.id === w.id)
        if (ws !== undefined) ws.index = w.index
        settleReads(to, r.last())
      }
      return true
    }
    const h = hosts.get(to)
    if (h === undefined || !h.up) return false
    // read-index straight from a voter: a host whose watch fell back to a follower; the voter
    // answered once it had applied the index, so the read is served there
    if (w.kind === 'read-done' || w.kind === 'read-index') doneRead(w.id)
    return true
  }
  const issueRead = (who: string): void => {
    const id = nextRead++
    readStart.set(id, sched.now())
    const v = voters.get(who)
    if (v !== undefined) {
      v.core?.readIndex(2_000, (err) => { if (err === null) doneRead(id) })
      return
    }
    const r = relays.get(who)
    if (r !== undefined) { relayRead(r, id, null); return }
    const h = hosts.get(who)
    if (h?.replica != null) send(who, h.replica, { kind: 'read', from: who, to: h.replica, id })
  }
  const readPhase = workEnd + 600 + o.settleMs
  const readSpan = Math.max(1, o.reads) * o.readIntervalMs
  let idleFrames = 0
  let readFrames = 0
  const leaderFrames = (): number => { const id = leaderNow()?.id; const x = id === undefined ? undefined : traffic.get(id); return x === undefined ? 0 : x.framesSent + x.framesRecv }
  if (o.reads > 0) {
    // an idle window as long as the reads' just before them: the heartbeats the leader sends anyway
    sched.at(readPhase - readSpan - 200, () => { idleFrames = -leaderFrames() })
    sched.at(readPhase - 200, () => { idleFrames += leaderFrames() })
    sched.at(readPhase, () => { readFrames = -leaderFrames() })
    const askers = [...shape.voters.slice(1), ...shape.learners, ...shape.watchers]
    for (let i = 0; i < o.reads && askers.length > 0; i++) {
      sched.at(readPhase + i * o.readIntervalMs, () => {
        const lead = leaderNow()?.id
        const pool = askers.filter((x) => x !== lead)
        if (pool.length > 0) issueRead(readRng.pick(pool))
      })
    }
    sched.at(readPhase + readSpan, () => { readFrames += leaderFrames() })
  }

  sched.runUntil(o.reads > 0 ? readPhase + readSpan + 500 : workEnd + 500 + o.settleMs)

  // --- what the run counted -------------------------------------------------------------------
  const end = after ?? copy()
  const endRaft = afterRaft ?? new Map(raftSent)
  const writes = Math.max(1, leaderWrites)
  const leaderId = leaderNow()?.id ?? null
  const roleOf = (id: string): NodeRole => {
    if (id === leaderId) return 'leader'
    if (shape.voters.includes(id)) return 'follower'
    if (shape.learners.includes(id)) return 'learner'
    return 'host'
  }
  const all = [...shape.voters, ...shape.learners, ...shape.watchers]
  const nodes: NodeReport[] = all.map((id) => {
    const a = end.get(id) ?? emptyTraffic()
    const b = before.get(id) ?? emptyTraffic()
    return {
      id,
      role: roleOf(id),
      perWrite: {
        framesSent: (a.framesSent - b.framesSent) / writes,
        framesRecv: (a.framesRecv - b.framesRecv) / writes,
        bytesSent: (a.bytesSent - b.bytesSent) / writes,
        bytesRecv: (a.bytesRecv - b.bytesRecv) / writes
      },
      raftMsgsPerWrite: ((endRaft.get(id) ?? 0) - (beforeRaft.get(id) ?? 0)) / writes
    }
  })
  const commit = leaderId === null ? 0 : (voters.get(leaderId)?.core?.status().commit ?? 0)
  const learnerLogs = coreLearners
    ? raftLearners.map((id) => { const s = (voters.get(id) as Voter).store; return { id, log: s.lastIndex() === 0 ? [] : s.entries(1, Math.min(commit, s.lastIndex()) + 1) } })
    : [...relays.values()].map((r) => ({ id: r.id, log: r.log }))
  // a leader-fed learner may hold entries beyond the commit index (not yet committed): cut there
  checker.finish({ now: sched.now(), commit, learners: learnerLogs, watchers: [...hosts.values()].map((h) => ({ id: h.id, got: h.got })), concerns })
  lags.sort((x, y) => x - y)
  const q = (p: number): number => lags.length === 0 ? NaN : lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] / TICK_MS
  return {
    topology: o.topology,
    hosts: o.hosts,
    voters: shape.voters.length,
    learners: shape.learners.length,
    watchers: shape.watchers.length,
    depth: o.topology === 'relay-tree' ? treeDepth(parents, shape.voters) : (shape.learners.length > 0 ? 1 : 0),
    writes: leaderWrites,
    windowMs: (windowEnd < 0 ? sched.now() : windowEnd) - t0,
    nodes,
    leader: nodes.find((n) => n.role === 'leader') ?? null,
    lagMs: lags,
    lagTicks: { p50: q(0.5), p99: q(0.99), max: lags.length === 0 ? NaN : lags[lags.length - 1] / TICK_MS },
    converged: checker.violations.every((v) => !v.message.includes('not converged')),
    violations: checker.violations,
    reattaches: [...relays.values(), ...hosts.values()].reduce((a, x) => a + Math.max(0, x.attaches - 1), 0),
    reads: {
      answered: readLat.length,
      leaderFramesPerRead: readLat.length === 0 ? NaN : (readFrames - idleFrames) / o.reads,
      latencyTicks: { p50: quantile(readLat, 0.5) / TICK_MS, p99: quantile(readLat, 0.99) / TICK_MS }
    }
  }
}
