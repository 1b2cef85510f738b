// Autopilot: keeps the Raft voter set healthy. A pure decision function the
// leader calls every few seconds with what it knows; it returns at most one
// membership change (Raft allows one in flight), which the leader proposes.
//
// Policy:
// - every known cluster node that is not a member is added as a learner;
// - target voters = 5 when at least 5 members are healthy, 3 from 3, else 1 (odd sizes only);
// - a voter unreachable for longer than `deadAfterMs` is replaced: first a healthy, caught-up
//   learner is promoted (so the quorum never shrinks while a voter is down), then the dead voter removed;
// - surplus voters (above the target) are demoted by removal only when dead; healthy surplus voters stay
//   until a later step shrinks them one at a time (never the leader itself).
import type { ConfChange, ConfState, NodeId } from '../protocols/raft/types.ts'

export interface MemberHealth {
  /** ms since the leader last heard from this member (0 for the leader itself) */
  silentMs: number
  /** how far behind the leader's last index this member's log is (Infinity if unknown) */
  lag: number
}

export interface AutopilotInput {
  leader: NodeId
  conf: ConfState
  /** nodes that should be in the cluster (discovered with the key, or registered) */
  candidates: NodeId[]
  health: ReadonlyMap<NodeId, MemberHealth>
  /** a membership change is still pending in the log */
  changeInFlight: boolean
  deadAfterMs: number
  /** a member is healthy if heard from within this window */
  healthyWithinMs: number
  /** a learner is promotable when its lag is at most this many entries */
  maxPromoteLag: number
}

export interface AutopilotDecision {
  change: ConfChange | null
  why: string
}

function isHealthy (h: MemberHealth | undefined, within: number): boolean {
  return h != null && h.silentMs <= within
}

export function targetVoters (healthyMembers: number): number {
  // Odd sizes only: 2 voters tolerate no more failures than 1, and need both up.
  if (healthyMembers >= 5) return 5
  if (healthyMembers >= 3) return 3
  return 1
}

export function decide (input: AutopilotInput): AutopilotDecision {
  if (input.changeInFlight) return { change: null, why: 'a membership change is in flight' }
  const { conf, health, leader } = input
  const members = new Set([...conf.voters, ...conf.learners])
  const sorted = (xs: Iterable<NodeId>): NodeId[] => [...xs].sort()

  // 1. Newcomers become learners (cheap, does not affect quorum).
  for (const c of sorted(input.candidates)) {
    if (!members.has(c)) return { change: { type: 'addLearner', node: c }, why: `${c} discovered and not yet a member` }
  }

  const healthy = (id: NodeId): boolean => id === leader || isHealthy(health.get(id), input.healthyWithinMs)
  const dead = (id: NodeId): boolean => id !== leader && !isHealthy(health.get(id), input.deadAfterMs)
  const healthyMembers = sorted(members).filter(healthy)
  const target = targetVoters(healthyMembers.length)
  const liveVoters = conf.voters.filter((v) => !dead(v))
  const deadVoters = sorted(conf.voters.filter(dead))
  const promotable = sorted(conf.learners).filter((l) => healthy(l) && (health.get(l)?.lag ?? Infinity) <= input.maxPromoteLag)

  // 2. Grow the healthy voter set up to the target (this also replaces dead voters before removing them).
  if (liveVoters.length < target && promotable.length > 0) {
    return { change: { type: 'promote', node: promotable[0] }, why: `${liveVoters.length} live voters, target ${target}` }
  }
  // 3. Remove a dead voter once the live voters alone can form the target (or nothing can replace it).
  if (deadVoters.length > 0 && (liveVoters.length >= target || promotable.length === 0)) {
    // Never remove a voter if that leaves too few voters to stay available.
    const after = conf.voters.length - 1
    if (after >= 1 && liveVoters.length >= Math.floor(after / 2) + 1) {
      return { change: { type: 'remove', node: deadVoters[0] }, why: `${deadVoters[0]} unreachable for over ${input.deadAfterMs} ms` }
    }
  }
  // 4. Dead learners are removed so they stop receiving the log.
  const deadLearners = sorted(conf.learners.filter(dead))
  if (deadLearners.length > 0 && !input.candidates.includes(deadLearners[0])) {
    return { change: { type: 'remove', node: deadLearners[0] }, why: `learner ${deadLearners[0]} gone` }
  }
  // 5. Keep an odd voter count at the target: shrink a surplus by one non-leader voter, only when every
  // voter is healthy. A voter that is merely slow or briefly silent lowers the healthy count, hence the
  // target: shrinking then would remove healthy voters (3 voters with one just killed fell to 1 and lost quorum).
  if (liveVoters.length > target && deadVoters.length === 0 && conf.voters.every(healthy)) {
    const victim = sorted(conf.voters).filter((v) => v !== leader).pop()
    if (victim != null) return { change: { type: 'remove', node: victim }, why: `${conf.voters.length} voters, target ${target}` }
  }
  return { change: null, why: 'membership is at its target' }
}
