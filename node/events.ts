// The cluster's events as people read them: one line per applied command and per autopilot
// decision, the last MAX_EVENTS kept for the dashboard and the start of `blixard events`.
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { AutopilotDecision } from './autopilot.ts'
import { describeHaCommand } from './ha/service.ts'
import type { StateMachine } from '../storage/state-machine.ts'

/** recent events kept for the dashboard and the start of `blixard events` */
export const MAX_EVENTS = 100

export interface ClusterEvent { at: number, index: number, text: string }

/** One line per autopilot decision, for the cluster's events. */
export function autopilotEventText (d: AutopilotDecision): string {
  switch (d.kind) {
    case 'none': return `autopilot: no change (${d.why})`
    case 'replace': return `autopilot: replace voter ${d.remove} by ${d.promote} (${d.why})`
    case 'change': return `autopilot: ${d.change.type} ${d.change.node} (${d.why})`
  }
}

/** One line per applied command, for the dashboard and `blixard events`. */
export function describeCommand (env: CommandEnvelope, r: ApplyResult, name: (id: string) => string): string {
  const c = env.cmd
  const tail = r.ok ? '' : ` — rejected: ${r.error.kind}: ${r.error.message}`
  switch (c.type) {
    case 'CreateVm': return `VM ${c.spec.name} created${tail}`
    case 'AssignVm': return `VM ${name(c.id)} ${c.node == null ? 'unassigned' : `assigned to ${name(c.node)}`}${c.reason != null ? ` (${c.reason})` : ''}${tail}`
    case 'SetVmDesiredState': return `VM ${name(c.id)} desired ${c.desired}${tail}`
    case 'DeleteVm': return `VM ${c.id} deleted${tail}`
    case 'ReportVmStatus': return c.reports.map((x) => `VM ${name(x.id)} ${x.status.phase}${x.status.reason !== '' ? ` (${x.status.reason})` : ''}`).join('; ') + tail
    case 'RegisterNode': return `node ${c.node.name} registered${tail}`
    case 'UpdateNode': return `node ${name(c.id)} updated${c.state != null ? ` to ${c.state}` : ''}${tail}`
    case 'AddAdmin': return `admin ${c.name} added (${c.peerId})${tail}`
    case 'RemoveAdmin': return `admin ${c.peerId} removed${tail}`
    case 'StartMigration': return c.cold === true ? `VM ${name(c.vm)} moving cold to ${name(c.target)} (stopped here, booted there)${tail}` : `VM ${name(c.vm)} migrating live to ${name(c.target)}${tail}`
    case 'EvacuateVm': return `VM ${name(c.vm)} migrating live to ${name(c.target)} to drain its node${tail}`
    case 'ExpireMigration': return `VM ${name(c.vm)} migration ended by the leader: ${c.reason}${tail}`
    case 'CancelMigration': return `VM ${name(c.vm)} migration cancelled${tail}`
    // progress is routine (a line a second while it moves): not an event
    case 'ReportMigration': return c.event === 'progress' && r.ok ? '' : `VM ${name(c.vm)} migration: ${c.event} reported by ${name(c.node)}${c.reason != null ? ` (${c.reason})` : ''}${tail}`
    case 'ReportVolume': return `volume ${c.name} ${c.outcome === 'gone' ? 'deleted (its RBD image removed)' : c.outcome}${c.reason != null ? ` (${c.reason})` : ''}, reported by ${name(c.node)}${tail}`
    default: return describeHaCommand(c, r, name) ?? `${c.type}${tail}`
  }
}

/** A VM's or node's name for an event line; the id itself when neither is known (any more). */
export function nameIn (sm: StateMachine): (id: string) => string {
  return (id) => sm.getVm(id)?.spec.name ?? sm.getNode(id)?.name ?? id
}

/** The last MAX_EVENTS events of this node: applied commands, and notes (events that are not
 * commands, such as autopilot decisions) which also go to live subscribers. */
export class EventLog {
  private readonly events: ClusterEvent[] = []
  private readonly noteListeners = new Set<(e: ClusterEvent) => void>()

  constructor (private readonly sm: StateMachine, private readonly now: () => number) {}

  recent (): ClusterEvent[] { return this.events.slice() }

  applied (index: number, env: CommandEnvelope, r: ApplyResult): void {
    const text = this.describe(env, r)
    if (text !== '') this.push({ at: env.at, index, text }) // '': routine (lease renewals)
  }

  describe (env: CommandEnvelope, r: ApplyResult): string { return describeCommand(env, r, nameIn(this.sm)) }

  note (text: string): void {
    const e = { at: this.now(), index: this.sm.applied(), text }
    this.push(e)
    for (const fn of this.noteListeners) fn(e)
  }

  subscribeNotes (fn: (e: ClusterEvent) => void): () => void {
    this.noteListeners.add(fn)
    return () => { this.noteListeners.delete(fn) }
  }

  private push (e: ClusterEvent): void {
    this.events.push(e)
    if (this.events.length > MAX_EVENTS) this.events.shift()
  }
}
