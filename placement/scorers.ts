// Scorers: how good is a feasible node? Each returns a component in a fixed range so that the weighted total
// has a per-request upper bound, which the index uses to stop scanning early (see placer.ts).
import type { LoadHint, PlacementConfig, PlacementNode, PlacementRequest, Strategy } from './types.ts'

/**
 * How full the node is, in [0, 1]: the mean over cpu, memory and disk of reserved ÷ effective capacity.
 * Measured before placing, so it does not depend on the VM and one ordered index serves every request.
 */
export function fill (node: PlacementNode): number {
  return fillOf(node.reserved.cpu, node.reserved.memoryMiB, node.reserved.diskGiB, node)
}

export function fillOf (cpu: number, mem: number, disk: number, node: PlacementNode): number {
  const c = ratio(cpu, node.capacity.cpu * node.overcommit.cpu)
  const m = ratio(mem, node.capacity.memoryMiB * node.overcommit.memory)
  const d = ratio(disk, node.capacity.diskGiB * node.overcommit.disk)
  return (c + m + d) / 3
}

function ratio (used: number, cap: number): number {
  if (!(cap > 0)) return used > 0 ? 1 : 0
  const r = used / cap
  return r > 1 ? 1 : r
}

/**
 * Bin-pack prefers the fullest node that fits (best fit), and any node already in use over an empty one:
 * 0 for an empty node, 0.5 + 0.5 × fill otherwise. The step keeps soft preferences (affinity, domain spread,
 * pressure) choosing among busy hosts instead of opening new ones, so fewer hosts stay busy.
 */
export function binpackScore (node: PlacementNode): number {
  return node.vmCount > 0 ? 0.5 + 0.5 * fill(node) : 0
}

/** Spread prefers the emptiest node; load is evened out. */
export function spreadScore (node: PlacementNode): number {
  return 1 - fill(node)
}

export function fitScore (strategy: Strategy, node: PlacementNode): number {
  return strategy === 'binpack' ? binpackScore(node) : spreadScore(node)
}

/** Soft affinity in [-1, 1]: matched weight ÷ total absolute weight; negative weights repel. */
export function affinityScore (node: PlacementNode, req: PlacementRequest): number {
  const aff = req.affinity
  if (aff.length === 0) return 0
  let sum = 0
  let abs = 0
  for (let i = 0; i < aff.length; i++) {
    const a = aff[i]
    abs += Math.abs(a.weight)
    if (Object.hasOwn(node.labels, a.label) && node.labels[a.label] === a.value) sum += a.weight
  }
  return abs === 0 ? 0 : sum / abs
}

/** Highest affinity score any node could get for this request. */
export function affinityBound (req: PlacementRequest): number {
  let pos = 0
  let abs = 0
  for (const a of req.affinity) { abs += Math.abs(a.weight); if (a.weight > 0) pos += a.weight }
  return abs === 0 ? 0 : pos / abs
}

/**
 * Failure-domain spread in [0, 1]: 1 ÷ (1 + VMs of the same spread set already in this node's domain).
 * A node without the spread label scores 0; a request without spreadLabel scores 0 everywhere.
 */
export function domainScore (sameSetInDomain: number, hasLabel: boolean): number {
  return hasLabel ? 1 / (1 + sameSetInDomain) : 0
}

/** Spread set of a request: VMs with the same spread label and the same anti-affinity group (or none). */
export function spreadSetKey (req: PlacementRequest): string | null {
  return req.spreadLabel === null ? null : `${req.spreadLabel}\u0000${req.antiAffinityGroup ?? ''}`
}

/**
 * Live pressure in [-1, 0] from gossiped load: 0 when cool, falling linearly to -1 as the hotter of cpu and
 * memory goes from hotPct to 100 %. Reservations can look free while guests are busy; this catches it.
 * Missing or stale reports (ageMs > staleMs) are ignored.
 */
export function pressureScore (load: LoadHint | null, cfg: PlacementConfig): number {
  if (load === null || !(load.ageMs <= cfg.staleMs)) return 0
  const hot = Math.max(load.cpuPct, load.memPct)
  if (!(hot > cfg.hotPct)) return 0
  const span = 100 - cfg.hotPct
  const p = span > 0 ? (hot - cfg.hotPct) / span : 1
  return -(p > 1 ? 1 : p)
}

/**
 * Warm start in [0, 1]: 1 when the node's fresh load report shows a paused guest of the warm pool that
 * serves this VM, not yet taken by an earlier placement (a first start there is handed that guest: no
 * boot), else 0. A missing or stale report counts as none.
 */
export function warmScore (node: PlacementNode, req: PlacementRequest, cfg: PlacementConfig): number {
  if (req.warmPool === undefined) return 0
  if (node.load === null || !(node.load.ageMs <= cfg.staleMs)) return 0
  return (node.warm?.[req.warmPool] ?? 0) > 0 ? 1 : 0
}

/** A placement of `req` on `node` takes one of its paused warm guests (in place), if it has one. */
export function takeWarm (node: PlacementNode, req: PlacementRequest): void {
  const pool = req.warmPool
  const n = pool === undefined ? 0 : node.warm?.[pool] ?? 0
  if (pool !== undefined && node.warm !== undefined && n > 0) node.warm[pool] = n - 1
}

/**
 * Snapshot on hand in [0, 1]: 1 when the request is a clone's first start and the node holds the
 * snapshot's state (it took it, or last restored it), else 0. From the replicated record, not gossip.
 */
export function snapshotScore (node: PlacementNode, req: PlacementRequest): number {
  return req.snapshot !== undefined && req.snapshot.cachedOn.includes(node.id) ? 1 : 0
}

/** The weighted total; always summed in this order so that total <= bound holds in floating point too. */
export function weightedTotal (cfg: PlacementConfig, fit: number, affinity: number, domain: number, pressure: number, warm: number, snapshot: number): number {
  const w = cfg.weights
  return w.fit * fit + w.affinity * affinity + w.domain * domain + w.pressure * pressure + w.warm * warm + w.snapshot * snapshot
}
