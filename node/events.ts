// The cluster's events as people read them: one line per applied command and per autopilot
// decision, the last MAX_EVENTS kept for the dashboard and the start of `blixard events`.
import { imageLabel } from '../protocols/images.ts'
import { poolImage } from '../protocols/pools.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { AutopilotDecision } from './autopilot.ts'
import { describeHaCommand } from './ha/service.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { AnyConfChange } from '../protocols/raft/types.ts'
import { isConfChangeV2 } from '../protocols/raft/confchange.ts'
import { idsTouched } from './api.ts'

/** recent events kept for the dashboard and the start of `blixard events` */
export const MAX_EVENTS = 100

export interface ClusterEvent { at: number, index: number, text: string }

/** events kept per VM for its history on the dashboard's VM view (dropped with the VM) */
export const VM_HISTORY_MAX = 30

/** One line per autopilot decision, for the cluster's events (peer ids: EventLog.note names them). */
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
    case 'DeleteVm': return `VM ${name(c.id)} deleted${tail}`
    case 'UpdateVmSpec': return `VM ${name(c.id)} spec changed (${c.spec.vcpus} vCPU, ${c.spec.memoryMiB} MiB)${tail}`
    case 'ReportVmStatus': return c.reports.map((x) => `VM ${name(x.id)} ${x.status.phase}${x.status.reason !== '' ? ` (${x.status.reason})` : ''}`).join('; ') + tail
    case 'RegisterNode': return `node ${c.node.name} registered${tail}`
    case 'UpdateNode': return `node ${name(c.id)} updated${c.state != null ? ` to ${c.state}` : ''}${tail}`
    case 'RemoveNode': return `node ${name(c.id)} removed${tail}`
    case 'CreateNetwork': return `network ${c.name} created (${c.subnet})${tail}`
    case 'DeleteNetwork': return `network ${c.name} deleted${tail}`
    case 'AllocateIp': return `network ${c.network}: address for VM ${name(c.vm)}${tail}`
    case 'ReleaseIp': return `network ${c.network}: address of VM ${name(c.vm)} released${tail}`
    case 'CreateVolume': return `volume ${c.name} created (${c.sizeGiB} GiB in ${c.pool}${c.parent != null ? `, cloned from ${c.parent.volume}@${c.parent.snapshot}` : ''})${tail}`
    case 'ResizeVolume': return `volume ${c.name} resized to ${c.sizeGiB} GiB${tail}`
    case 'SnapshotVolume': return `volume ${c.name} snapshot ${c.snapshot} taken${tail}`
    case 'DeleteVolume': return `volume ${c.name} deleted${tail}`
    case 'SetJoinPolicy': return `join policy set to ${c.policy}${tail}`
    case 'ApproveNode': return `node ${c.peerId} approved to join${tail}`
    case 'RecoverAdmin': return `admin ${c.peerId} recovered${tail}`
    case 'AddAdmin': return `admin ${c.name} added (${c.peerId})${tail}`
    case 'RemoveAdmin': return `admin ${c.peerId} removed${tail}`
    case 'StartMigration': return c.cold === true ? `VM ${name(c.vm)} moving cold to ${name(c.target)} (stopped here, booted there)${tail}` : `VM ${name(c.vm)} migrating live to ${name(c.target)}${tail}`
    case 'EvacuateVm': return `VM ${name(c.vm)} migrating live to ${name(c.target)} to drain its node${tail}`
    case 'ExpireMigration': return `VM ${name(c.vm)} migration ended by the leader: ${c.reason}${tail}`
    case 'CancelMigration': return `VM ${name(c.vm)} migration cancelled${tail}`
    // progress is routine (a line a second while it moves): not an event
    case 'ReportMigration': return c.event === 'progress' && r.ok ? '' : `VM ${name(c.vm)} migration: ${c.event} reported by ${name(c.node)}${c.reason != null ? ` (${c.reason})` : ''}${tail}`
    case 'ReportVolume': return `volume ${c.name} ${c.outcome === 'gone' ? 'deleted (its RBD image removed)' : c.outcome}${c.reason != null ? ` (${c.reason})` : ''}, reported by ${name(c.node)}${tail}`
    // quotas and the scheduler's decisions
    case 'SetQuota': return c.limits === null ? `quota of project ${c.project} cleared${tail}` : `quota of project ${c.project} set: ${Object.entries(c.limits).map(([k, v]) => `${k} ${String(v)}`).join(', ') || 'no limits'}${tail}`
    case 'PreemptVm': return `VM ${name(c.vm)} placed on ${name(c.node)} by preempting ${c.victims.map((v) => `VM ${name(v)}`).join(', ')} (pending until room appears)${tail}`
    case 'RebalanceVm': return `VM ${name(c.vm)} migrating live to ${name(c.target)} to rebalance (${c.reason})${tail}`
    // VM memory snapshots
    case 'SnapshotVm': return `VM ${name(c.vm)} snapshot ${c.name} requested${tail}`
    case 'RestoreVm': return `VM ${name(c.vm)} restore from snapshot ${c.name} requested${tail}`
    case 'DeleteVmSnapshot': return `VM ${name(c.vm)} snapshot ${c.name} deleted${tail}`
    case 'ReportVmSnapshot': return `VM ${name(c.vm)} snapshot ${c.name}: ${c.event} reported by ${name(c.node)}${c.reason != null ? ` (${c.reason})` : ''}${tail}`
    // warm pools
    case 'SetWarmPool': return `warm pool ${c.name} set: ${c.size} guest(s) of image ${imageLabel(poolImage(c))}, ${c.vcpus} vCPU × ${c.memoryMiB} MiB per node${tail}`
    case 'DeleteWarmPool': return `warm pool ${c.name} deleted${tail}`
    default: return describeHaCommand(c, r, name) ?? `${c.type}${tail}`
  }
}

/** A VM's or node's name for an event line; `gone` (names of VMs deleted by the entry being
 * described) next; the id itself when none is known. */
export function nameIn (sm: StateMachine, gone: ReadonlyMap<string, string> = new Map()): (id: string) => string {
  return (id) => sm.getVm(id)?.spec.name ?? sm.getNode(id)?.name ?? gone.get(id) ?? id
}

/** A libp2p Ed25519 peer id (base58btc) inside free text, such as an autopilot reason. */
const PEER_ID_IN_TEXT = /12D3KooW[1-9A-HJ-NP-Za-km-z]{44}/g

/** How many trailing characters of a peer id stand for a node not registered yet (the CLI's short id). */
const SHORT_PEER_ID = 12

/** A node's name, or for a peer that has not registered yet (a joiner) the end of its id. */
function nodeName (sm: StateMachine): (id: string) => string {
  return (id) => sm.getNode(id)?.name ?? `…${id.slice(-SHORT_PEER_ID)}`
}

/** `text` with every peer id in it replaced by the node's name (a joiner's by its short id). */
export function namesForIds (text: string, name: (id: string) => string): string {
  return text.replace(PEER_ID_IN_TEXT, (id) => name(id))
}

/** One line per applied membership change, on every node (the autopilot's reason for it is a
 * note on the leader only). */
export function confChangeEventText (cc: AnyConfChange, name: (id: string) => string): string {
  const one = (type: string, node: string): string => type === 'addLearner' || type === 'add-learner'
    ? `${name(node)} joins as a learner`
    : type === 'promote' || type === 'add-voter' ? `${name(node)} becomes a voter` : `${name(node)} leaves the voters and learners`
  if (!isConfChangeV2(cc)) return `membership: ${one(cc.type, cc.node)}`
  if (cc.changes.length === 0) return 'membership: joint change completed'
  return `membership: ${cc.changes.map((c) => one(c.type, c.node)).join(', ')}${cc.changes.length > 1 ? ' (joint change)' : ''}`
}

/** The last MAX_EVENTS events of this node: applied commands, and notes (events that are not
 * commands, such as autopilot decisions) which also go to live subscribers. */
export class EventLog {
  /** `ids`: a note kept with its peer ids, named when read (a joiner's membership note comes
   * before its node registers: read later, it says node1, not …qUYm3zak3oUX) */
  private readonly events: Array<ClusterEvent & { ids?: true }> = []
  private readonly noteListeners = new Set<(e: ClusterEvent) => void>()
  /** every VM's name by id: a DeleteVm is described after it applied, when the record is gone */
  private readonly vmNames = new Map<string, string>()
  /** per VM id, its own recent events (vmHistory) */
  private readonly vmEvents = new Map<string, ClusterEvent[]>()
  /** names of the VMs the entry being described deleted (until the next entry) */
  private gone = new Map<string, string>()

  constructor (private readonly sm: StateMachine, private readonly now: () => number) {
    for (const v of sm.listVms()) this.vmNames.set(v.id, v.spec.name)
  }

  recent (): ClusterEvent[] {
    const name = nodeName(this.sm)
    return this.events.map((e) => e.ids === true ? { at: e.at, index: e.index, text: namesForIds(e.text, name) } : e)
  }

  /** Called with every applied entry before anyone describes it (watchers of cluster.events too). */
  beforeDescribe (env: CommandEnvelope, r: ApplyResult): void {
    this.gone = new Map()
    const c = env.cmd
    if (!r.ok) return
    if (c.type === 'CreateVm') this.vmNames.set(c.id, c.spec.name)
    else if (c.type === 'UpdateVmSpec') this.vmNames.set(c.id, c.spec.name)
    else if (c.type === 'DeleteVm') {
      const n = this.vmNames.get(c.id)
      if (n != null) this.gone.set(c.id, n)
      this.vmNames.delete(c.id)
    }
  }

  applied (index: number, env: CommandEnvelope, r: ApplyResult): void {
    const text = this.describe(env, r)
    if (text !== '') this.push({ at: env.at, index, text }) // '': routine (lease renewals)
    const c = env.cmd
    for (const id of idsTouched(c)) {
      if (c.type === 'DeleteVm' && r.ok) { this.vmEvents.delete(id); continue }
      // a status report names only this VM's line, not its batch-mates'
      const own = c.type === 'ReportVmStatus' ? this.describe({ ...env, cmd: { ...c, reports: c.reports.filter((x) => x.id === id) } }, r) : text
      if (own === '' || (!r.ok && this.vmEvents.get(id) == null)) continue
      const list = this.vmEvents.get(id) ?? []
      list.push({ at: env.at, index, text: own })
      if (list.length > VM_HISTORY_MAX) list.shift()
      this.vmEvents.set(id, list)
    }
  }

  /** The last VM_HISTORY_MAX events of one VM since this node started (oldest first). */
  vmHistory (id: string): ClusterEvent[] { return (this.vmEvents.get(id) ?? []).slice() }

  describe (env: CommandEnvelope, r: ApplyResult): string { return describeCommand(env, r, nameIn(this.sm, this.gone)) }

  /** An event that is not a command (an autopilot decision, a membership change); node ids in it
   * are replaced by the nodes' names. */
  note (text: string, index = this.sm.applied()): void {
    const at = this.now()
    this.push({ at, index, text, ids: true })
    const e = { at, index, text: namesForIds(text, nodeName(this.sm)) }
    for (const fn of this.noteListeners) fn(e)
  }

  /** A membership change applied from the log (every node sees it). */
  confApplied (index: number, cc: AnyConfChange): void {
    this.note(confChangeEventText(cc, (id) => id), index)
  }

  subscribeNotes (fn: (e: ClusterEvent) => void): () => void {
    this.noteListeners.add(fn)
    return () => { this.noteListeners.delete(fn) }
  }

  private push (e: ClusterEvent & { ids?: true }): void {
    this.events.push(e)
    if (this.events.length > MAX_EVENTS) this.events.shift()
  }
}
