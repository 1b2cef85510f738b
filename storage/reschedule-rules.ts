// What happens to the VMs of a node marked down: applied by MarkNodeDown in
// storage/apply-ha.ts, so every replica decides alike. Pure: the leader passes the committed VMs,
// the down node and its own clock; this answers which VMs go back to `pending` (the normal scheduler in
// node/scheduler.ts then places them through placement/, with constraints, anti-affinity and capacity;
// one that fits nowhere stays pending with this reason) and which stay where they are.
//
// Restart policy: `always` and `on-failure` are rescheduled (a host dying is a failure the guest did
// not choose); `never` stays assigned to the down node, stopped, with the reason, for a person to act.
//
// Flapping: a VM rescheduled off a host is not placed back on that same host within
// FLAP_BACKOFF_BASE_MS × 2^(times it was rescheduled in the last FLAP_WINDOW_MS), capped at
// FLAP_BACKOFF_MAX_MS — so a host that dies every minute does not pull VMs back and forth.
import type { RestartPolicy } from '../protocols/model.ts'

export const FLAP_WINDOW_MS = 30 * 60_000
export const FLAP_BACKOFF_BASE_MS = 60_000
export const FLAP_BACKOFF_MAX_MS = 30 * 60_000

export interface VmOnNode {
  id: string
  node: string | null
  restartPolicy: RestartPolicy
  /** committed (replicated) timestamps, ms, of earlier reschedules of this VM off any host */
  rescheduledAt: readonly number[]
}

export type RescheduleDecision =
  | { vm: string, kind: 'reschedule', reason: string, avoidNode: string, avoidUntil: number }
  | { vm: string, kind: 'stay', reason: string }

export function rescheduleOffDownNode (down: { node: string, expiredAtText: string }, vms: readonly VmOnNode[], now: number): RescheduleDecision[] {
  const out: RescheduleDecision[] = []
  for (const vm of vms) {
    if (vm.node !== down.node) continue
    const base = `node ${down.node} down: lease expired at ${down.expiredAtText}`
    if (vm.restartPolicy === 'never') {
      out.push({ vm: vm.id, kind: 'stay', reason: `${base}; restart policy never: not rescheduled` })
      continue
    }
    out.push({ vm: vm.id, kind: 'reschedule', reason: `rescheduled from ${down.node}: lease expired at ${down.expiredAtText}`, avoidNode: down.node, avoidUntil: now + flapBackoffMs(vm.rescheduledAt, now) })
  }
  return out
}

/** How long the VM keeps off the host it left: doubles with each recent reschedule, capped. */
export function flapBackoffMs (rescheduledAt: readonly number[], now: number): number {
  const recent = rescheduledAt.filter(t => now - t < FLAP_WINDOW_MS).length
  return Math.min(FLAP_BACKOFF_MAX_MS, FLAP_BACKOFF_BASE_MS * 2 ** Math.min(recent, 16))
}
