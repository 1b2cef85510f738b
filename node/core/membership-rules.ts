// Membership decisions of one node, pure: the shell (node/membership.ts) passes what it observed —
// the Raft status, when it last heard each peer, the clock's `now` — and carries out the result.
// Bootstrap-or-join is node/bootstrap.ts, the voter set node/autopilot.ts; these are the glue
// between them and the Raft status.
import type { Command } from '../../protocols/commands.ts'
import type { HypervisorCapability, NodeRecord, Resources } from '../../protocols/model.ts'
import type { RaftStatus } from '../../protocols/raft/rawnode.ts'
import type { AutopilotInput, MemberHealth } from '../autopilot.ts'

/** A node added to the cluster but still waiting for the leader's snapshot counts as in the cluster
 * only while that leader spoke to it this recently (a node removed from the cluster keeps a stale
 * `lead` forever and must ask to join again). */
export const LEADER_SILENT_REJOIN_MS = 5_000
/** autopilot: a member heard from within this window is healthy (capped by the dead timeout) */
export const AUTOPILOT_HEALTHY_WITHIN_MS = 3_000
/** autopilot: a learner this many entries behind or fewer may become a voter */
export const AUTOPILOT_MAX_PROMOTE_LAG = 1_000
/** what a node registers itself with beyond its config: overcommit ratios (cpu, memory, disk) */
export const SELF_OVERCOMMIT = { cpu: 4, memory: 1, disk: 1 } as const

/** When each peer was last heard from (ms on the same clock as `now`); unknown peers: never. */
export type LastHeard = ReadonlyMap<string, number>

/** Whether this node is a member, or about to be one (see LEADER_SILENT_REJOIN_MS). */
export function inCluster (self: string, st: RaftStatus | null | undefined, lastHeard: LastHeard, now: number): boolean {
  if (st == null) return false
  if (st.conf.voters.includes(self) || st.conf.learners.includes(self)) return true
  return st.lead != null && now - (lastHeard.get(st.lead) ?? 0) < LEADER_SILENT_REJOIN_MS
}

/** What the leader's autopilot decides on (node/autopilot.ts): each member's silence and lag, and
 * the candidates — this node, and registered nodes that are connected or already members. */
export function autopilotInput (o: {
  self: string
  st: RaftStatus
  lastHeard: LastHeard
  now: number
  /** peers this node has a connection to */
  connected: ReadonlySet<string>
  /** ids of the nodes registered in the replicated state */
  registered: readonly string[]
  /** the state machine's applied index */
  applied: number
  deadAfterMs: number
}): AutopilotInput {
  const { self, st, now } = o
  const progress = Object.entries(st.progress ?? {})
  const last = Math.max(...progress.map(([, p]) => p.match), st.commit)
  const health = new Map<string, MemberHealth>()
  for (const [id, p] of progress) {
    health.set(id, { silentMs: id === self ? 0 : now - (o.lastHeard.get(id) ?? 0), lag: last - p.match })
  }
  const candidates = [self, ...o.registered.filter((id) => o.connected.has(id) || health.has(id))]
  return {
    leader: self,
    conf: st.conf,
    candidates: [...new Set(candidates)],
    health,
    changeInFlight: st.pendingConfIndex > o.applied && st.pendingConfIndex > st.commit,
    deadAfterMs: o.deadAfterMs,
    healthyWithinMs: Math.min(AUTOPILOT_HEALTHY_WITHIN_MS, o.deadAfterMs),
    maxPromoteLag: AUTOPILOT_MAX_PROMOTE_LAG
  }
}

/** What this node says about itself in the replicated state. */
export interface SelfRecord {
  id: string, name: string, addrs: string[], labels: Record<string, string>, capacity: Resources
  /** what this host can do (`rbd`: a Ceph client is configured); default ['qemu'] */
  capabilities?: HypervisorCapability[]
}

/** The command that puts (or keeps) this node's record right: RegisterNode when it has none,
 * UpdateNode when its addresses, labels or capacity changed, null when it is up to date. */
export function registration (want: SelfRecord, mine: NodeRecord | null | undefined): Command | null {
  if (mine == null) {
    return { type: 'RegisterNode', node: { id: want.id, name: want.name, addrs: want.addrs, labels: want.labels, capacity: want.capacity, overcommit: { ...SELF_OVERCOMMIT }, capabilities: want.capabilities ?? ['qemu'], maxVms: null } }
  }
  const caps = want.capabilities ?? mine.capabilities
  if (sameJson(mine.addrs, want.addrs) && sameJson(mine.labels, want.labels) && sameJson(mine.capacity, want.capacity) && sameJson(mine.capabilities, caps)) return null
  return { type: 'UpdateNode', id: want.id, addrs: want.addrs, labels: want.labels, capacity: want.capacity, ...(sameJson(mine.capabilities, caps) ? {} : { capabilities: caps }) }
}

function sameJson (a: unknown, b: unknown): boolean { return JSON.stringify(a) === JSON.stringify(b) }

/** Graceful stop of a leader: the voter (not this node) whose log is furthest along, to hand
 * leadership to; null when there is none (a single voter, or not the leader). */
export function handoffTarget (self: string, st: RaftStatus): string | null {
  let best: string | null = null
  let bestMatch = -1
  for (const [id, p] of Object.entries(st.progress ?? {})) {
    if (id === self || !st.conf.voters.includes(id) || p.match <= bestMatch) continue
    best = id
    bestMatch = p.match
  }
  return best
}

/** Who may call an RPC method: `internal.*` (forwarded writes, admit) only members — in the
 * configuration or registered — and everything else only admins (each write is signed too). */
export function mayCall (peer: string, method: string, conf: RaftStatus['conf'] | undefined, registered: (peer: string) => boolean, isAdmin: (peer: string) => boolean): boolean {
  if (method.startsWith('internal.')) return isMember(peer, conf, registered)
  return isAdmin(peer)
}

export function isMember (peer: string, conf: RaftStatus['conf'] | undefined, registered: (peer: string) => boolean): boolean {
  return (conf != null && (conf.voters.includes(peer) || conf.learners.includes(peer))) || registered(peer)
}
