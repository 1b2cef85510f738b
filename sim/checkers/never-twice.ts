// A VM never runs on two hosts at once, judged on the simulated ground truth — the guests
// each host really runs, whatever its daemon, its replica or the cluster believe — including hosts
// whose daemon is crashed or paused while their guests run on. Shown to fail by --bug no-self-fence.
import { BaseChecker } from './checker.ts'

export class NeverTwice extends BaseChecker {
  readonly name = 'never-twice'
  /** the most hosts one VM ran on at one time (1 when all is well) */
  maxHosts = 0

  /** each host's guests, as `vmId@createdAt` (one VM, not one reused id) */
  observe (hosts: ReadonlyArray<{ id: string, guests: ReadonlySet<string> }>, now: number): void {
    const where = new Map<string, string[]>()
    for (const h of hosts) for (const g of h.guests) where.set(g, [...(where.get(g) ?? []), h.id])
    for (const [vm, on] of where) {
      this.maxHosts = Math.max(this.maxHosts, on.length)
      if (on.length > 1) this.fail(now, `VM ${vm} runs on ${on.join(' and ')} at once`)
    }
  }
}
