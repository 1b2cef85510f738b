// Graceful stop of a leader: hand leadership to the most caught-up voter
// (node/core/membership-rules.ts chooses it) and wait, boundedly, for it to take over, so the
// cluster does not sit out an election timeout.
import { handoffTarget } from './core/membership-rules.ts'
import type { RaftService } from './raft-service.ts'
import type { Logger } from './log.ts'

/** how long a leader waits for its chosen successor to take over, and how often it looks */
export const HANDOFF_WAIT_MS = 3_000
export const HANDOFF_POLL_MS = 25

export async function handOffLeadership (self: string, raft: RaftService | null, log: Logger, sleep: (ms: number) => Promise<void>, now: () => number): Promise<void> {
  if (raft?.isLeader() !== true) return
  const target = handoffTarget(self, raft.status())
  if (target == null) return
  log.info('transferring leadership before shutdown', { to: target })
  raft.transferLeadership(target)
  const deadline = now() + HANDOFF_WAIT_MS
  while (raft.isLeader() && now() < deadline) await sleep(HANDOFF_POLL_MS)
}
