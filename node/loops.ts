// The daemon's periodic loops: each runs at most once at a time (a slow round is skipped, not
// stacked), a failed round is logged and the next one runs, and all stop together.
import type { Logger } from './log.ts'

export class Loops {
  private readonly timers: NodeJS.Timeout[] = []
  private stopped = false

  constructor (private readonly log: Logger) {}

  every (ms: number, fn: () => Promise<void>): void {
    let busy = false
    const t = setInterval(() => {
      if (busy || this.stopped) return
      busy = true
      fn().catch((err) => { this.log.debug('loop failed', { err }) }).finally(() => { busy = false })
    }, ms)
    this.timers.push(t)
  }

  stop (): void {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
  }
}
