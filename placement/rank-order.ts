// The ranking order the selector (placer.ts) picks by: highest total score wins; ties go to the higher fit score, then to the smaller node
// id (nodes are indexed in id order, so a smaller index is a smaller id). This is exactly the order the
// capacity index walks in, which is what lets the fast path stop early and still agree with a full scan.

export function better (total: number, fit: number, idx: number, bestTotal: number, bestFit: number, bestIdx: number): boolean {
  if (total !== bestTotal) return total > bestTotal
  if (fit !== bestFit) return fit > bestFit
  return idx < bestIdx
}
