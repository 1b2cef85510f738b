// The release handshake: a VM taken off a node while that node may still run its guest (a
// preemption, a cold move, an unassignment: storage/apply-vms.ts assignVm) stays bound to that node
// until the guest is known gone there, so it never runs on two hosts at once. Known gone means:
// - the node itself reports it (its node-signed ReportVmStatus, phase stopped, echoing the
//   `releasing.since` it saw: it stopped the guest after it learned of the release, and it never
//   starts a VM not assigned to it), or
// - the node is marked down (MarkNodeDown: its lease ran out, so its fence watchdog has stopped
//   every guest it had, as for HA's own reschedules: storage/apply-ha.ts).
// Meanwhile no assignment to any other node is accepted (AssignVm, PreemptVm and StartMigration all
// go through assignVm), and the scheduler does not try one (node/scheduler.ts). A live migration is
// not a release: its switchover hands the running guest over (storage/apply-migration.ts).
// Pure: the only clock is the entry's time, passed in.
import type { VmRecord } from '../protocols/model.ts'

export type Releasing = NonNullable<VmRecord['releasing']>

/** The release a VM carries after its assignment goes from `from` to `to` at `at`. Moving back to
 * the node it is releasing ends the release (the guest there is simply its own again); a release
 * already under way is kept (it is refused elsewhere before this is asked). Leaving a node marked
 * down (`fromDown`: a restart-policy-never VM an admin moves off it) binds nothing: its guests are
 * fenced, and it runs none again before it rejoined, having stopped them all (storage/apply-ha.ts). */
export function releaseAfterMove (current: Releasing | undefined, from: string | null, to: string | null, at: number, fromDown = false): Releasing | undefined {
  if (current !== undefined) return to === current.node ? undefined : current
  if (from === null || from === to || fromDown) return undefined
  return { node: from, since: at }
}

/** Why the VM may not be assigned to `to` now (it is still releasing another node), or null. */
export function releaseBlocks (vm: Pick<VmRecord, 'releasing'>, to: string | null, nodeName: (id: string) => string = (id) => id): string | null {
  if (to === null || to === vm.releasing?.node) return null
  return releaseWait(vm, nodeName)
}

/** What a VM still releasing a node waits for (`vm explain`, AssignVm's refusal), or null. */
export function releaseWait (vm: Pick<VmRecord, 'releasing'>, nodeName: (id: string) => string = (id) => id): string | null {
  const r = vm.releasing
  if (r === undefined) return null
  return `it waits for node ${nodeName(r.node)} to stop its guest (taken off it at ${new Date(r.since).toISOString()}): it runs on one host at a time, and is placed elsewhere once that node reports it stopped or is marked down`
}

export interface StatusReport { node: string, status: { phase: VmRecord['status']['phase'] }, released?: number }

/** Does this report end the VM's release? Only the releasing node's own, saying the guest is
 * stopped, made after it saw this release (released === since); any other node's, or one made
 * before (a late report from an earlier stop), does not. */
export function reportReleases (vm: Pick<VmRecord, 'releasing'>, r: StatusReport): boolean {
  const rel = vm.releasing
  return rel !== undefined && r.node === rel.node && r.status.phase === 'stopped' && r.released === rel.since
}

/** Does marking `node` down end the VM's release? (its guests are fenced dead) */
export function downReleases (vm: Pick<VmRecord, 'releasing'>, node: string): boolean {
  return vm.releasing?.node === node
}
