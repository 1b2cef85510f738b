// Placement invariants over every replica's committed state (placement/'s own
// checkPlacementInvariants): no host beyond capacity × overcommit or its VM
// limit, constraints and anti-affinity hold, no VM on a host that does not exist.
import { checkPlacementInvariants } from '../../placement/index.ts'
import type { Cluster } from '../cluster.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

export class PlacementInvariants extends BaseChecker {
  readonly name = 'placement'
  /** assignments seen in final states, for stats */
  assigned = 0

  onCheckpoint = (c: Cluster, now: number): void => {
    for (const r of c.replicas) {
      if (!r.up || r.sm === null) continue
      for (const msg of checkPlacementInvariants(r.sm.listNodes(), r.sm.listVms())) this.fail(now, `${r.id} at applied ${r.applied}: ${msg}`)
    }
  }

  finish = (v: FinalView): void => {
    this.onCheckpoint(v.cluster, v.now)
    const l = v.cluster.leader()
    if (l?.sm != null) this.assigned = l.sm.listVms().filter(vm => vm.assignedNode !== null).length
  }
}
