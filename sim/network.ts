// The simulated network between replicas: every message gets a delay, may be
// lost or duplicated, and is reordered by those delays. Links can be blocked
// one way (asymmetric partition) or both ways; heal() reopens all of them.
// Every decision comes from the network's own PRNG stream.
import type { Prng } from './prng.ts'
import type { EventQueue } from './event-queue.ts'

export interface NetworkFaults {
  /** probability a message is dropped */
  loss: number
  /** probability a message is delivered twice */
  duplicate: number
  /** base delay range in ms */
  minDelay: number
  maxDelay: number
  /** probability of a long extra delay (reorders the message behind later ones) */
  slow: number
  slowDelay: number
}

export const CALM: NetworkFaults = { loss: 0, duplicate: 0, minDelay: 1, maxDelay: 4, slow: 0, slowDelay: 0 }

export interface NetworkStats {
  sent: number
  delivered: number
  dropped: number
  duplicated: number
}

export class Network<T> {
  faults: NetworkFaults = { ...CALM }
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0 }
  /** Blocked directed links, as "from>to". */
  private blocked = new Set<string>()
  /** Deliver each directed link's messages in the order sent, as one stream per peer pair does
   * (a message never overtakes an earlier one; delays still vary). Raft tolerates reordering, so
   * the Raft simulation leaves this off; sim/scale/ relays rely on their stream's order. */
  ordered = false
  /** when the last message on each directed link arrives (ordered only) */
  private readonly lastArrival = new Map<string, number>()

  constructor (
    private readonly sched: EventQueue,
    private readonly rng: Prng,
    /** returns false when nobody was there to receive it (node down) */
    private readonly deliver: (from: string, to: string, payload: T) => boolean
  ) {}

  /** `outcome`, if given, hears whether the (first copy of the) message arrived: the sender of a
   * snapshot needs that to report it. */
  send (from: string, to: string, payload: T, outcome?: (delivered: boolean) => void): void {
    this.stats.sent++
    if (!this.open(from, to) || this.rng.chance(this.faults.loss)) {
      this.stats.dropped++
      if (outcome !== undefined) this.sched.after(this.faults.maxDelay, () => outcome(false))
      return
    }
    const copies = this.rng.chance(this.faults.duplicate) ? 2 : 1
    if (copies === 2) this.stats.duplicated++
    for (let c = 0; c < copies; c++) {
      let delay = this.rng.range(this.faults.minDelay, this.faults.maxDelay)
      if (this.rng.chance(this.faults.slow)) delay += this.rng.range(1, Math.max(1, this.faults.slowDelay))
      if (this.ordered) {
        const link = from + '>' + to
        const at = Math.max(this.sched.now() + delay, this.lastArrival.get(link) ?? 0)
        this.lastArrival.set(link, at)
        delay = at - this.sched.now()
      }
      this.sched.after(delay, () => {
        // A partition that starts while a message is in flight cuts it too.
        if (!this.open(from, to)) {
          this.stats.dropped++
          if (c === 0 && outcome !== undefined) outcome(false)
          return
        }
        this.stats.delivered++
        const arrived = this.deliver(from, to, payload)
        if (c === 0 && outcome !== undefined) outcome(arrived)
      })
    }
  }

  open (from: string, to: string): boolean {
    return this.blocked.size === 0 || !this.blocked.has(from + '>' + to)
  }

  /** Block from→to only (to→from keeps working). */
  blockOneWay (from: string, to: string): void {
    this.blocked.add(from + '>' + to)
  }

  /** Cut every link between the two groups, both ways. */
  partition (a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue
        this.blocked.add(x + '>' + y)
        this.blocked.add(y + '>' + x)
      }
    }
  }

  isolate (node: string, others: readonly string[]): void {
    this.partition([node], others)
  }

  /** Reopen every link to and from `node` (other cuts stay). */
  rejoin (node: string): void {
    for (const k of [...this.blocked]) {
      const [from, to] = k.split('>')
      if (from === node || to === node) this.blocked.delete(k)
    }
  }

  heal (): void {
    this.blocked.clear()
  }

  partitioned (): boolean {
    return this.blocked.size > 0
  }

  /** The blocked links, sorted (for traces). */
  describe (): string {
    return [...this.blocked].sort().join(',')
  }
}
