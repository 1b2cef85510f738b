// Gossip load reports on `/blixard/load/1`: soft state, one per node per second. They are hints
// for placement and liveness, never authoritative, so a bad one is dropped and nothing waits on it.
import { int, num, obj, str } from './validate.ts'
import { MAX_NODE_ID_LENGTH } from './limits.ts'

export const LOAD_TOPIC = '/blixard/load/1'

export interface LoadReport {
  /** the publisher's peer id; must equal the gossip message's signer */
  node: string
  cpuPct: number
  memPct: number
  diskPct: number
  /** VMs running on the node */
  vmCount: number
  /** the node's applied Raft index: how far behind it is */
  appliedIndex: number
  /** publisher's clock (ms since epoch) */
  at: number
  /** increases by one per report of one process */
  seq: number
}

const FIELDS = ['node', 'cpuPct', 'memPct', 'diskPct', 'vmCount', 'appliedIndex', 'at', 'seq'] as const

/** Checks a decoded report; throws BlixardError('BadMessage') naming the field. */
export function validateLoadReport (x: unknown): LoadReport {
  const o = obj(x, 'load', FIELDS, FIELDS)
  return {
    node: str(o.node, 'load.node', MAX_NODE_ID_LENGTH, 1),
    cpuPct: num(o.cpuPct, 'load.cpuPct', 0, 100),
    memPct: num(o.memPct, 'load.memPct', 0, 100),
    diskPct: num(o.diskPct, 'load.diskPct', 0, 100),
    vmCount: int(o.vmCount, 'load.vmCount', 0, 1_000_000),
    appliedIndex: int(o.appliedIndex, 'load.appliedIndex'),
    at: int(o.at, 'load.at'),
    seq: int(o.seq, 'load.seq')
  }
}

/** True when `r` should replace `old` as the node's freshest report. A restarted publisher starts
 * its seq again, so a later `at` also wins. */
export function isNewer (r: LoadReport, old: LoadReport): boolean {
  return r.at > old.at || (r.at === old.at && r.seq > old.seq)
}
