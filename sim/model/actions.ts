// The transitions of the model: what can happen next in a state, doing it,
// and saying it in words for a counterexample.
//
// Ticks are collapsed into the two that matter: "timeout X" ticks a non-leader
// until its election timer fires (it campaigns), "heartbeat X" gives a leader
// one tick (with heartbeatTick 1 that is a heartbeat round; with checkQuorum
// every second one is also a quorum check). Crash and restart are one step:
// a node that is down only loses messages, which "drop" already covers.
import type { ConfChange, ConfChangeV2, Entry, Message } from '../../protocols/raft/types.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { confChangeText, decodeConfChange, isJoint } from '../../protocols/raft/confchange.ts'
import { MODEL_ELECTION_TICK, World, linkOf, messageOf, writePayload } from './world.ts'
import type { ModelReplica } from './world.ts'

/** Bounds on the nondeterminism a path may use (each counts against the whole path). */
export interface Budgets {
  /** client writes proposed (at a leader) */
  writes: number
  /** ReadIndex reads issued */
  reads: number
  /** membership changes proposed (removing one voter) */
  confs: number
  /** joint membership changes proposed (conf change v2 with an explicit transition: one voter
   * removed through a joint configuration, left by a second, empty change; 0 by default) */
  joints?: number
  /** crash-restarts, including crashes right after a send */
  crashes: number
  /** messages delivered while a copy stays in flight */
  dups: number
  /** whether a message may be lost */
  drop: boolean
  /** whether a delivery may end with the receiver losing power right after it sent its answer */
  crashAfterSend: boolean
  /** election timeouts per path (null: only the depth bounds them) */
  timeouts: number | null
  /** leader heartbeat ticks per path (null: only the depth bounds them) */
  heartbeats: number | null
}

export type Action =
  | { k: 'deliver' | 'dup' | 'drop' | 'deliver-crash', m: string }
  | { k: 'timeout' | 'heartbeat' | 'restart' | 'write' | 'read', n: number }
  | { k: 'conf', n: number, target: string }
  | { k: 'joint', n: number, target: string }
  | { k: 'leave', n: number }

const DEC = new TextDecoder()
/** A timeout that has not made a node campaign after this many ticks is not taken (a node that
 * cannot campaign, such as a removed one). */
const MAX_TIMEOUT_TICKS = 2 * MODEL_ELECTION_TICK

export function enabled (w: World, b: Budgets): Action[] {
  const out: Action[] = []
  for (let i = 0; i < w.net.length; i++) {
    const m = w.net[i]
    if (i > 0 && w.net[i - 1] === m) continue
    // with fifo only the oldest message of each link may go (a later one may be lost once it is
    // the oldest: the same states as losing it earlier)
    if (w.cfg.fifo && i > 0 && linkOf(w.net[i - 1]) === linkOf(m)) continue
    out.push({ k: 'deliver', m })
    if (w.ghost.dups < b.dups) out.push({ k: 'dup', m })
    if (b.drop) out.push({ k: 'drop', m })
    if (b.crashAfterSend && w.ghost.crashes < b.crashes) out.push({ k: 'deliver-crash', m })
  }
  w.reps.forEach((r, n) => {
    if (!r.up) return
    if (r.role === 'leader') {
      if (b.heartbeats === null || w.ghost.heartbeats < b.heartbeats) out.push({ k: 'heartbeat', n })
    } else if (b.timeouts === null || w.ghost.timeouts < b.timeouts) {
      out.push({ k: 'timeout', n })
    }
    if (w.ghost.crashes < b.crashes) out.push({ k: 'restart', n })
    if (r.role === 'leader' && w.ghost.writes < b.writes) out.push({ k: 'write', n })
    if (r.role === 'leader' && w.ghost.confs < b.confs) {
      for (const v of r.node.status().conf.voters) if (v !== r.id) out.push({ k: 'conf', n, target: v })
    }
    if (r.role === 'leader') {
      const conf = r.node.status().conf
      // any voter, the leader too: while joint, a quorum of the old set and one of the new decide
      if (w.ghost.joints < (b.joints ?? 0) && !isJoint(conf)) for (const v of conf.voters) out.push({ k: 'joint', n, target: v })
      if (isJoint(conf)) out.push({ k: 'leave', n })
    }
    if (w.ghost.reads < b.reads && (r.role === 'leader' || r.node.status().lead !== null)) out.push({ k: 'read', n })
  })
  return out
}

function deliver (w: World, m: Message): void {
  const to = w.rep(m.to)
  if (to === undefined || !to.up) return
  to.node.step(m)
  w.drive(to)
  if (m.type === 'MsgSnap') snapshotOutcome(w, m, true)
}

/** The sender of a snapshot hears whether it arrived (sim/replica.ts send()). */
function snapshotOutcome (w: World, m: Message, ok: boolean): void {
  const from = w.rep(m.from)
  if (from === undefined || !from.up) return
  from.node.reportSnapshot(m.to, ok)
  w.drive(from)
}

function ownId (w: World, id: string): void {
  const i = w.reps.findIndex(r => r.id === id)
  if (i >= 0) w.own(i)
}

/** Refusals of the core's client API (not leader, conf change in progress...) mean "not enabled". */
function attempt (f: () => void): boolean {
  try {
    f()
    return true
  } catch (e) {
    if (e instanceof RaftError) return false
    throw e
  }
}

/** Do `a` to `w` (in place). False when the action turns out not to be possible there. */
export function apply (w: World, a: Action, b: Budgets): boolean {
  w.violations = []
  // copy (from a fork) the replicas this action may change before changing them
  if ('m' in a) {
    const m = messageOf(a.m)
    if (a.k !== 'drop') ownId(w, m.to)
    if (m.type === 'MsgSnap') ownId(w, m.from)
  } else {
    w.own(a.n)
  }
  switch (a.k) {
    case 'deliver': case 'dup': case 'deliver-crash': {
      const m = messageOf(a.m)
      if (a.k !== 'dup') w.take(a.m)
      else w.ghost.dups++
      if (a.k === 'deliver-crash') {
        const to = w.reps.findIndex(r => r.id === m.to)
        w.crashArmed = to
        w.crashFired = false
        deliver(w, m)
        w.crashArmed = -1
        // no send happened: the same state as a plain delivery, which is explored anyway
        if (!w.crashFired) return false
        w.crashFired = false
        w.ghost.crashes++
      } else {
        deliver(w, m)
      }
      break
    }
    case 'drop': {
      const m = messageOf(a.m)
      w.take(a.m)
      if (m.type === 'MsgSnap') snapshotOutcome(w, m, false)
      break
    }
    case 'timeout': {
      const r = w.reps[a.n]
      let fired = false
      for (let t = 0; t < MAX_TIMEOUT_TICKS && !fired; t++) {
        r.node.tick()
        fired = r.node.hasReady()
      }
      if (!fired) return false
      if (b.timeouts !== null) w.ghost.timeouts++
      w.drive(r)
      break
    }
    case 'heartbeat': {
      const r = w.reps[a.n]
      r.node.tick()
      if (b.heartbeats !== null) w.ghost.heartbeats++
      w.drive(r)
      break
    }
    case 'restart':
      w.ghost.crashes++
      w.restart(w.reps[a.n])
      break
    case 'write': {
      const r = w.reps[a.n]
      const k = w.ghost.writes + 1
      if (!attempt(() => r.node.propose(writePayload(k)))) return false
      w.ghost.writes = k
      r.waiting.push(k)
      w.drive(r)
      break
    }
    case 'conf': {
      const r = w.reps[a.n]
      const cc: ConfChange = { type: 'remove', node: a.target }
      if (!attempt(() => r.node.proposeConfChange(cc))) return false
      w.ghost.confs++
      w.drive(r)
      break
    }
    case 'joint': {
      const r = w.reps[a.n]
      const cc: ConfChangeV2 = { changes: [{ type: 'remove', node: a.target }], transition: 'explicit' }
      if (!attempt(() => r.node.proposeConfChange(cc))) return false
      w.ghost.joints++
      w.drive(r)
      break
    }
    case 'leave': {
      const r = w.reps[a.n]
      if (!attempt(() => r.node.proposeConfChange({ changes: [], transition: 'explicit' }))) return false
      w.drive(r)
      break
    }
    case 'read': {
      const r = w.reps[a.n]
      const ctx = `r${w.ghost.reads + 1}`
      if (!attempt(() => r.node.readIndex(new TextEncoder().encode(ctx)))) return false
      w.ghost.reads++
      r.reads[ctx] = { index: -1, ackedBefore: [...w.ghost.acked] }
      w.drive(r)
      break
    }
  }
  w.checkState()
  return true
}

function entryText (e: Entry): string {
  let what = 'noop'
  if (e.type === 'conf') {
    try {
      what = confChangeText(decodeConfChange(e.data))
    } catch {
      what = 'conf?'
    }
  } else if (e.data.byteLength > 0) {
    what = DEC.decode(e.data)
  }
  return `${e.index}@t${e.term}:${what}`
}

export function messageText (m: Message): string {
  const parts = [`${m.type} ${m.from}->${m.to} term ${m.term}`]
  if (m.index !== undefined) parts.push(`index ${m.index}`)
  if (m.logTerm !== undefined) parts.push(`logTerm ${m.logTerm}`)
  if (m.entries !== undefined && m.entries.length > 0) parts.push(`entries [${m.entries.map(entryText).join(' ')}]`)
  if (m.commit !== undefined) parts.push(`commit ${m.commit}`)
  if (m.reject === true) parts.push(`reject (hint ${m.rejectHint ?? '-'})`)
  if (m.context !== undefined && m.context.byteLength > 0) parts.push(`ctx ${JSON.stringify(DEC.decode(m.context))}`)
  return parts.join(', ')
}

function who (r: ModelReplica): string {
  return `${r.id} (${r.role}, term ${r.term})`
}

/** One line saying what `a` does in `w` (the state before it). */
export function describe (w: World, a: Action): string {
  switch (a.k) {
    case 'deliver': return `deliver ${messageText(messageOf(a.m))}`
    case 'dup': return `deliver a duplicate of ${messageText(messageOf(a.m))} (a copy stays in flight)`
    case 'drop': return `drop ${messageText(messageOf(a.m))}`
    case 'deliver-crash': {
      const m = messageOf(a.m)
      return `deliver ${messageText(m)}; ${m.to} loses power right after sending its answer and restarts`
    }
    case 'timeout': return `${who(w.reps[a.n])}: election timeout fires`
    case 'heartbeat': return `${who(w.reps[a.n])}: heartbeat tick`
    case 'restart': return `${who(w.reps[a.n])} crashes (unsynced writes lost) and restarts`
    case 'write': return `client proposes w${w.ghost.writes + 1} at ${who(w.reps[a.n])}`
    case 'conf': return `${who(w.reps[a.n])} proposes removing ${a.target}`
    case 'joint': return `${who(w.reps[a.n])} proposes removing ${a.target} through a joint configuration`
    case 'leave': return `${who(w.reps[a.n])} proposes leaving the joint configuration`
    case 'read': return `client issues ReadIndex read r${w.ghost.reads + 1} at ${who(w.reps[a.n])}`
  }
}
