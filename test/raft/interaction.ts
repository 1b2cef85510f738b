// A tiny interaction DSL for scenario tests (after etcd's rafttest): a script of
// commands drives N RawNodes over MemoryLogStores and a hand-operated network,
// and every command prints what happened so a scenario reads like a story.
import { RawNode, RaftError, confChangeText, decodeConfChange } from '../../protocols/raft/index.ts'
import type { ConfChange, ConfChangeV2, ConfState, Entry, Message, NodeId, RaftBug, Ready } from '../../protocols/raft/index.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

interface NodeOptions {
  preVote: boolean
  checkQuorum: boolean
  maxSizePerMsg?: number
  maxInflightMsgs?: number
  maxUncommittedBytes?: number
  bugs: Set<RaftBug>
}

interface SimNode {
  id: NodeId
  store: MemoryLogStore
  raw: RawNode | null
  opts: NodeOptions
  /** Applied normal entries' data with their index (the "state machine"). */
  applied: Array<[number, string]>
  appliedIndex: number
}

export function fmtEntry (e: Entry): string {
  if (e.type === 'conf') {
    try {
      return `${e.term}/${e.index} conf(${confChangeText(decodeConfChange(e.data))})`
    } catch {
      return `${e.term}/${e.index} conf(?)`
    }
  }
  return `${e.term}/${e.index} '${dec.decode(e.data)}'`
}

export function fmtMsg (m: Message): string {
  let s = `${m.from}->${m.to} ${m.type} term=${m.term}`
  if (m.logTerm !== undefined) s += ` logTerm=${m.logTerm}`
  if (m.index !== undefined) s += ` index=${m.index}`
  if (m.commit !== undefined) s += ` commit=${m.commit}`
  if (m.reject === true) s += ` rejected hint=${m.rejectHint ?? '-'}`
  if (m.entries !== undefined && m.entries.length > 0) s += ` entries=[${m.entries.map(fmtEntry).join(', ')}]`
  if (m.snapshot !== undefined) s += ` snap=${m.snapshot.meta.term}/${m.snapshot.meta.index} ${fmtConf(m.snapshot.meta.conf)}`
  if (m.context !== undefined && m.context.byteLength > 0) s += ` ctx=${dec.decode(m.context)}`
  return s
}

function fmtConf (c: ConfState): string {
  const joint = (c.votersOutgoing?.length ?? 0) > 0
    ? ` outgoing=(${(c.votersOutgoing ?? []).join(' ')}) learnersNext=(${(c.learnersNext ?? []).join(' ')})${c.autoLeave === true ? ' autoLeave' : ''}`
    : ''
  return `voters=(${c.voters.join(' ')}) learners=(${c.learners.join(' ')})${joint}`
}

function fmtErr (e: unknown): string {
  if (e instanceof RaftError) return `error: ${e.kind}${e.leaderHint !== null ? ` (leader hint ${e.leaderHint})` : ''}`
  throw e
}

/** Simple options: `key=value` and bare flags. */
function parseOpts (args: string[]): Map<string, string> {
  const m = new Map<string, string>()
  for (const a of args) {
    const k = a.indexOf('=')
    if (k < 0) m.set(a, 'true')
    else m.set(a.slice(0, k), a.slice(k + 1))
  }
  return m
}

export class InteractionEnv {
  private readonly nodes = new Map<NodeId, SimNode>()
  /** Messages sent and not yet delivered, in send order. */
  private inflight: Message[] = []
  private readonly isolated = new Set<NodeId>()
  private out: string[] = []
  /** `log-level none` hides the story (for set-up steps); `log-level all` shows it again. */
  private quiet = false

  /** Run one command; returns its output lines. */
  run (line: string): string {
    this.out = []
    const [cmd, ...args] = line.trim().split(/\s+/)
    switch (cmd) {
      case 'add-nodes': this.addNodes(args); break
      case 'campaign': this.node(args[0]).campaign(); break
      case 'propose': this.guard(() => this.node(args[0]).propose(enc.encode(args[1] ?? ''))); break
      case 'propose-conf': {
        const type = ({ 'add-learner': 'addLearner', promote: 'promote', remove: 'remove' } as const)[args[1] as 'promote']
        if (type === undefined) throw new Error(`propose-conf: bad type ${args[1]}`)
        const cc: ConfChange = { type, node: args[2] }
        this.guard(() => this.node(args[0]).proposeConfChange(cc))
        break
      }
      case 'propose-conf-v2': {
        // `propose-conf-v2 1 auto add-voter=4 remove=3`: node 1 proposes a conf change v2.
        const transition = args[1]
        if (transition !== 'auto' && transition !== 'explicit') throw new Error(`propose-conf-v2: bad transition ${transition}`)
        const changes: ConfChangeV2['changes'] = args.slice(2).map((a) => {
          const [type, node] = a.split('=')
          if ((type !== 'add-voter' && type !== 'add-learner' && type !== 'remove') || node === undefined) throw new Error(`propose-conf-v2: bad change ${a}`)
          return { type, node }
        })
        this.guard(() => this.node(args[0]).proposeConfChange({ changes, transition }))
        break
      }
      case 'leave-joint': this.guard(() => this.node(args[0]).proposeConfChange({ changes: [], transition: 'explicit' })); break
      case 'add-learner': case 'promote': case 'remove': {
        // Shorthand: `add-learner 4` asks the current leader, `add-learner 1 4` asks node 1.
        const [by, target] = args.length > 1 ? [args[0], args[1]] : [this.leader(), args[0]]
        const type = cmd === 'add-learner' ? 'addLearner' : cmd
        this.guard(() => this.node(by).proposeConfChange({ type, node: target }))
        break
      }
      case 'transfer': this.guard(() => this.node(args[0]).transferLeadership(args[1])); break
      case 'read-index': this.guard(() => this.node(args[0]).readIndex(enc.encode(args[1]))); break
      case 'tick': {
        const n = Number(args[1] ?? '1')
        for (let i = 0; i < n; i++) this.node(args[0]).tick()
        break
      }
      case 'process-ready':
        if (args.includes('nosync')) this.processReadyNoSync(args[0])
        else for (const id of args) this.processReady(id)
        break
      case 'deliver-msgs': {
        const o = parseOpts(args)
        const drop = o.has('drop')
        const type = o.get('type')
        for (const id of args.filter(a => !a.includes('=') && a !== 'drop')) this.deliver(id, drop, type)
        break
      }
      case 'stabilize': this.stabilize(args.length > 0 ? args : [...this.nodes.keys()]); break
      case 'isolate': case 'partition': this.isolated.add(args[0]); break
      case 'heal': this.isolated.clear(); break
      case 'log-level': this.quiet = args[0] === 'none'; break
      case 'status': this.status(args[0]); break
      case 'raft-log': this.raftLog(args[0]); break
      case 'applied': this.print(`${args[0]}: [${this.sim(args[0]).applied.map(a => a[1]).join(' ')}]`); break
      case 'compact': this.compact(args[0], Number(args[1])); break
      case 'crash': this.crash(args[0]); break
      case 'restart': this.restart(args[0]); break
      case 'report-snapshot': this.node(args[0]).reportSnapshot(args[1], args[2] === 'ok'); break
      case 'report-unreachable': this.node(args[0]).reportUnreachable(args[1]); break
      default: throw new Error(`unknown command ${cmd}`)
    }
    return this.out.length > 0 ? this.out.join('\n') : 'ok'
  }

  private print (s: string): void {
    if (!this.quiet) this.out.push(s)
  }

  private guard (f: () => void): void {
    try {
      f()
    } catch (e) {
      this.print(fmtErr(e))
    }
  }

  private sim (id: NodeId): SimNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  private node (id: NodeId): RawNode {
    const n = this.sim(id)
    if (n.raw === null) throw new Error(`node ${id} is down`)
    return n.raw
  }

  private leader (): NodeId {
    for (const n of this.nodes.values()) if (n.raw?.status().role === 'leader') return n.id
    throw new Error('no leader')
  }

  private newRaw (n: SimNode): RawNode {
    return new RawNode({
      id: n.id,
      storage: n.store,
      electionTick: 10,
      heartbeatTick: 1,
      // Deterministic and distinct: node k times out after electionTick + (k-1) ticks (10, 11, 12...).
      random: () => ((Number(n.id) - 1) % 10) / 10,
      applied: n.appliedIndex,
      preVote: n.opts.preVote,
      checkQuorum: n.opts.checkQuorum,
      maxSizePerMsg: n.opts.maxSizePerMsg,
      maxInflightMsgs: n.opts.maxInflightMsgs,
      maxUncommittedBytes: n.opts.maxUncommittedBytes,
      bugs: n.opts.bugs
    })
  }

  /** `add-nodes N [voters=1,2,3] [learners=4] [empty] [pre-vote=false] [check-quorum=false]
   * [max-size=B] [max-inflight=K] [bugs=a,b]`: nodes numbered after the existing ones. */
  private addNodes (args: string[]): void {
    const count = Number(args[0])
    const o = parseOpts(args.slice(1))
    const first = this.nodes.size + 1
    const ids = Array.from({ length: count }, (_, k) => String(first + k))
    const list = (k: string, dflt: string[]): string[] => o.has(k) ? o.get(k)!.split(',').filter(x => x !== '') : dflt
    const conf: ConfState = o.has('empty') ? { voters: [], learners: [] } : { voters: list('voters', ids), learners: list('learners', []) }
    const num = (k: string): number | undefined => o.has(k) ? Number(o.get(k)) : undefined
    for (const id of ids) {
      const n: SimNode = {
        id,
        store: new MemoryLogStore({ conf }),
        raw: null,
        opts: {
          preVote: o.get('pre-vote') !== 'false',
          checkQuorum: o.get('check-quorum') !== 'false',
          maxSizePerMsg: num('max-size'),
          maxInflightMsgs: num('max-inflight'),
          maxUncommittedBytes: num('max-uncommitted'),
          bugs: new Set(list('bugs', []) as RaftBug[])
        },
        applied: [],
        appliedIndex: 0
      }
      n.raw = this.newRaw(n)
      this.nodes.set(id, n)
    }
    this.print(`added ${ids.join(' ')} with ${fmtConf(conf)}`)
  }

  /** Persist, send, apply, advance: the shell's loop for one Ready. Returns false if none. */
  private processReady (id: NodeId): boolean {
    const n = this.sim(id)
    if (n.raw === null || !n.raw.hasReady()) return false
    const rd = n.raw.ready()
    this.printReady(id, rd)
    n.store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
    if (rd.mustSync) n.store.sync()
    else if (rd.hardState !== null) n.store.sync()
    // A crashed node receives nothing, not even later.
    this.inflight.push(...rd.messages.filter(m => this.nodes.get(m.to)?.raw !== null))
    if (rd.snapshot !== null) {
      n.applied = decodeApplied(rd.snapshot.data)
      n.appliedIndex = rd.snapshot.meta.index
    }
    for (const e of rd.committedEntries) {
      if (e.type === 'normal' && e.data.byteLength > 0) n.applied.push([e.index, dec.decode(e.data)])
      n.appliedIndex = e.index
    }
    n.raw.advance(rd)
    return true
  }

  /** The node writes its Ready but loses power before the sync: nothing is sent or applied,
   * and the node must be crashed next. */
  private processReadyNoSync (id: NodeId): void {
    const n = this.sim(id)
    if (n.raw === null || !n.raw.hasReady()) return
    const rd = n.raw.ready()
    this.printReady(id, rd)
    n.store.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot })
    this.print('  (written, not synced: nothing sent)')
  }

  private printReady (id: NodeId, rd: Ready): void {
    this.print(`> ${id} handling Ready`)
    if (rd.softState !== null) this.print(`  State: ${rd.softState.role} lead=${rd.softState.leader ?? 'none'}`)
    if (rd.hardState !== null) this.print(`  HardState: term=${rd.hardState.term} vote=${rd.hardState.vote ?? 'none'} commit=${rd.hardState.commit}`)
    if (rd.snapshot !== null) this.print(`  Snapshot: ${rd.snapshot.meta.term}/${rd.snapshot.meta.index} ${fmtConf(rd.snapshot.meta.conf)}`)
    if (rd.entries.length > 0) this.print(`  Entries: ${rd.entries.map(fmtEntry).join(', ')}`)
    if (rd.committedEntries.length > 0) this.print(`  Committed: ${rd.committedEntries.map(fmtEntry).join(', ')}`)
    for (const m of rd.messages) this.print(`  send ${fmtMsg(m)}`)
    for (const r of rd.readStates) this.print(`  ReadState: index=${r.index} ctx=${dec.decode(r.context)}`)
  }

  private deliver (id: NodeId, drop: boolean, type?: string): boolean {
    const mine = this.inflight.filter(m => m.to === id && (type === undefined || m.type === type))
    if (mine.length === 0) return false
    this.inflight = this.inflight.filter(m => !mine.includes(m))
    const n = this.nodes.get(id)
    this.print(`> ${id} receiving messages`)
    for (const m of mine) {
      const lost = drop || n === undefined || n.raw === null || this.isolated.has(m.from) || this.isolated.has(m.to)
      this.print(`  ${fmtMsg(m)}${lost ? '  DROPPED' : ''}`)
      if (!lost) n.raw!.step(m)
    }
    return true
  }

  private stabilize (ids: NodeId[]): void {
    for (;;) {
      let busy = false
      for (const id of ids) busy = this.processReady(id) || busy
      for (const id of ids) busy = this.deliver(id, false) || busy
      if (!busy) return
    }
  }

  private status (id: NodeId): void {
    const s = this.node(id).status()
    this.print(`${id}: ${s.role} term=${s.term} vote=${s.vote ?? 'none'} lead=${s.lead ?? 'none'} commit=${s.commit} applied=${s.applied} ${fmtConf(s.conf)} pendingConf=${s.pendingConfIndex}`)
    if (s.progress !== undefined) {
      for (const [p, pr] of Object.entries(s.progress).sort()) this.print(`  ${p}: ${pr.state} match=${pr.match} next=${pr.next}`)
    }
  }

  private raftLog (id: NodeId): void {
    const st = this.sim(id).store
    const first = st.firstIndex()
    const last = st.lastIndex()
    const snap = st.snapshot().meta
    this.print(`${id}: snapshot ${snap.term}/${snap.index}, entries ${first}..${last}`)
    if (last >= first) this.print(`  ${st.entries(first, last + 1).map(fmtEntry).join(', ')}`)
  }

  private compact (id: NodeId, index: number): void {
    const n = this.sim(id)
    const s = this.node(id).status()
    if (index > n.appliedIndex) throw new Error(`compact ${id} ${index}: only ${n.appliedIndex} applied`)
    // The snapshot's data is the state machine: the applied values up to `index` (as applied now).
    n.store.compact(index, s.conf, encodeApplied(n.applied.filter(a => a[0] <= index)))
    this.raftLog(id)
  }

  private crash (id: NodeId): void {
    const n = this.sim(id)
    n.store.crash()
    n.raw = null
    // Messages on their way to it are lost with it.
    this.inflight = this.inflight.filter(m => m.to !== id)
    this.print(`${id} crashed; durable log:`)
    this.raftLog(id)
  }

  private restart (id: NodeId): void {
    const n = this.sim(id)
    // The state machine restarts from the snapshot; committed entries after it are applied again.
    n.applied = decodeApplied(n.store.snapshot().data)
    n.appliedIndex = n.store.snapshot().meta.index
    n.raw = this.newRaw(n)
    this.status(id)
  }
}

function encodeApplied (values: Array<[number, string]>): Uint8Array {
  return enc.encode(JSON.stringify(values))
}

function decodeApplied (b: Uint8Array): Array<[number, string]> {
  if (b.byteLength === 0) return []
  return JSON.parse(dec.decode(b)) as Array<[number, string]>
}

/** Run a testdata script (`command` / `----` / expected lines / blank line) and return it with
 * the actual outputs in place of the expected ones, so the caller can compare or rewrite. */
export function runScript (text: string): string {
  const env = new InteractionEnv()
  const lines = text.split('\n')
  const result: string[] = []
  let i = 0
  while (i < lines.length) {
    const line = lines[i]
    if (line.trim() === '' || line.startsWith('#')) {
      result.push(line)
      i++
      continue
    }
    result.push(line)
    i++
    if (lines[i] !== '----') throw new Error(`line ${i + 1}: expected ---- after command "${line}"`)
    result.push('----')
    i++
    while (i < lines.length && lines[i].trim() !== '') i++
    let output: string
    try {
      output = env.run(line)
    } catch (e) {
      output = `panic: ${(e as Error).message}`
    }
    result.push(output)
  }
  return result.join('\n')
}
