// Relayed learners (RaftConfig.relayLearners): the leader feeds its voters only; every learner takes
// its feed from a follower, which forwards committed entries as it learns they are committed. So
// the leader's frames per write do not grow with the number of hosts that hold a replica (README:
// "Scale of the replica set", topology (b)). The rules, all in raft.ts:
// - a learner subscribes (MsgRelaySub) to the follower that ranks first for it by rendezvous hash,
//   and renews the subscription every election timeout; it tells the leader which voter feeds it
//   (and its commit index) every election timeout, so the leader stops feeding it, and still
//   knows how far along it is (autopilot promotes caught-up learners by that);
// - a follower feeds its subscribers only while it hears from its leader, and only entries at or
//   below its commit index: a learner's log is always a prefix of the committed log, whatever the
//   relay's own log holds beyond that. It keeps a leader's flow control per subscriber (probe,
//   pipelined replicate, snapshot) and drops a subscriber that has not answered for an election
//   timeout;
// - a learner that hears nothing from its relay for an election timeout subscribes to the next
//   candidate in its order, the leader last (which then feeds it itself, as without relays); a
//   learner fed by the leader while followers exist tries the first follower again after a while;
// - a relay that becomes candidate or leader drops its subscribers; a new leader feeds every
//   learner until it hears whom each takes its feed from.
import type { NodeId } from './types.ts'

/** FNV-1a over a string's UTF-16 code units: a stable, well spread 32-bit hash (not for secrecy). */
function fnv1a (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/** The voters in the order a learner tries them as its relay: highest rendezvous hash of
 * (learner, voter) first, so learners spread evenly and a voter's loss moves only its own. */
export function relayOrder (learner: NodeId, voters: readonly NodeId[]): NodeId[] {
  return voters
    .map((v) => ({ v, h: fnv1a(`${learner}\u0000${v}`) }))
    .sort((a, b) => b.h - a.h || (a.v < b.v ? -1 : a.v > b.v ? 1 : 0))
    .map((x) => x.v)
}

/** Report periods a learner fed by the leader waits before trying its first follower again. */
export const RELAY_RETRY_PERIODS = 10
