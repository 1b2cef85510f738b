// First-fit-decreasing, the packing baseline the benchmark compares bin-pack against: each VM (in queue
// order, largest first) goes to the first node in id order that passes every filter. A segment tree over id
// order keeps the largest free cpu, memory, disk and slots per range so full ranges are skipped; as in the
// placer, requests whose static filters (constraints, capabilities) admit few nodes get a tree of their own.
import type { PlacementCluster, PlacementNode, PlacementRequest } from './types.ts'
import { capabilityFilter, constraintFilter, feasible } from './filters.ts'
import { reserve } from './from-model.ts'
import { cloneNode } from './placer.ts'

export interface FfdResult {
  /** node id per request, null when nothing fits */
  assignments: Array<string | null>
  nodesUsed: number
}

class FreeTree {
  readonly size: number
  readonly max: Float64Array
  constructor (readonly members: Int32Array) {
    let size = 1
    while (size < members.length) size *= 2
    this.size = size
    this.max = new Float64Array(2 * size * 4).fill(-Infinity)
  }

  set (pos: number, n: PlacementNode): void {
    const max = this.max
    let p = this.size + pos
    const ready = n.state === 'ready'
    max[4 * p] = ready ? n.capacity.cpu * n.overcommit.cpu - n.reserved.cpu : -Infinity
    max[4 * p + 1] = ready ? n.capacity.memoryMiB * n.overcommit.memory - n.reserved.memoryMiB : -Infinity
    max[4 * p + 2] = ready ? n.capacity.diskGiB * n.overcommit.disk - n.reserved.diskGiB : -Infinity
    max[4 * p + 3] = ready ? (n.maxVms === null ? Infinity : n.maxVms - n.vmCount) : -Infinity
    for (p >>= 1; p >= 1; p >>= 1) {
      for (let d = 0; d < 4; d++) max[4 * p + d] = Math.max(max[8 * p + d], max[8 * p + 4 + d])
    }
  }
}

export function firstFitDecreasing (cluster: PlacementCluster, reqs: readonly PlacementRequest[]): FfdResult {
  const nodes = cluster.nodes.map(cloneNode).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const all = new FreeTree(Int32Array.from(nodes.keys()))
  const memberOf: Array<Array<[FreeTree, number]>> = nodes.map((n, i) => [[all, i]])
  nodes.forEach((n, i) => all.set(i, n))
  const classes = new Map<string, FreeTree>()
  const treeFor = (req: PlacementRequest): FreeTree => {
    if (req.constraints.length === 0 && req.requires.length === 0) return all
    const key = JSON.stringify([req.constraints, req.requires])
    let t = classes.get(key)
    if (t !== undefined) return t
    const members = nodes.flatMap((n, i) => constraintFilter.passes(n, req) && capabilityFilter.passes(n, req) ? [i] : [])
    if (members.length === nodes.length) t = all
    else {
      const tree = new FreeTree(Int32Array.from(members))
      members.forEach((i, pos) => { memberOf[i].push([tree, pos]); tree.set(pos, nodes[i]) })
      t = tree
    }
    classes.set(key, t)
    return t
  }
  const stack = new Int32Array(128)
  const assignments: Array<string | null> = []
  for (const req of reqs) {
    const tree = treeFor(req)
    const max = tree.max
    const c = req.resources.cpu - 1e-6
    const m = req.resources.memoryMiB - 1e-6
    const k = req.resources.diskGiB - 1e-6
    let found = -1
    let sp = 0
    stack[sp++] = 1
    while (sp > 0 && found < 0) {
      const p = stack[--sp]
      if (!(max[4 * p] >= c && max[4 * p + 1] >= m && max[4 * p + 2] >= k && max[4 * p + 3] >= 1)) continue
      if (p >= tree.size) {
        const i = tree.members[p - tree.size]
        if (feasible(nodes[i], req)) found = i
        continue
      }
      stack[sp++] = 2 * p + 1 // right after left
      stack[sp++] = 2 * p
    }
    if (found < 0) { assignments.push(null); continue }
    reserve(nodes[found], req, 1)
    for (const [t, pos] of memberOf[found]) t.set(pos, nodes[found])
    assignments.push(nodes[found].id)
  }
  return { assignments, nodesUsed: nodes.filter((n) => n.vmCount > 0).length }
}
