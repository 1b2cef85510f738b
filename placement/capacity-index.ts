// An ordered index of the ready nodes for the fast path.
//
// Design: a treap (balanced search tree with deterministic priorities from a hash of the node's rank, no
// randomness) ordered by (fit score desc, node id asc), where the fit score is the strategy's fill-based
// component (binpack: fullest first; spread: emptiest first). Every subtree keeps the largest free cpu, memory,
// disk and VM slots among its nodes, so an in-order walk skips whole subtrees that cannot hold the request
// (nearly full nodes cost O(log n), not a scan). Because the walk visits nodes in decreasing fit score, and every
// other score component has a per-request upper bound, the walk can stop as soon as fit + bound cannot beat
// the best node found (branch and bound). The answer is therefore exactly the argmax over all nodes, with
// ties broken by the index order, the same answer a full scan gives (placer.explain checks that), and it
// depends only on the cluster state, so batch placement equals one-by-one placement.
// Nomad instead scores a bounded random sample (LimitIterator); we keep full determinism and exactness.
// The placer keeps one such index over all ready nodes, one per selective set of static filters (a rare
// constraint walks only its nodes) and one per label value used by affinity or spread (see placer.ts).

const NONE = -1

export class CapacityIndex {
  readonly size: number
  root = NONE
  readonly left: Int32Array
  readonly right: Int32Array
  readonly prio: Uint32Array
  /** fit score (order key, desc) and id rank (tie-break, asc) */
  readonly key: Float64Array
  readonly rank: Int32Array
  /** own free cpu, memory, disk, slots and subtree maxima */
  readonly free: Float64Array
  readonly max: Float64Array
  readonly present: Uint8Array
  // split results, kept here so split allocates nothing
  private sl = NONE
  private sr = NONE

  constructor (size: number) {
    this.size = size
    this.left = new Int32Array(size).fill(NONE)
    this.right = new Int32Array(size).fill(NONE)
    this.prio = new Uint32Array(size)
    this.key = new Float64Array(size)
    this.rank = new Int32Array(size)
    this.free = new Float64Array(size * 4)
    this.max = new Float64Array(size * 4)
    this.present = new Uint8Array(size)
  }

  /** Insert node i (not present) with its order key, rank and free resources. */
  insert (i: number, key: number, rank: number, cpu: number, mem: number, disk: number, slots: number): void {
    this.key[i] = key
    this.rank[i] = rank
    this.prio[i] = hash(rank)
    const f = this.free
    f[4 * i] = cpu; f[4 * i + 1] = mem; f[4 * i + 2] = disk; f[4 * i + 3] = slots
    this.left[i] = NONE
    this.right[i] = NONE
    this.pull(i)
    this.root = this.insertAt(this.root, i)
    this.present[i] = 1
  }

  remove (i: number): void {
    if (this.present[i] === 0) return
    this.root = this.removeAt(this.root, i)
    this.present[i] = 0
    this.left[i] = NONE
    this.right[i] = NONE
  }

  /** Does a sit above b in the heap order (the same rule merge uses)? */
  private above (a: number, b: number): boolean {
    return this.prio[a] > this.prio[b] || (this.prio[a] === this.prio[b] && this.rank[a] < this.rank[b])
  }

  // one pass down to where i belongs, then split only that subtree
  private insertAt (t: number, i: number): number {
    if (t === NONE) return i
    if (this.above(i, t)) {
      this.split(t, this.key[i], this.rank[i])
      this.left[i] = this.sl
      this.right[i] = this.sr
      this.pull(i)
      return i
    }
    if (this.before(i, this.key[t], this.rank[t])) this.left[t] = this.insertAt(this.left[t], i)
    else this.right[t] = this.insertAt(this.right[t], i)
    this.pull(t)
    return t
  }

  // one pass down to i, then merge its two children in its place
  private removeAt (t: number, i: number): number {
    if (t === NONE) return NONE
    if (t === i) return this.merge(this.left[i], this.right[i])
    if (this.before(i, this.key[t], this.rank[t])) this.left[t] = this.removeAt(this.left[t], i)
    else this.right[t] = this.removeAt(this.right[t], i)
    this.pull(t)
    return t
  }

  /** Does node a come before the position (key, rank)? */
  private before (a: number, key: number, rank: number): boolean {
    const k = this.key[a]
    return k > key || (k === key && this.rank[a] < rank)
  }

  private split (t: number, key: number, rank: number): void {
    if (t === NONE) { this.sl = NONE; this.sr = NONE; return }
    if (this.before(t, key, rank)) {
      this.split(this.right[t], key, rank)
      this.right[t] = this.sl
      this.pull(t)
      this.sl = t
    } else {
      this.split(this.left[t], key, rank)
      this.left[t] = this.sr
      this.pull(t)
      this.sr = t
    }
  }

  private merge (a: number, b: number): number {
    if (a === NONE) return b
    if (b === NONE) return a
    if (this.above(a, b)) {
      this.right[a] = this.merge(this.right[a], b)
      this.pull(a)
      return a
    }
    this.left[b] = this.merge(a, this.left[b])
    this.pull(b)
    return b
  }

  private pull (t: number): void {
    const f = this.free
    const m = this.max
    const l = this.left[t]
    const r = this.right[t]
    for (let d = 0; d < 4; d++) {
      let v = f[4 * t + d]
      if (l !== NONE && m[4 * l + d] > v) v = m[4 * l + d]
      if (r !== NONE && m[4 * r + d] > v) v = m[4 * r + d]
      m[4 * t + d] = v
    }
  }

  /** Could node t itself hold (cpu, mem, disk, one slot)? */
  ownMayFit (t: number, cpu: number, mem: number, disk: number): boolean {
    const f = this.free
    return f[4 * t] >= cpu && f[4 * t + 1] >= mem && f[4 * t + 2] >= disk && f[4 * t + 3] >= 1
  }

  /** Could some node of subtree t hold (cpu, mem, disk, one slot)? */
  subtreeMayFit (t: number, cpu: number, mem: number, disk: number): boolean {
    const m = this.max
    return m[4 * t] >= cpu && m[4 * t + 1] >= mem && m[4 * t + 2] >= disk && m[4 * t + 3] >= 1
  }
}

function hash (x: number): number {
  let h = Math.imul(x ^ 0x9e3779b9, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
