// Who feeds whom in each replica-set topology the scale model compares, as pure functions of the
// host list. Voters are autopilot's count (node/autopilot.ts targetVoters): 3, or 5 from 5 hosts.
//
// - leader-fed (a): every other host is a Raft learner the leader replicates to (today).
// - follower-relay (b): learners are outside the Raft configuration; each subscribes to one
//   follower (rendezvous hashing over the followers, so a dead relay's learners spread over the
//   others and nobody else moves), which forwards committed entries to it.
// - relay-tree (c): learners hang in a k-ary tree under the followers; a learner whose parent is
//   gone climbs to its grandparent, and so on up to a follower.
// - read-through (d): a few learner replicas (one per REPLICA_EVERY hosts) fed as in (b); every
//   other host keeps no replica and holds a watch on a nearby replica for its own records.
// - raft-relay (r): (b) as built into the Raft core (protocols/raft/relay.ts, what the daemon
//   runs): the learners are Raft learners, each fed by a follower; every node is the shipped core.
import { targetVoters } from '../../node/autopilot.ts'

export const TOPOLOGIES = ['leader-fed', 'follower-relay', 'relay-tree', 'read-through', 'raft-relay'] as const
export type Topology = typeof TOPOLOGIES[number]
export const TOPOLOGY_LETTER: Record<Topology, string> = { 'leader-fed': 'a', 'follower-relay': 'b', 'relay-tree': 'c', 'read-through': 'd', 'raft-relay': 'r' }

/** read-through: one replica (learner) for this many hosts */
export const REPLICA_EVERY = 50
/** relay-tree: children per relay */
export const DEFAULT_FANOUT = 8

export interface Shape {
  topology: Topology
  hosts: number
  voters: string[]
  /** hosts holding a replica outside the voters (Raft learners in (a), relay-fed in (b)-(d)) */
  learners: string[]
  /** hosts without a replica (read-through only) */
  watchers: string[]
  fanout: number
}

export function hostId (i: number): string {
  return `n${i + 1}`
}

export function topologyByName (s: string): Topology | null {
  const t = TOPOLOGIES.find((x) => x === s || TOPOLOGY_LETTER[x] === s)
  return t ?? null
}

export function shapeOf (topology: Topology, hosts: number, fanout = DEFAULT_FANOUT): Shape {
  if (!Number.isInteger(hosts) || hosts < 1) throw new RangeError(`hosts must be a positive integer, got ${hosts}`)
  if (!Number.isInteger(fanout) || fanout < 1) throw new RangeError(`fanout must be a positive integer, got ${fanout}`)
  const ids = [...Array(hosts).keys()].map(hostId)
  const v = targetVoters(hosts)
  const voters = ids.slice(0, v)
  const rest = ids.slice(v)
  if (topology !== 'read-through') return { topology, hosts, voters, learners: rest, watchers: [], fanout }
  const replicas = rest.length === 0 ? 0 : Math.min(rest.length, Math.ceil(hosts / REPLICA_EVERY))
  return { topology, hosts, voters, learners: rest.slice(0, replicas), watchers: rest.slice(replicas), fanout }
}

/** FNV-1a: a stable weight for rendezvous hashing (no randomness: the same choice on every host). */
function weight (a: string, b: string): number {
  let h = 0x811c9dc5
  const s = `${a}|${b}`
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  // a final avalanche: FNV alone orders ids that differ in one digit too regularly
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0; h ^= h >>> 13
  return h >>> 0
}

/** `pool` ordered by rendezvous weight for `who`: the first is its feeder, the next its fallbacks. */
export function rendezvous (who: string, pool: readonly string[]): string[] {
  return [...pool].sort((x, y) => weight(who, y) - weight(who, x) || (x < y ? -1 : 1))
}

/** relay-tree: the parent of each learner. Slots 0..F-1 are the followers, learners follow in
 * order; slot s >= F hangs under slot floor((s - F) / k). */
export function treeParents (followers: readonly string[], learners: readonly string[], k: number): Map<string, string> {
  const slots = [...followers, ...learners]
  const f = followers.length
  const parents = new Map<string, string>()
  if (f === 0) return parents
  for (let s = f; s < slots.length; s++) parents.set(slots[s], slots[Math.floor((s - f) / k)])
  return parents
}

/** Where a replica learner looks for a feeder, best first. `followers` excludes the known leader. */
export function feederCandidates (shape: Shape, who: string, followers: readonly string[], parents: ReadonlyMap<string, string>): string[] {
  if (shape.topology === 'relay-tree') {
    const up: string[] = []
    for (let p = parents.get(who); p !== undefined; p = parents.get(p)) {
      // a former follower that is leader now feeds nobody: skip it, keep climbing
      if (!shape.voters.includes(p) || followers.includes(p)) up.push(p)
    }
    return [...up, ...rendezvous(who, followers).filter((x) => !up.includes(x))]
  }
  return rendezvous(who, followers)
}

/** Where a host without a replica holds its watch, best first: the replicas, then the followers
 * (with every replica gone, a follower serves the watch rather than nobody). */
export function watchCandidates (shape: Shape, who: string, followers: readonly string[]): string[] {
  return [...rendezvous(who, shape.learners), ...rendezvous(who, followers)]
}

/** Depth of the deepest learner under the voters (1: fed by a follower directly). */
export function treeDepth (parents: ReadonlyMap<string, string>, voters: readonly string[]): number {
  let max = 0
  for (const id of parents.keys()) {
    let d = 0
    for (let p: string | undefined = id; p !== undefined && !voters.includes(p); p = parents.get(p)) d++
    max = Math.max(max, d)
  }
  return max
}
