// The event queue: a binary heap ordered by (time, sequence number), so two
// events at the same virtual time always run in the order they were scheduled.
import { Clock } from './clock.ts'

interface Event {
  at: number
  seq: number
  run: () => void
}

export class EventQueue {
  readonly clock = new Clock()
  private heap: Event[] = []
  private seq = 0
  /** Events run so far (a cheap progress measure for stats). */
  executed = 0
  /** A runaway guard: a run that needs more events than this is stuck in a loop. */
  maxEvents = 200_000
  /** Set by an event that settled a promise (the shipped forwarder, node/core/forwarder.ts, is
   * async): runUntilSettled then lets the microtasks that follow run before the next event, so
   * their effects land at the same virtual time, in the same order, on every run. */
  promiseWork = false

  now (): number {
    return this.clock.now()
  }

  at (time: number, run: () => void): void {
    const t = Math.max(time, this.clock.now())
    this.push({ at: t, seq: this.seq++, run })
  }

  after (delay: number, run: () => void): void {
    this.at(this.clock.now() + Math.max(0, delay), run)
  }

  pending (): number {
    return this.heap.length
  }

  /** Run events in order until the queue is empty or the next one is later than `until`; time ends at `until`. */
  runUntil (until: number): void {
    while (this.runNext(until)) { /* one event per pass */ }
    if (until > this.clock.now()) this.clock.advanceTo(until)
  }

  /** runUntil, draining the microtask queue after every event that settled a promise. */
  async runUntilSettled (until: number): Promise<void> {
    while (this.runNext(until)) {
      while (this.promiseWork) {
        this.promiseWork = false
        // a macrotask boundary: every queued microtask (and those they queue) has run after it
        await new Promise<void>((resolve) => { setImmediate(resolve) })
      }
    }
    if (until > this.clock.now()) this.clock.advanceTo(until)
  }

  /** Runs the next event due by `until`, if any (false: none left by then). */
  private runNext (until: number): boolean {
    if (this.heap.length === 0 || this.heap[0].at > until) return false
    if (this.executed >= this.maxEvents) throw new Error(`more than ${this.maxEvents} events by ${this.clock.now()} ms: a run that does not settle`)
    const e = this.pop()
    this.clock.advanceTo(e.at)
    this.executed++
    e.run()
    return true
  }

  private less (x: Event, y: Event): boolean {
    return x.at < y.at || (x.at === y.at && x.seq < y.seq)
  }

  private push (e: Event): void {
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i], h[p])) break
      const t = h[i]; h[i] = h[p]; h[p] = t
      i = p
    }
  }

  private pop (): Event {
    const h = this.heap
    const top = h[0]
    const last = h.pop() as Event
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        const t = h[i]; h[i] = h[m]; h[m] = t
        i = m
      }
    }
    return top
  }
}
