// Autopilot: keeps the Raft voter set healthy without ever lowering fault tolerance. A pure decision
// function the leader calls every few seconds with what it knows; it returns at most one decision
// (Raft allows one membership change in flight), which the leader carries out.
//
// Policy (each rule below names the case it exists for):
// - every known cluster node that is not a member is added as a learner;
// - target voters = 5 when at least 5 members are healthy, 3 from 3, else 1 (odd sizes only) — a
//   target to GROW to, never a reason to shrink: the voter count only falls when the fault
//   tolerance (how many voters may fail with the cluster still available) stays the same;
// - a voter unreachable for longer than `deadAfterMs` is replaced by a healthy, caught-up learner in
//   one `replace` decision (one joint conf change: add the learner as voter and remove the dead
//   voter, left automatically). With no such learner
//   the dead voter stays: 3 voters with one dead still commit with the other two, and a node that
//   comes back resumes at once. Removing it instead would leave 2 voters, neither of which may fail;
// - a dead voter is removed on its own only when that leaves the fault tolerance unchanged (4 voters
//   with one dead → 3, 6 → 5): that is the second half of a replace interrupted by a leader change;
// - a healthy voter is never demoted to shrink, except a surplus even count (4 → 3, 6 → 5) with every
//   voter healthy, which costs no fault tolerance; never below 3 voters (2 disks beat 1) and never the
//   leader itself;
// - while the configuration is joint nothing is decided: the leader leaves it on its own.
import type { ConfChange, ConfState, NodeId } from '../protocols/raft/types.ts'
import { isJoint } from '../protocols/raft/confchange.ts'

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

/**
 * One decision. `replace` is one joint conf change (node/membership.ts `replaceVoter`): the learner
 * becomes a voter and the dead voter leaves in one step, never through 2 or 4 voters.
 */
export type AutopilotAction =
  | { kind: 'none' }
  | { kind: 'change', change: ConfChange }
  | { kind: 'replace', promote: NodeId, remove: NodeId }

export type AutopilotDecision = AutopilotAction & { why: string }

/** Voters below this many are never shrunk further: with 2, an acknowledged write sits on 2 disks. */
export const MIN_VOTERS_TO_SHRINK_TO = 3

function isHealthy (h: MemberHealth | undefined, within: number): boolean {
  return h != null && h.silentMs <= within
}

export function targetVoters (healthyMembers: number): number {
  // Odd sizes only: 2 voters tolerate no more failures than 1, and need both up.
  if (healthyMembers >= 5) return 5
  if (healthyMembers >= 3) return 3
  return 1
}

/** How many of `voters` may fail with a quorum left. */
export function faultTolerance (voters: number): number {
  return Math.max(0, Math.floor((voters - 1) / 2))
}

const none = (why: string): AutopilotDecision => ({ kind: 'none', why })
const change = (c: ConfChange, why: string): AutopilotDecision => ({ kind: 'change', change: c, why })

export function decide (input: AutopilotInput): AutopilotDecision {
  if (input.changeInFlight) return none('a membership change is in flight')
  const { conf, health, leader } = input
  if (isJoint(conf)) return none('the configuration is joint: the leader is leaving it')
  const members = new Set([...conf.voters, ...conf.learners])
  const sorted = (xs: Iterable<NodeId>): NodeId[] => [...xs].sort()

  // 1. Newcomers become learners (cheap, does not affect quorum).
  for (const c of sorted(input.candidates)) {
    if (!members.has(c)) return change({ type: 'addLearner', node: c }, `${c} discovered and not yet a member`)
  }

  const healthy = (id: NodeId): boolean => id === leader || isHealthy(health.get(id), input.healthyWithinMs)
  const dead = (id: NodeId): boolean => id !== leader && !isHealthy(health.get(id), input.deadAfterMs)
  const healthyMembers = sorted(members).filter(healthy)
  const target = targetVoters(healthyMembers.length)
  const voters = conf.voters.length
  const liveVoters = conf.voters.filter((v) => !dead(v))
  const deadVoters = sorted(conf.voters.filter(dead))
  const promotable = sorted(conf.learners).filter((l) => healthy(l) && (health.get(l)?.lag ?? Infinity) <= input.maxPromoteLag)
  const quorumAfterRemoval = liveVoters.length >= Math.floor((voters - 1) / 2) + 1

  // 2. A dead voter whose removal costs no fault tolerance (the surplus left by a promoted replacement).
  if (deadVoters.length > 0 && voters - 1 >= 1 && faultTolerance(voters - 1) >= faultTolerance(voters) && quorumAfterRemoval) {
    return change({ type: 'remove', node: deadVoters[0] }, `${deadVoters[0]} unreachable for over ${input.deadAfterMs} ms and ${voters - 1} voters keep the fault tolerance of ${voters}`)
  }
  // 3. Replace a dead voter by a caught-up learner, in one decision.
  if (deadVoters.length > 0 && promotable.length > 0) {
    return { kind: 'replace', promote: promotable[0], remove: deadVoters[0], why: `${deadVoters[0]} unreachable for over ${input.deadAfterMs} ms; ${promotable[0]} is caught up` }
  }
  if (deadVoters.length > 0) {
    return none(`keeping ${voters} voters with ${deadVoters.join(', ')} unreachable: no caught-up learner to replace ${deadVoters.length === 1 ? 'it' : 'them'}`)
  }
  // 4. Grow the voter set up to the target.
  if (voters < target && promotable.length > 0) {
    return change({ type: 'promote', node: promotable[0] }, `${voters} voters, ${healthyMembers.length} healthy members allow ${target}`)
  }
  // 5. Dead learners are removed so they stop receiving the log.
  const deadLearners = sorted(conf.learners.filter(dead))
  if (deadLearners.length > 0 && !input.candidates.includes(deadLearners[0])) {
    return change({ type: 'remove', node: deadLearners[0] }, `learner ${deadLearners[0]} gone`)
  }
  // 6. An even surplus of voters (4 → 3, 6 → 5) shrinks by one non-leader voter, only when every voter
  // is healthy: a voter merely slow or briefly silent lowers the healthy count, hence the target, and
  // shrinking then removed healthy voters (3 voters with one just killed fell to 1 and lost quorum).
  if (voters > target && voters - 1 >= MIN_VOTERS_TO_SHRINK_TO && faultTolerance(voters - 1) >= faultTolerance(voters) && conf.voters.every(healthy)) {
    const victim = sorted(conf.voters).filter((v) => v !== leader).pop()
    if (victim != null) return change({ type: 'remove', node: victim }, `${voters} voters tolerate no more failures than ${voters - 1}`)
  }
  return none('membership is at its target')
}
