// The order the scheduler should hand pending VMs to batch placement: higher priority first, then larger first
// (decreasing sizes pack tighter, as in first-fit-decreasing), then VM id so the order is total.
import type { PlacementRequest } from './types.ts'

export function compareQueue (a: PlacementRequest, b: PlacementRequest): number {
  return (b.priority - a.priority) ||
    (b.resources.memoryMiB - a.resources.memoryMiB) ||
    (b.resources.cpu - a.resources.cpu) ||
    (b.resources.diskGiB - a.resources.diskGiB) ||
    (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0)
}

export function sortQueue (reqs: readonly PlacementRequest[]): PlacementRequest[] {
  return [...reqs].sort(compareQueue)
}
