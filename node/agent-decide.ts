// What the node agent does about this host's guests, decided without doing it: the VMs Raft assigns
// here (desired), what the hypervisor reports (observed) and what the agent itself did before
// (history) go in; a list of actions, each with its reason, comes out. Pure: no I/O, no timers, no
// clock (now is a parameter). node/agent.ts observes, calls decide() and executes the actions.
//
// The rules, in the order they apply to one VM:
// - a VM a live migration holds, or with an action still running, is left alone this round;
// - desired stopped: a running guest is stopped; otherwise 'stopped' is reported once;
// - desired running, guest running: a new spec generation replaces it (stop, then start); a ready
//   guest is reported running; sixty stable seconds forgive its earlier restarts (backoff reset);
// - desired running, no guest: first start;
// - desired running, guest gone: a new generation or an asked-for start (the agent saw desired
//   'stopped', or the exit was a requested stop) starts at once without backoff; otherwise the
//   restart policy decides (always: restart; on-failure: restart a crash only; never: report and
//   stay down), and a restart waits out its backoff (first·2^(n-1), capped);
// - every start first asks whether the host can launch the VM at all (tiny guest missing: failed)
//   and whether it may run guests now (no lease or fenced: hold, nothing starts), and waits while a
//   guest of a VM no longer assigned here still runs: apply gave its room away (a preemption's
//   victim, a VM moved cold or deleted), so starting beside it would overfill the host;
// - a guest of a VM not assigned here (deleted, moved, assigned elsewhere) is cleaned up;
// - a VM taken off this host (its record `releasing` this node) whose guest is gone here is
//   reported released, so it may start elsewhere (storage/release-rules.ts); a VM assigned here
//   that is still releasing another node does not start until that node released it.
import type { VmPhase, VmRecord } from '../protocols/model.ts'
import type { GuestEvent, GuestStatus } from './hypervisor/types.ts'

/** A guest ready this long after its last start is stable: its restart count starts over. */
export const STABLE_AFTER_MS = 60_000
/** Bounds the exponent of the backoff (the cap applies long before; this keeps 2^n finite). */
export const MAX_BACKOFF_DOUBLINGS = 16
export const DEFAULT_BACKOFF: Backoff = { first: 1_000, max: 60_000 }

export interface Backoff { first: number, max: number }

/** The restart bookkeeping of one VM: starts since it was last stable, when the next may happen. */
export interface Attempts { count: number, nextAt: number, lastStart: number }

export interface Desired {
  /** this host's node id */
  self: string
  /** the VM records Raft assigns to this host (a record assigned elsewhere is not ours, whatever the list says) */
  vms: readonly VmRecord[]
  /** for guests here whose VM is not ours: the node it is assigned to now (absent: deleted) */
  assignedElsewhere: ReadonlyMap<string, string | null>
  backoff: Backoff
  /** VMs taken off this host whose release is pending (`releasing.node` is this host): since is
   * the record's `releasing.since`, echoed in the report */
  releasing?: ReadonlyArray<{ vmId: string, since: number }>
}

export interface Observed {
  /** every guest the hypervisor has a runtime for */
  guests: ReadonlyMap<string, GuestStatus>
  /** why no guest may start on this host now (no liveness lease, fenced), or null */
  held: string | null
  /** VMs a live migration this host takes part in holds: neither restarted, stopped nor cleaned up */
  migrating: ReadonlySet<string>
  /** per VM: why this host cannot launch it at all (Hypervisor.cannotLaunch) */
  cannotLaunch: ReadonlyMap<string, string>
}

export interface History {
  attempts: ReadonlyMap<string, Attempts>
  /** VMs this agent saw with desired 'stopped': a later desired 'running' is a start, whatever the policy */
  stopSeen: ReadonlySet<string>
  /** the newest phase this agent reported per VM (queued or committed): the record may lag behind it */
  lastReported: ReadonlyMap<string, VmPhase>
  /** VMs with a report queued and not yet committed */
  unsent: ReadonlySet<string>
  /** VMs with an action from an earlier round still running */
  busy: ReadonlySet<string>
}

export type AgentAction =
  /** record `attempt`, forget a seen stop, build the host side, report 'starting', start the guest */
  | { kind: 'start', vmId: string, reason: string, attempt: Attempts }
  /** report 'stopping', stop the guest, and with reportExit report 'stopped' with how it ended */
  | { kind: 'stop', vmId: string, reason: string, reportExit: boolean }
  /** remove the guest and everything it had here; forget its history */
  | { kind: 'cleanup', vmId: string, reason: string }
  | { kind: 'report', vmId: string, phase: VmPhase, reason: string, ip?: string }
  | { kind: 'reset-backoff', vmId: string, reason: string }
  /** remember that the VM was desired stopped (a later start is asked for, not a crash loop) */
  | { kind: 'note-stop', vmId: string, reason: string }
  /** report 'stopped' with `released: since`: the guest of a VM taken off this host is gone here */
  | { kind: 'release', vmId: string, since: number, reason: string }
  /** nothing now, and why (fenced, backing off, migrating, busy) */
  | { kind: 'hold', vmId: string, reason: string }

/** The actions for every VM, grouped per VM in the order they must run (VMs are independent). */
export function decide (desired: Desired, observed: Observed, history: History, now: number): AgentAction[] {
  const out: AgentAction[] = []
  const mine = new Map<string, VmRecord>()
  for (const vm of desired.vms) if (vm.assignedNode === desired.self) mine.set(vm.id, vm)
  const vacating = [...observed.guests.values()].filter((g) => g.state === 'running' && !mine.has(g.vmId) && !observed.migrating.has(g.vmId)).map((g) => g.vmId).sort()
  for (const vm of mine.values()) {
    const held = leftAlone(vm.id, observed, history)
    if (held != null) { out.push({ kind: 'hold', vmId: vm.id, reason: held }); continue }
    out.push(...converge(vm, observed.guests.get(vm.id) ?? null, desired, { ...observed, vacating }, history, now))
  }
  for (const [id, g] of observed.guests) {
    if (mine.has(id)) continue
    const held = leftAlone(id, observed, history)
    if (held != null) { out.push({ kind: 'hold', vmId: id, reason: held }); continue }
    const owner = desired.assignedElsewhere.get(id)
    const where = owner == null ? 'deleted' : `assigned to ${owner}`
    out.push({ kind: 'cleanup', vmId: id, reason: `not assigned here (${where})${g.state === 'running' ? ': stopping its guest' : ''}` })
  }
  for (const r of desired.releasing ?? []) {
    // a guest still here is cleaned up above (this round or an earlier one still busy): the
    // release is reported in the round that finds it gone
    if (mine.has(r.vmId) || observed.guests.has(r.vmId) || leftAlone(r.vmId, observed, history) != null) continue
    out.push({ kind: 'release', vmId: r.vmId, since: r.since, reason: 'taken off this host: no guest here' })
  }
  return out
}

function leftAlone (id: string, observed: Observed, history: History): string | null {
  if (history.busy.has(id)) return 'an earlier action is still running'
  if (observed.migrating.has(id)) return 'a live migration holds it'
  return null
}

function lastPhase (vm: VmRecord, history: History): VmPhase {
  return history.lastReported.get(vm.id) ?? vm.status.phase
}

/** What a start needs to know besides Observed: the running guests here of VMs not assigned here
 * (a migration's excepted), which the same round cleans up. */
type Seen = Observed & { vacating: readonly string[] }

function converge (vm: VmRecord, st: GuestStatus | null, desired: Desired, observed: Seen, history: History, now: number): AgentAction[] {
  const id = vm.id
  const attempts = history.attempts.get(id)
  if (vm.desired === 'stopped') {
    const out: AgentAction[] = [{ kind: 'note-stop', vmId: id, reason: 'desired stopped' }]
    if (st?.state === 'running') out.push({ kind: 'stop', vmId: id, reason: 'stop requested', reportExit: true })
    // lastReported, not the record: the stop just reported may not be committed yet; a record
    // whose status another node wrote (the VM moved here stopped) gets this host's own report
    else if (lastPhase(vm, history) !== 'stopped' || (vm.status.node !== desired.self && !history.unsent.has(id))) {
      out.push({ kind: 'report', vmId: id, phase: 'stopped', reason: st == null ? 'never started' : 'stopped' })
    }
    if (attempts != null) out.push({ kind: 'reset-backoff', vmId: id, reason: 'desired stopped' })
    return out
  }
  if (st?.state === 'running') {
    if (st.generation !== vm.generation) {
      return [
        { kind: 'stop', vmId: id, reason: `spec changed (generation ${st.generation} → ${vm.generation})`, reportExit: false },
        ...launch(vm, 'new spec', attempts, observed, now, desired.backoff)
      ]
    }
    const out: AgentAction[] = []
    if (st.ready && lastPhase(vm, history) !== 'running') out.push({ kind: 'report', vmId: id, phase: 'running', reason: '', ...(st.ip != null ? { ip: st.ip } : {}) })
    if (attempts != null && st.ready && now - attempts.lastStart > STABLE_AFTER_MS) out.push({ kind: 'reset-backoff', vmId: id, reason: `ready for more than ${STABLE_AFTER_MS / 1000}s` })
    return out
  }
  if (st == null) return launch(vm, 'first start', attempts, observed, now, desired.backoff)
  // The guest is gone: the restart policy decides.
  const exit = st.exit
  const crashed = st.state === 'crashed'
  const policy = vm.spec.restartPolicy
  // A generation change or an explicit start after a stop always starts again. The stop is known
  // from this agent's own view, or (after a daemon restart) from the exit the stop caused. Not
  // from the record's phase: a guest that powered itself off is 'stopped' too, and the policy
  // alone decides about it.
  const newSpec = st.generation !== vm.generation
  if (newSpec || history.stopSeen.has(id) || exit?.requested === 'stop') {
    // asked for, not a crash loop: no backoff, no 'failed' in between
    return [
      ...(attempts != null ? [{ kind: 'reset-backoff' as const, vmId: id, reason: 'start asked for, not a restart' }] : []),
      ...launch(vm, newSpec ? 'new spec' : 'start requested', undefined, observed, now, desired.backoff)
    ]
  }
  const ended = exit?.reason ?? 'exited'
  const restart = policy === 'always' || (policy === 'on-failure' && crashed)
  if (!restart) {
    const phase: VmPhase = crashed ? 'failed' : 'stopped'
    const reason = `${ended}; restart policy ${policy}`
    return lastPhase(vm, history) !== phase ? [{ kind: 'report', vmId: id, phase, reason }] : [{ kind: 'hold', vmId: id, reason }]
  }
  const a = attempts ?? { count: 0, nextAt: 0, lastStart: 0 }
  if (now < a.nextAt) {
    const reason = `${ended}; restarting in ${Math.ceil((a.nextAt - now) / 1000)}s (attempt ${a.count + 1}, policy ${policy})`
    return lastPhase(vm, history) !== 'failed' ? [{ kind: 'report', vmId: id, phase: 'failed', reason }] : [{ kind: 'hold', vmId: id, reason }]
  }
  return launch(vm, `restart after: ${exit?.reason ?? 'exit'} (policy ${policy})`, attempts, observed, now, desired.backoff)
}

/** How the reason of every hold that keeps a VM assigned here from starting begins (the agent says
 * these once at info: a VM waiting on its host otherwise shows no reason anywhere). */
export const START_WAIT = 'not starting'

/** A start, unless the host cannot launch the VM (failed) or may not run guests now (hold). */
function launch (vm: VmRecord, why: string, attempts: Attempts | undefined, observed: Seen, now: number, backoff: Backoff): AgentAction[] {
  const cannot = observed.cannotLaunch.get(vm.id)
  if (cannot != null) return [{ kind: 'report', vmId: vm.id, phase: 'failed', reason: cannot }]
  if (vm.releasing != null && vm.releasing.node !== vm.assignedNode) return [{ kind: 'hold', vmId: vm.id, reason: `${START_WAIT} (${why}): node ${vm.releasing.node} may still run its guest (waits for its release)` }]
  if (observed.held != null) return [{ kind: 'hold', vmId: vm.id, reason: `${START_WAIT} (${why}): ${observed.held}` }]
  if (observed.vacating.length > 0) return [{ kind: 'hold', vmId: vm.id, reason: `${START_WAIT} (${why}): the guest of ${observed.vacating.map((id) => `VM ${id}`).join(', ')}, no longer assigned here, still holds its room (stopped first)` }]
  const count = (attempts?.count ?? 0) + 1
  return [{ kind: 'start', vmId: vm.id, reason: why, attempt: { count, lastStart: now, nextAt: now + backoffMs(count, backoff) } }]
}

/** The delay after the count-th start before the next restart may happen. */
export function backoffMs (count: number, backoff: Backoff = DEFAULT_BACKOFF): number {
  return Math.min(backoff.max, backoff.first * 2 ** Math.min(count - 1, MAX_BACKOFF_DOUBLINGS))
}

/** A report made from one hypervisor event, and whether the next round should come at once. */
export interface EventDecision {
  report: { phase: VmPhase, reason: string, ip?: string } | null
  kick: boolean
}

/** What an event about one guest means: events of VMs not ours, or of another generation, are ignored. */
export function decideEvent (e: GuestEvent, vm: VmRecord | null, self: string): EventDecision {
  const none: EventDecision = { report: null, kick: false }
  if (vm == null || vm.assignedNode !== self || e.generation !== vm.generation) return none
  switch (e.type) {
    case 'running': return { report: { phase: 'running', reason: e.adopted ? 're-adopted after a daemon restart' : '', ...(e.ip != null ? { ip: e.ip } : {}) }, kick: false }
    case 'failed': return { report: { phase: 'failed', reason: e.reason }, kick: true }
    case 'stopped': return vm.desired === 'running' ? { report: null, kick: true } : { report: { phase: 'stopped', reason: e.exit.reason }, kick: false }
  }
}
