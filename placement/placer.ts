// The placement stack (Nomad's stack.go in spirit): filters, then scorers, then the selector, over a mutable
// working copy of the cluster that each placement is counted against. Built from a PlacementCluster, never
// mutating it; no clock, no randomness. See capacity-index.ts for why the fast path is exact.
import type { Constraint } from '../protocols/model.ts'
import type { Decision, FilterName, NodeVerdict, PlacedVm, PlacementCluster, PlacementConfig, PlacementNode, PlacementRequest, ScoreComponents } from './types.ts'
import { resolveConfig, type PlacementConfigInput } from './config.ts'
import { FILTERS, capabilityFilter, constraintFilter, constraintHolds, feasible, firstRejection } from './filters.ts'
import { affinityBound, affinityScore, domainScore, fitScore, pressureScore, snapshotScore, spreadSetKey, takeWarm, warmScore, weightedTotal } from './scorers.ts'
import { CapacityIndex } from './capacity-index.ts'
import { better } from './rank-order.ts'
import { BlixardError } from '../protocols/errors.ts'
import { reserve } from './from-model.ts'

/** Slack for the index's subtree pruning so rounding can never hide a node that the exact filter accepts. */
const PRUNE_SLACK = 1e-6
/**
 * Requests with label constraints or capability requirements walk an index holding only the nodes that pass
 * those static filters (one per distinct set, built on first use), so a rare constraint does not walk past
 * thousands of nodes it can never use. Bounded: beyond this many sets, requests fall back to the index of all
 * nodes and the full filters, which gives the same answer, more slowly.
 */
export const MAX_CLASS_INDEXES = 256
/** a class gets its own index only when it holds at most 1/this of the nodes */
export const SELECTIVE_CLASS_DIVISOR = 4

/** Identifies a request's static filters (constraints, capabilities); order-sensitive, which only costs reuse. */
function classKey (req: PlacementRequest): string {
  let k = ''
  for (const c of req.constraints) {
    k += c.label + '\u0000' + c.op + '\u0000'
    if (c.op === '==' || c.op === '!=') k += c.value
    else if (c.op === 'in' || c.op === 'not in') k += c.values.join('\u0001')
    k += '\u0002'
  }
  return k + '\u0003' + req.requires.join(',')
}

export interface PlaceOptions {
  /** full per-node verdicts (one object per node): for `blixard vm explain`, not for the scheduler loop */
  explain?: boolean
}

export class Placer {
  readonly config: PlacementConfig
  /** working copies, sorted by node id */
  readonly nodes: PlacementNode[]
  private readonly byId = new Map<string, number>()
  /** index of every ready node */
  private readonly all: CapacityIndex
  /** static-filter class key -> index of the ready nodes passing those filters */
  private readonly classes = new Map<string, CapacityIndex>()
  /** per node, every index it belongs to */
  private readonly memberOf: CapacityIndex[][]
  /** spread set -> domain value -> VMs of the set in that domain */
  private readonly domains = new Map<string, Map<string, number>>()
  private stack: Int32Array

  constructor (cluster: PlacementCluster, config: PlacementConfigInput | PlacementConfig = {}) {
    this.config = resolveConfig(config)
    this.nodes = cluster.nodes.map(cloneNode).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    this.nodes.forEach((n, i) => {
      if (this.byId.has(n.id)) throw new BlixardError('InvalidSpec', `duplicate node id ${n.id}`)
      this.byId.set(n.id, i)
    })
    this.all = new CapacityIndex(this.nodes.length)
    this.memberOf = this.nodes.map(() => [this.all])
    this.stack = new Int32Array(8)
    for (let i = 0; i < this.nodes.length; i++) this.reindex(i)
    for (const p of cluster.placed) this.countDomain(p.request, p.nodeId, 1)
  }

  nodeIndex (id: string): number | undefined {
    return this.byId.get(id)
  }

  /** Choose a node for the request without committing it. */
  place (req: PlacementRequest, opts: PlaceOptions = {}): Decision {
    if (opts.explain === true) return this.explain(req)
    const best = this.fastSelect(req)
    if (best < 0) return { vmId: req.vmId, nodeId: null, total: null, scores: null, rejections: this.countRejections(req), nodes: null }
    const scores = this.scores(best, req)
    return { vmId: req.vmId, nodeId: this.nodes[best].id, total: this.total(scores), scores, rejections: null, nodes: null }
  }

  /** Place and commit: the next request sees this one's reservation. */
  placeAndCommit (req: PlacementRequest, opts: PlaceOptions = {}): Decision {
    const d = this.place(req, opts)
    if (d.nodeId !== null) {
      this.assign(req, d.nodeId)
      // a new VM is handed a paused guest there: the next request does not count on the same one
      takeWarm(this.nodes[this.mustIndex(d.nodeId)], req)
    }
    return d
  }

  /** Count a VM's reservation on a node (also used by plans for moves). */
  assign (req: PlacementRequest, nodeId: string): void {
    this.adjust(req, nodeId, 1)
  }

  unassign (req: PlacementRequest, nodeId: string): void {
    this.adjust(req, nodeId, -1)
  }

  /** Change a node's state (plans mark a draining or dead node so it takes nothing). */
  setState (nodeId: string, state: PlacementNode['state']): void {
    const i = this.mustIndex(nodeId)
    this.nodes[i].state = state
    this.reindex(i)
  }

  /** A snapshot of the working nodes (deep copies). */
  snapshotNodes (): PlacementNode[] {
    return this.nodes.map(cloneNode)
  }

  /** Score components of node i for req (assumes i is feasible). */
  scores (i: number, req: PlacementRequest): ScoreComponents {
    const n = this.nodes[i]
    return {
      fit: fitScore(this.config.strategy, n),
      affinity: affinityScore(n, req),
      domain: this.domain(i, req),
      pressure: pressureScore(n.load, this.config),
      warm: warmScore(n, req, this.config),
      snapshot: snapshotScore(n, req)
    }
  }

  total (s: ScoreComponents): number {
    return weightedTotal(this.config, s.fit, s.affinity, s.domain, s.pressure, s.warm, s.snapshot)
  }

  private mustIndex (nodeId: string): number {
    const i = this.byId.get(nodeId)
    if (i === undefined) throw new BlixardError('NotFound', `node ${nodeId} is not in the placement snapshot`)
    return i
  }

  private adjust (req: PlacementRequest, nodeId: string, sign: 1 | -1): void {
    const i = this.mustIndex(nodeId)
    reserve(this.nodes[i], req, sign)
    this.countDomain(req, nodeId, sign)
    this.reindex(i)
  }

  private countDomain (req: PlacementRequest, nodeId: string, sign: number): void {
    const key = spreadSetKey(req)
    const i = this.byId.get(nodeId)
    if (key === null || i === undefined || req.spreadLabel === null) return
    const labels = this.nodes[i].labels
    if (!Object.hasOwn(labels, req.spreadLabel)) return
    const value = labels[req.spreadLabel]
    let m = this.domains.get(key)
    if (m === undefined) { m = new Map(); this.domains.set(key, m) }
    const c = (m.get(value) ?? 0) + sign
    if (c > 0) m.set(value, c)
    else m.delete(value)
  }

  private domainCounts (req: PlacementRequest): Map<string, number> | undefined {
    const key = spreadSetKey(req)
    return key === null ? undefined : this.domains.get(key)
  }

  private domain (i: number, req: PlacementRequest, counts = this.domainCounts(req)): number {
    if (req.spreadLabel === null) return 0
    const labels = this.nodes[i].labels
    if (!Object.hasOwn(labels, req.spreadLabel)) return domainScore(0, false)
    return domainScore(counts?.get(labels[req.spreadLabel]) ?? 0, true)
  }

  private reindex (i: number): void {
    for (const idx of this.memberOf[i]) idx.remove(i)
    this.insertInto(this.memberOf[i], i)
  }

  /** Puts node i, if it takes VMs, into each of `indexes` with what it has left: capacity ×
   * overcommit − reserved, and the slots under maxVms. The one place that arithmetic is written. */
  private insertInto (indexes: readonly CapacityIndex[], i: number): void {
    const n = this.nodes[i]
    if (n.state !== 'ready') return
    const key = fitScore(this.config.strategy, n)
    const cpu = n.capacity.cpu * n.overcommit.cpu - n.reserved.cpu
    const mem = n.capacity.memoryMiB * n.overcommit.memory - n.reserved.memoryMiB
    const disk = n.capacity.diskGiB * n.overcommit.disk - n.reserved.diskGiB
    const slots = n.maxVms === null ? Infinity : n.maxVms - n.vmCount
    for (const idx of indexes) idx.insert(i, key, i, cpu, mem, disk, slots)
  }

  /** The index to walk for a request: its static-filter class, built on first use (see MAX_CLASS_INDEXES). */
  private indexFor (req: PlacementRequest, extra: Constraint | null): CapacityIndex {
    if (extra !== null) return this.labelIndex(extra)
    if (req.constraints.length === 0 && req.requires.length === 0) return this.all
    const key = classKey(req)
    let idx = this.classes.get(key)
    if (idx !== undefined) return idx
    if (this.classes.size >= MAX_CLASS_INDEXES) return this.all
    const members: number[] = []
    for (let i = 0; i < this.nodes.length; i++) {
      const n = this.nodes[i]
      if (constraintFilter.passes(n, req) && capabilityFilter.passes(n, req)) members.push(i)
    }
    // a class holding most nodes walks the shared index: skipping a few non-members is cheaper than
    // keeping one more index up to date on every placement
    if (members.length * SELECTIVE_CLASS_DIVISOR > this.nodes.length) {
      this.classes.set(key, this.all)
      return this.all
    }
    idx = new CapacityIndex(this.nodes.length)
    this.classes.set(key, idx)
    for (const i of members) {
      this.memberOf[i].push(idx)
      this.insertInto([idx], i)
    }
    return idx
  }

  /**
   * Branch and bound over the index: in-order walk (best fit score first), skipping subtrees that cannot hold
   * the request, evaluating the full filters and score on each candidate, stopping once fit + bound cannot
   * beat the best node. Allocates nothing per node.
   *
   * Affinity and domain spread raise a few nodes' scores, and a loose bound would make the walk visit every
   * busy node. So nodes that can earn those bonuses (a positive affinity term matches, or a value of the
   * spread label) are walked in their own class index with their own bound, and the general walk uses the
   * bound of a node that earns none. Every node is covered by a walk whose bound holds for it, so the result
   * is still the exact argmax; the walks share the best node and its tie-break. The warm scorer works the
   * same way: the nodes holding paused guests of the request's pool are walked in their own index; each
   * special walk's bound counts every bonus a node in it could also earn.
   */
  private fastSelect (req: PlacementRequest): number {
    const affB = affinityBound(req)
    const warmB = req.warmPool === undefined ? 0 : 1
    const snapB = req.snapshot === undefined || req.snapshot.cachedOn.length === 0 ? 0 : 1
    const counts = this.domainCounts(req)
    const sel = this.selection
    sel.best = -1
    sel.total = -Infinity
    sel.fit = -Infinity
    // a clone's nodes with the snapshot on hand are a handful: each is scored outright (its bonus
    // counted), so the walks below, whose bounds leave the bonus out, still find the exact argmax
    if (snapB === 1) this.visitSnapshotNodes(req, counts)
    if (affB === 0 && req.spreadLabel === null && warmB === 0) {
      this.walk(this.indexFor(req, null), req, counts, 0, 0, 0)
      return sel.best
    }
    let domMax = 0
    if (req.spreadLabel !== null) {
      for (const v of this.labelValues(req.spreadLabel)) {
        const dom = domainScore(counts?.get(v) ?? 0, true)
        if (dom > domMax) domMax = dom
        this.walk(this.indexFor(req, { label: req.spreadLabel, op: '==', value: v }), req, counts, affB, dom, warmB)
      }
    }
    for (const a of req.affinity) {
      if (a.weight > 0) this.walk(this.indexFor(req, { label: a.label, op: '==', value: a.value }), req, counts, affB, domMax, warmB)
    }
    if (req.warmPool !== undefined) this.walk(this.warmIndex(req.warmPool), req, counts, affB, domMax, warmB)
    this.walk(this.indexFor(req, null), req, counts, 0, 0, 0)
    return sel.best
  }

  private readonly selection = { best: -1, total: -Infinity, fit: -Infinity }

  private walk (idx: CapacityIndex, req: PlacementRequest, counts: Map<string, number> | undefined, affBound: number, domBound: number, warmBound: number): void {
    const cfg = this.config
    const w = cfg.weights
    const sel = this.selection
    const cpu = req.resources.cpu - PRUNE_SLACK
    const mem = req.resources.memoryMiB - PRUNE_SLACK
    const disk = req.resources.diskGiB - PRUNE_SLACK
    let stack = this.stack
    let sp = 0
    let t = idx.root
    for (;;) {
      while (t >= 0 && idx.subtreeMayFit(t, cpu, mem, disk)) {
        if (sp === stack.length) { stack = growStack(stack); this.stack = stack } // a treap this deep is unlikely, not impossible
        stack[sp++] = t
        t = idx.left[t]
      }
      if (sp === 0) break
      t = stack[--sp]
      const fit = idx.key[t]
      // every later node in this walk has a lower bound, a lower fit, or the same fit and a larger id
      if (sel.best >= 0 && !better(weightedTotal(cfg, fit, affBound, domBound, 0, warmBound, 0), fit, t, sel.total, sel.fit, sel.best)) break
      const n = this.nodes[t]
      // the subtree could hold the request, this node itself may not: skip it without running the filters
      if (idx.ownMayFit(t, cpu, mem, disk) && feasible(n, req)) this.consider(t, fit, req, counts)
      t = idx.right[t]
    }
  }

  /** Scores feasible node t in full and keeps it if it beats the best so far. */
  private consider (t: number, fit: number, req: PlacementRequest, counts: Map<string, number> | undefined): void {
    const cfg = this.config
    const w = cfg.weights
    const sel = this.selection
    const n = this.nodes[t]
    const total = w.fit * fit + w.affinity * affinityScore(n, req) + w.domain * this.domain(t, req, counts) + w.pressure * pressureScore(n.load, cfg) + w.warm * warmScore(n, req, cfg) + w.snapshot * snapshotScore(n, req)
    if (sel.best < 0 || better(total, fit, t, sel.total, sel.fit, sel.best)) { sel.best = t; sel.total = total; sel.fit = fit }
  }

  /** The nodes holding a clone's snapshot state, scored directly (bounded by the record: at most two). */
  private visitSnapshotNodes (req: PlacementRequest, counts: Map<string, number> | undefined): void {
    for (const id of req.snapshot?.cachedOn ?? []) {
      const t = this.byId.get(id)
      if (t === undefined || !feasible(this.nodes[t], req)) continue
      this.consider(t, fitScore(this.config.strategy, this.nodes[t]), req, counts)
    }
  }

  /**
   * Index of the nodes carrying one label value (for the affinity and spread walks), whatever the request's
   * constraints: each node joins one such index per label, so upkeep stays small; candidates still pass the
   * full filters.
   */
  private labelIndex (c: Constraint): CapacityIndex {
    const key = '\u0004' + c.label + '\u0000' + (c.op === '==' ? c.value : '')
    let idx = this.classes.get(key)
    if (idx !== undefined) return idx
    idx = new CapacityIndex(this.nodes.length)
    this.classes.set(key, idx)
    for (let i = 0; i < this.nodes.length; i++) {
      if (!constraintHolds(this.nodes[i].labels, c)) continue
      this.memberOf[i].push(idx)
      this.insertInto([idx], i)
    }
    return idx
  }

  /**
   * Index of the nodes holding a paused guest of warm pool `pool`, built on first use. Placements only
   * ever take guests (a placer never sees one appear), so a node that has one later had one when the
   * index was built; one that ran out stays in it and scores 0 there, which the bound allows.
   */
  private warmIndex (pool: string): CapacityIndex {
    const key = '\u0005' + pool
    let idx = this.classes.get(key)
    if (idx !== undefined) return idx
    idx = new CapacityIndex(this.nodes.length)
    this.classes.set(key, idx)
    for (let i = 0; i < this.nodes.length; i++) {
      if (!((this.nodes[i].warm?.[pool] ?? 0) > 0)) continue
      this.memberOf[i].push(idx)
      this.insertInto([idx], i)
    }
    return idx
  }

  /** Distinct values of a label over all nodes, sorted (labels are static for a placer's lifetime). */
  private labelValues (label: string): string[] {
    let vs = this.valuesOf.get(label)
    if (vs === undefined) {
      const set = new Set<string>()
      for (const n of this.nodes) if (Object.hasOwn(n.labels, label)) set.add(n.labels[label])
      vs = [...set].sort()
      this.valuesOf.set(label, vs)
    }
    return vs
  }

  private readonly valuesOf = new Map<string, string[]>()

  /** Full scan with one verdict per node; the chosen node is the same as the fast path's. */
  private explain (req: PlacementRequest): Decision {
    const verdicts: NodeVerdict[] = []
    const rejections: Partial<Record<FilterName, number>> = {}
    let best = -1
    let bestTotal = -Infinity
    let bestScores: ScoreComponents | null = null
    for (let i = 0; i < this.nodes.length; i++) {
      const n = this.nodes[i]
      const r = firstRejection(n, req)
      if (r !== null) {
        rejections[r.filter] = (rejections[r.filter] ?? 0) + 1
        verdicts.push({ nodeId: n.id, feasible: false, filter: r.filter, reason: r.reason })
        continue
      }
      const s = this.scores(i, req)
      const total = this.total(s)
      verdicts.push({ nodeId: n.id, feasible: true, scores: s, total })
      if (best < 0 || better(total, s.fit, i, bestTotal, bestScores?.fit ?? 0, best)) { best = i; bestTotal = total; bestScores = s }
    }
    return {
      vmId: req.vmId,
      nodeId: best < 0 ? null : this.nodes[best].id,
      total: best < 0 ? null : bestTotal,
      scores: bestScores,
      rejections,
      nodes: verdicts
    }
  }

  /** Why nothing fits: per filter, how many nodes it rejected first. One small object per failed request. */
  private countRejections (req: PlacementRequest): Partial<Record<FilterName, number>> {
    const counts = new Int32Array(FILTERS.length)
    for (const n of this.nodes) {
      for (let f = 0; f < FILTERS.length; f++) if (!FILTERS[f].passes(n, req)) { counts[f]++; break }
    }
    const out: Partial<Record<FilterName, number>> = {}
    FILTERS.forEach((f, k) => { if (counts[k] > 0) out[f.name] = counts[k] })
    return out
  }
}

function growStack (s: Int32Array): Int32Array {
  const bigger = new Int32Array(s.length * 2)
  bigger.set(s)
  return bigger
}

export function cloneNode (n: PlacementNode): PlacementNode {
  return {
    id: n.id,
    labels: n.labels,
    capacity: n.capacity,
    overcommit: n.overcommit,
    reserved: { cpu: n.reserved.cpu, memoryMiB: n.reserved.memoryMiB, diskGiB: n.reserved.diskGiB },
    state: n.state,
    capabilities: n.capabilities,
    maxVms: n.maxVms,
    vmCount: n.vmCount,
    groups: { ...n.groups },
    load: n.load,
    ...(n.warm !== undefined ? { warm: { ...n.warm } } : {})
  }
}

export type { PlacedVm }
