// A seeded PRNG (sfc32, seeded through splitmix32) for the simulator. Each
// purpose (network, faults, workload, per-node election jitter) draws from its
// own stream derived from the seed and the stream's name, so an extra random
// call in one place does not shift every later decision elsewhere.

/** FNV-1a over the name: a stable 32-bit label for a stream. */
function hashName (name: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

/** splitmix32: turns any 32-bit value into a well-mixed one (used only for seeding). */
function splitmix32 (x: number): number {
  x = (x + 0x9e3779b9) >>> 0
  let z = x
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
  return (z ^ (z >>> 16)) >>> 0
}

export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number
  /** The 32-bit seed this stream started from (for deriving sub-streams). */
  readonly seed: number

  constructor (seed: number) {
    this.seed = seed >>> 0
    let s = this.seed
    s = splitmix32(s); this.a = s
    s = splitmix32(s); this.b = s
    s = splitmix32(s); this.c = s
    s = splitmix32(s); this.d = s
    // sfc32 wants a few rounds before its output is well mixed.
    for (let i = 0; i < 12; i++) this.next()
  }

  /** A new independent stream for `name`, derived from this stream's seed only (not its position). */
  fork (name: string): Prng {
    return new Prng(splitmix32(this.seed ^ hashName(name)) ^ hashName(name + '/'))
  }

  /** The next 32-bit unsigned integer (sfc32). */
  next (): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** Uniform in [0, 1). */
  float (): number {
    return this.next() / 4294967296
  }

  /** Uniform integer in [0, n). */
  int (n: number): number {
    if (n <= 0) throw new RangeError(`Prng.int(${n})`)
    return Math.floor(this.float() * n)
  }

  /** Uniform integer in [lo, hi]. */
  range (lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  chance (p: number): boolean {
    return p > 0 && this.float() < p
  }

  pick<T> (arr: readonly T[]): T {
    if (arr.length === 0) throw new RangeError('Prng.pick of an empty array')
    return arr[this.int(arr.length)]
  }

  /** A shuffled copy (Fisher–Yates). */
  shuffle<T> (arr: readonly T[]): T[] {
    const out = arr.slice()
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      const t = out[i]; out[i] = out[j]; out[j] = t
    }
    return out
  }
}
