// The leader's scheduler loop: places unassigned VMs that should run, and
// evacuates draining nodes, by proposing AssignVm through Raft (running VMs of a
// draining node move live: EvacuateVm, a live migration; see `evacuation`). Decisions
// come from placement/ over committed state plus the freshest gossiped load.
import type { NodeRecord, VmRecord, VmSpec } from '../protocols/model.ts'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { Decision, LoadHint } from '../placement/types.ts'
import { clusterFromModel, requestFromSpec, requestFromVm } from '../placement/from-model.ts'
import { placeBatch, placeOne } from '../placement/place.ts'
import { sortQueue } from '../placement/queue.ts'
import { planEvacuation } from '../placement/plans/evacuate.ts'
import { planPreemption } from '../placement/plans/preempt.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'
import type { PlacementCluster, PlacementRequest } from '../placement/types.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { avoidedNode } from '../storage/apply-ha.ts'
import { activeMigration } from '../storage/migration-guard.ts'
import { releaseWait } from '../storage/release-rules.ts'
import { volumeUnusable } from '../protocols/volume-phases.ts'
import { poolFor, type WarmPoolRecord } from '../protocols/pools.ts'
import type { Logger } from './log.ts'
import type { NodeMetrics } from './metrics.ts'

/** What the scheduler needs of load gossip: the freshest report per node, aged. */
export interface LoadBoard {
  hints: () => Map<string, LoadHint>
}

export interface SchedulerDeps {
  sm: StateMachine
  load: LoadBoard
  isLeader: () => boolean
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  log: Logger
  metrics?: NodeMetrics
  /** max AssignVm proposals per pass */
  maxPerPass?: number
  now?: () => number
  /** planted bugs: the simulator's only (sim/sched-model.ts) */
  bugs?: ReadonlySet<PreemptBug>
}

/** How a periodic loop is driven: setInterval in a daemon, the virtual clock in the simulator.
 * Returns a function that stops it. */
export type Every = (ms: number, run: () => void) => () => void

export const realEvery: Every = (ms, run) => {
  const t = setInterval(run, ms)
  return () => { clearInterval(t) }
}

/** Live migrations off one draining node at a time: each moves a whole VM's memory (and its CPU
 * cost in both daemons), so a few at once, not all. Two at once into one target is what
 * test/vm/migrate.test.ts runs (and two concurrent `vm migrate` into one node before it). */
export const MAX_LIVE_EVACUATIONS_PER_NODE = 2
/** A VM whose live move off a node aborted this recently moves cold instead (no endless retries). */
export const LIVE_RETRY_WINDOW_MS = 5 * 60_000

/** How a VM leaves a draining node: live when it runs here under QEMU and no live move of it from
 * here failed lately; else cold (reassigned: its guest stops here and starts there), with the reason. */
export function evacuation (vm: VmRecord, node: NodeRecord, to: string | null, now: number): { kind: 'live' } | { kind: 'cold', reason: string } {
  const from = `evacuated from draining ${node.name}`
  if (to == null) return { kind: 'cold', reason: `${from}; no other node fits` }
  if (vm.desired !== 'running' || vm.status.phase !== 'running' || vm.status.node !== node.id) return { kind: 'cold', reason: `${from} (not running: nothing to move live)` }
  if (vm.spec.hypervisor !== 'qemu') return { kind: 'cold', reason: `${from} (${vm.spec.hypervisor} guests do not migrate live)` }
  const m = vm.migration
  if (m?.phase === 'aborted' && m.source === node.id && now - (m.ended ?? m.started) < LIVE_RETRY_WINDOW_MS) {
    return { kind: 'cold', reason: `${from} (its live migration failed: ${m.reason ?? 'no reason given'})` }
  }
  return { kind: 'live' }
}

/** Preemptions one pass may propose: each stops running guests, so a few at a time; a VM still
 * waiting is looked at again next pass (with the room the earlier ones made counted). */
export const MAX_PREEMPTIONS_PER_PASS = 4

/** A preemption the leader proposes (PreemptVm): `vm` goes to `node` once `victims` left it. */
export interface PreemptionDecision { vm: string, node: string, victims: string[], reason: string }

/** The cluster placement sees for preemption: a VM being live-migrated is not a victim (apply
 * would refuse it: refuseWhileMigrating), whatever its priority. */
function preemptionView (nodes: NodeRecord[], vms: VmRecord[], hints: Map<string, LoadHint>): PlacementCluster {
  const c = clusterFromModel(nodes, vms, hints)
  const moving = new Set(vms.filter((v) => activeMigration(v) != null).map((v) => v.id))
  if (moving.size === 0) return c
  return { ...c, placed: c.placed.map((p) => moving.has(p.request.vmId) ? { ...p, request: { ...p.request, preemptible: false } } : p) }
}

/** For VMs that fit nowhere (`waiting`, most important first), the preemptions to propose: each
 * planned on the view left by the placements of this pass (`placed`) and the preemptions before
 * it, so two never count the same freed room. Pure over its arguments. */
export function planPreemptions (nodes: NodeRecord[], vms: VmRecord[], hints: Map<string, LoadHint>, waiting: PlacementRequest[], placed: ReadonlyArray<{ vmId: string, to: string | null }>, avoid: (vmId: string) => string | null, max = MAX_PREEMPTIONS_PER_PASS, bugs?: ReadonlySet<PreemptBug>): PreemptionDecision[] {
  const out: PreemptionDecision[] = []
  if (waiting.length === 0) return out
  const at = new Map(placed.map((m) => [m.vmId, m.to]))
  let view = vms.map((v) => at.has(v.id) ? { ...v, assignedNode: at.get(v.id) ?? null } : v)
  const order = [...waiting].sort((a, b) => (b.priority - a.priority) || (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0))
  // the lowest priority placed: a VM at or below it has nobody to preempt (the common case, skipped
  // without a plan); recomputed only after a preemption changed the view
  const lowestPlaced = (): number => view.reduce((m, v) => v.assignedNode != null && v.spec.priority < m ? v.spec.priority : m, Infinity)
  let lowest = lowestPlaced()
  for (const req of order) {
    if (out.length >= max) break
    if (!(lowest < req.priority) && !(bugs?.has('preempt-equal') === true && lowest === req.priority)) continue
    const skip = avoid(req.vmId)
    const cluster = preemptionView(skip == null ? nodes : nodes.filter((n) => n.id !== skip), view, hints)
    const plan = planPreemption(cluster, req, {}, bugs)
    // no evictions: it fits now on this view (the room came from an earlier preemption's view
    // difference); the next pass places it the ordinary way
    if (plan.nodeId == null || plan.evictions.length === 0) continue
    out.push({ vm: req.vmId, node: plan.nodeId, victims: plan.evictions, reason: plan.reason })
    const gone = new Set(plan.evictions)
    view = view.map((v) => gone.has(v.id) ? { ...v, assignedNode: null } : v.id === req.vmId ? { ...v, assignedNode: plan.nodeId } : v)
    lowest = lowestPlaced()
  }
  return out
}

/** A VM's placement request, naming the warm pool whose paused guest its first start would be
 * handed (protocols/pools.ts poolFor): placement's warm scorer prefers a node holding one. */
export function requestWithPool (vm: VmRecord, pools: readonly WarmPoolRecord[]): PlacementRequest {
  const req = requestFromVm(vm)
  const pool = poolFor(vm.spec, pools)
  // a clone's first start resumes its snapshot, never a pool guest (node/agent.ts)
  return pool == null || req.snapshot !== undefined ? req : { ...req, warmPool: pool.name }
}

/** A VM still releasing the node it was taken off (storage/release-rules.ts) is not placed: apply
 * would refuse it anywhere else until that node reports its guest gone or is marked down. */
function wantsPlacement (vm: VmRecord): boolean {
  return vm.desired === 'running' && vm.assignedNode == null && vm.releasing == null
}

/** Why a VM cannot start yet because of its volumes (one pending, being deleted, or failed before
 * its image was made: protocols/volume-phases.ts), or null: it is not placed until then. */
export function volumeWait (sm: Pick<StateMachine, 'getVolume'>, vm: VmRecord): string | null {
  for (const name of vm.spec.volumes) {
    const v = sm.getVolume(name)
    if (v == null) return `volume ${name} does not exist`
    const why = volumeUnusable(v)
    if (why != null) return why
  }
  return null
}

/** One scheduler pass; returns how many assignments were committed. Pure over the replica, effects via propose. */
export async function schedulePass (d: SchedulerDeps): Promise<number> {
  if (!d.isLeader()) return 0
  const now = d.now ?? Date.now
  const nodes: NodeRecord[] = d.sm.listNodes()
  const vms: VmRecord[] = d.sm.listVms()
  const max = d.maxPerPass ?? 256
  const t0 = process.hrtime.bigint()
  const cluster = clusterFromModel(nodes, vms, d.load.hints())
  const pools = d.sm.listWarmPools()
  const todo = sortQueue(vms.filter((vm) => wantsPlacement(vm) && volumeWait(d.sm, vm) == null).map((vm) => requestWithPool(vm, pools))).slice(0, max)
  const moves: Array<{ vmId: string, to: string | null, reason: string }> = []
  // Flap backoff (storage/reschedule-rules.ts): a VM rescheduled off a host keeps off it for a
  // while, so it is placed in a batch of its own against the cluster without that host. (Two
  // batches may count the same free capacity: AssignVm's own check refuses the second, and the
  // next pass places it.)
  const byId = new Map(vms.map((v) => [v.id, v]))
  const groups = new Map<string | null, typeof todo>()
  for (const req of todo) {
    const avoid = avoidedNode(byId.get(req.vmId)!, now())
    groups.set(avoid, [...(groups.get(avoid) ?? []), req])
  }
  const waiting: PlacementRequest[] = []
  const reqOf = new Map(todo.map((r) => [r.vmId, r]))
  for (const [avoid, reqs] of groups) {
    const view = avoid == null ? cluster : { ...cluster, nodes: cluster.nodes.filter((n) => n.id !== avoid) }
    const { decisions } = placeBatch(view, reqs)
    for (const dec of decisions) {
      d.metrics?.placementDecisions.inc({ result: dec.nodeId == null ? 'no-capacity' : 'placed' })
      if (dec.nodeId != null) moves.push({ vmId: dec.vmId, to: dec.nodeId, reason: `placed (score ${dec.total?.toFixed(3) ?? '-'})` })
      else waiting.push(reqOf.get(dec.vmId)!)
    }
  }
  // Priority preemption: a VM that fits nowhere may displace strictly lower-priority,
  // preemptible VMs (placement/plans/preempt.ts); apply checks the same rules again (storage/apply-sched.ts).
  const preempts = planPreemptions(nodes, vms, d.load.hints(), waiting, moves, (id) => avoidedNode(byId.get(id)!, now()), MAX_PREEMPTIONS_PER_PASS, d.bugs)
  // Draining nodes: move their VMs away (one evacuation plan per node), running ones live.
  const lives: Array<{ vmId: string, to: string }> = []
  for (const n of nodes) {
    if (n.state !== 'draining') continue
    if (!vms.some((v) => v.assignedNode === n.id)) continue
    const plan = planEvacuation(cluster, n.id)
    let inFlight = vms.filter((v) => activeMigration(v)?.source === n.id).length
    for (const m of plan.moves) {
      if (moves.length + lives.length >= max) break
      const vm = byId.get(m.vmId)
      if (vm == null || activeMigration(vm) != null) continue // on its way already
      if (vm.releasing != null) continue // bound to the node it left until released (AssignVm refuses)
      const how = evacuation(vm, n, m.to, now())
      if (how.kind === 'cold') { moves.push({ vmId: m.vmId, to: m.to, reason: how.reason }); continue }
      if (inFlight >= MAX_LIVE_EVACUATIONS_PER_NODE) continue // the next pass, once one is done
      inFlight++
      lives.push({ vmId: m.vmId, to: m.to as string })
    }
  }
  d.metrics?.placementSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9)
  let done = 0
  await Promise.all(lives.map(async (m) => {
    try {
      const r = await d.propose({ cmd: { type: 'EvacuateVm', vm: m.vmId, target: m.to }, at: now() })
      if (r.ok) done++
      else d.log.warn('live evacuation refused', { vm: m.vmId, node: m.to, error: r.error })
    } catch (err) {
      d.log.debug('live evacuation not committed', { vm: m.vmId, err })
    }
  }))
  await Promise.all(preempts.map(async (p) => {
    try {
      const r = await d.propose({ cmd: { type: 'PreemptVm', vm: p.vm, node: p.node, victims: p.victims }, at: now() })
      if (r.ok) { done++; d.log.info('preempted', { vm: p.vm, node: p.node, victims: p.victims, why: p.reason }) } else d.log.warn('preemption refused', { vm: p.vm, node: p.node, error: r.error })
    } catch (err) {
      d.log.debug('preemption not committed', { vm: p.vm, err })
    }
  }))
  await Promise.all(moves.map(async (m) => {
    try {
      const r = await d.propose({ cmd: { type: 'AssignVm', id: m.vmId, node: m.to, reason: m.reason }, at: now() })
      if (r.ok) done++
      else d.log.warn('assignment rejected', { vm: m.vmId, node: m.to, error: r.error })
    } catch (err) {
      d.log.debug('assignment not committed', { vm: m.vmId, err })
    }
  }))
  return done
}

/** `blixard vm explain`: why each node would or would not take this VM now; for a VM that waits,
 * why it waits (its status: preempted by whom, say) and whether it could preempt lower ones. */
export function explainVm (sm: StateMachine, load: LoadBoard, vmId: string): { vm: string, assignedNode: string | null, decision: Decision, waiting: string | null, preemption: { nodeId: string | null, evictions: string[], reason: string } | null } {
  const vm = sm.getVm(vmId)
  if (vm == null) throw new Error(`no VM ${vmId}`)
  // Explain against the cluster without this VM's own reservation, as if placing it afresh.
  const others = sm.listVms().filter((v) => v.id !== vmId)
  const cluster = clusterFromModel(sm.listNodes(), others, load.hints())
  const decision = placeOne(cluster, requestWithPool(vm, sm.listWarmPools()), {}, { explain: true })
  const pending = vm.assignedNode == null && vm.desired === 'running'
  // a VM taken off a node waits first of all for that node to let go of its guest
  const release = releaseWait(vm, (id) => sm.getNode(id)?.name ?? id)
  const waiting = pending ? (release != null ? `${vm.status.reason}; ${release}` : vm.status.reason) : (release != null ? `placed, not started: ${release}` : null)
  // a VM waiting for its volumes is not placed, wherever it would fit: every node says why
  const wait = vm.assignedNode == null ? volumeWait(sm, vm) : null
  if (wait == null) {
    const preemption = pending && decision.nodeId == null ? planPreemption(preemptionView(sm.listNodes(), others, load.hints()), requestFromVm(vm)) : null
    // the plan names VMs and its node by id: people read names (the dashboard and --json too)
    const node = preemption?.nodeId == null ? null : preemption.nodeId
    const reason = preemption?.evictions.reduce((r, id) => r.split(id).join(`VM ${sm.getVm(id)?.spec.name ?? id}`), node == null ? preemption.reason : preemption.reason.split(` on ${node}:`).join(` on ${sm.getNode(node)?.name ?? node}:`))
    return { vm: vm.id, assignedNode: vm.assignedNode, decision, waiting, preemption: preemption == null ? null : { nodeId: preemption.nodeId, evictions: preemption.evictions, reason: reason ?? preemption.reason } }
  }
  const nodes = (decision.nodes ?? []).map((n) => ({ nodeId: n.nodeId, feasible: false as const, filter: 'volume' as const, reason: wait }))
  return { vm: vm.id, assignedNode: null, decision: { ...decision, nodeId: null, total: null, rejections: { volume: nodes.length }, nodes }, waiting: wait, preemption: null }
}

/** Where a live migration of `vm` should go when the admin names no node: the placement pipeline's
 * choice (constraints, anti-affinity, capacity, load) among the nodes other than the VM's own,
 * judged without the VM's own reservation; or why no node fits, nodes by name. */
export function migrationTarget (sm: StateMachine, load: LoadBoard, vm: VmRecord): { node: string } | { why: string } {
  const nodes = sm.listNodes()
  const others = sm.listVms().filter((v) => v.id !== vm.id)
  const cluster = clusterFromModel(nodes.filter((n) => n.id !== vm.assignedNode), others, load.hints())
  const d = placeOne(cluster, requestFromVm(vm), {}, { explain: true })
  if (d.nodeId !== null) return { node: d.nodeId }
  const name = new Map(nodes.map((n) => [n.id, n.name]))
  // a filter's reason starts with the filter's name already ("cpu: 1 reserved + …")
  const why = (d.nodes ?? []).flatMap((v) => v.feasible ? [] : [`${name.get(v.nodeId) ?? v.nodeId}: ${v.reason.startsWith(`${v.filter}:`) ? v.reason : `${v.filter}: ${v.reason}`}`])
  return { why: why.length === 0 ? 'there is no other node' : why.join('; ') }
}

/** Where the running VMs of `node` would go if it were drained now (the evacuation plan the
 * scheduler would run, on committed state plus gossiped load): the nodes they land on, which a
 * drain without --force carries (UpdateNode.onto) so that apply can refuse it if one of them
 * stopped being ready in between; or the VMs that fit no other node, each with why (nodes by name). */
export function drainTargets (nodes: NodeRecord[], vms: VmRecord[], hints: Map<string, LoadHint>, node: NodeRecord): { onto: string[] } | { stranded: string[] } {
  const byId = new Map(vms.map((v) => [v.id, v]))
  // another drain counting on this node while its VMs are still to move (apply refuses it too)
  const counted = nodes.flatMap((o) => o.id !== node.id && o.state === 'draining' && (o.drainOnto ?? []).includes(node.id)
    ? vms.filter((v) => v.assignedNode === o.id && v.desired === 'running').map((v) => `${v.spec.name} (on node ${o.name}, draining onto node ${node.name})`)
    : [])
  if (counted.length > 0) return { stranded: counted }
  if (!vms.some((v) => v.assignedNode === node.id && v.desired === 'running')) return { onto: [] }
  const plan = planEvacuation(clusterFromModel(nodes, vms, hints), node.id)
  const onto = new Set<string>()
  const stranded: string[] = []
  const name = new Map(nodes.map((n) => [n.id, n.name]))
  for (const m of plan.moves) {
    const vm = byId.get(m.vmId)
    if (vm === undefined || vm.desired !== 'running') continue
    if (m.to !== null) { onto.add(m.to); continue }
    // why: the verdicts for this VM alone on the other nodes (it may fit one alone, but not once
    // the node's other VMs took the room)
    const alone = placeOne(clusterFromModel(nodes.filter((n) => n.id !== node.id), vms.filter((v) => v.id !== vm.id), hints), requestFromVm(vm), {}, { explain: true })
    const why = alone.nodeId !== null
      ? `no room left on ${name.get(alone.nodeId) ?? alone.nodeId} once the node's other VMs moved`
      : (alone.nodes ?? []).flatMap((v) => v.feasible ? [] : [`${name.get(v.nodeId) ?? v.nodeId}: ${v.reason.startsWith(`${v.filter}:`) ? v.reason : `${v.filter}: ${v.reason}`}`]).join(', ')
    stranded.push(`${vm.spec.name} (${why === '' ? 'there is no other node' : why})`)
  }
  return stranded.length > 0 ? { stranded } : { onto: [...onto].sort() }
}

/** Why a new VM with this spec fits no node now (the reasons `vm explain` would give, nodes by
 * name), or null when some node fits. Judged on committed state plus gossiped load, like the
 * scheduler's own pass, so a create can be refused at once instead of waiting pending forever. */
export function admissionRefusal (nodes: NodeRecord[], vms: VmRecord[], hints: Map<string, LoadHint>, spec: VmSpec): string | null {
  const d = placeOne(clusterFromModel(nodes, vms, hints), requestFromSpec(spec.name, spec), {}, { explain: true })
  if (d.nodeId !== null) return null
  // it fits once lower-priority VMs make room: admitted, the scheduler preempts them
  if (planPreemption(preemptionView(nodes, vms, hints), requestFromSpec(spec.name, spec)).nodeId !== null) return null
  if (nodes.length === 0) return 'the cluster has no nodes'
  const name = new Map(nodes.map((n) => [n.id, n.name]))
  // a filter's reason starts with the filter's name already ("cpu: 1 reserved + …")
  const why = (d.nodes ?? []).flatMap((v) => v.feasible ? [] : [`${name.get(v.nodeId) ?? v.nodeId}: ${v.reason.startsWith(`${v.filter}:`) ? v.reason : `${v.filter}: ${v.reason}`}`])
  return `no node fits VM ${spec.name}: ${why.join('; ')}`
}

export class Scheduler {
  private timer: (() => void) | null = null
  private running = false
  private again = false
  constructor (private readonly d: SchedulerDeps, private readonly everyMs = 500, private readonly every: Every = realEvery) {}

  start (): void {
    this.timer = this.every(this.everyMs, () => { void this.kick() })
  }

  /** Run a pass now (after a VM was created, say); passes never overlap. A kick during a pass
   * runs another one right after it: that pass may have read the replica before the new VM. */
  async kick (): Promise<void> {
    if (!this.d.isLeader()) return
    if (this.running) { this.again = true; return }
    this.running = true
    try {
      do {
        this.again = false
        try { await schedulePass(this.d) } catch (err) { this.d.log.warn('scheduler pass failed', { err }) }
      } while (this.again && this.d.isLeader())
    } finally { this.running = false }
  }

  stop (): void { this.timer?.(); this.timer = null }
}
