// First-fit-decreasing, the packing baseline the benchmark compares bin-pack against: each VM (in queue
// order, largest first) goes to the first node in id order that passes every filter. A segment tree over id
// order keeps the largest free cpu, memory, disk and slots per range so full ranges are skipped.
import type { PlacementCluster, PlacementRequest } from './types.ts'
import { feasible } from './filters.ts'
import { reserve } from './from-model.ts'
import { cloneNode } from './placer.ts'

export interface FfdResult {
  /** node id per request, null when nothing fits */
  assignments: Array<string | null>
  nodesUsed: number
}

export function firstFitDecreasing (cluster: PlacementCluster, reqs: readonly PlacementRequest[]): FfdResult {
  const nodes = cluster.nodes.map(cloneNode).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  let size = 1
  while (size < nodes.length) size *= 2
  const max = new Float64Array(2 * size * 4).fill(-Infinity)
  const setLeaf = (i: number): void => {
    const n = nodes[i]
    let p = size + i
    const ready = n.state === 'ready'
    max[4 * p] = ready ? n.capacity.cpu * n.overcommit.cpu - n.reserved.cpu : -Infinity
    max[4 * p + 1] = ready ? n.capacity.memoryMiB * n.overcommit.memory - n.reserved.memoryMiB : -Infinity
    max[4 * p + 2] = ready ? n.capacity.diskGiB * n.overcommit.disk - n.reserved.diskGiB : -Infinity
    max[4 * p + 3] = ready ? (n.maxVms === null ? Infinity : n.maxVms - n.vmCount) : -Infinity
    for (p >>= 1; p >= 1; p >>= 1) {
      for (let d = 0; d < 4; d++) max[4 * p + d] = Math.max(max[8 * p + d], max[8 * p + 4 + d])
    }
  }
  nodes.forEach((_, i) => setLeaf(i))
  const stack = new Int32Array(128)
  const assignments: Array<string | null> = []
  for (const req of reqs) {
    const c = req.resources.cpu - 1e-6
    const m = req.resources.memoryMiB - 1e-6
    const k = req.resources.diskGiB - 1e-6
    let found = -1
    let sp = 0
    stack[sp++] = 1
    while (sp > 0 && found < 0) {
      const p = stack[--sp]
      if (!(max[4 * p] >= c && max[4 * p + 1] >= m && max[4 * p + 2] >= k && max[4 * p + 3] >= 1)) continue
      if (p >= size) {
        if (feasible(nodes[p - size], req)) found = p - size
        continue
      }
      stack[sp++] = 2 * p + 1 // right after left
      stack[sp++] = 2 * p
    }
    if (found < 0) { assignments.push(null); continue }
    reserve(nodes[found], req, 1)
    setLeaf(found)
    assignments.push(nodes[found].id)
  }
  return { assignments, nodesUsed: nodes.filter((n) => n.vmCount > 0).length }
}
