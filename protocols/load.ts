// Gossip load reports on `/blixard/load/1`: soft state, one per node per second. They are hints
// for placement and liveness, never authoritative, so a bad one is dropped and nothing waits on it.
import { compile, s, type Infer } from './schema.ts'
import { MAX_NODE_ID_LENGTH } from './limits.ts'
import { MAX_WARM_POOL_SIZE, MAX_WARM_POOLS } from './pools.ts'

export const LOAD_TOPIC = '/blixard/load/1'

const pct = (): ReturnType<typeof s.num> => s.num(0, 100, 'BadMessage')
const count = (max = Number.MAX_SAFE_INTEGER): ReturnType<typeof s.int> => s.int(0, max, 'BadMessage')

/** One warm pool's guests on the publisher (protocols/pools.ts), counts capped at the pool size
 * limit: the scheduler prefers a node with a paused one for a VM the pool serves; the room they
 * all hold is reclaimable (the host stops them for a VM placed there). */
const WARM_COUNT = s.obj({
  pool: s.str(63, { min: 1 }),
  /** booting, running or paused */
  guests: count(MAX_WARM_POOL_SIZE),
  /** booted and paused: what a create is handed */
  paused: count(MAX_WARM_POOL_SIZE)
})

/** What a node publishes each second; declared here, its type derived (wire dialect: unknown
 * fields refused, every field but `warm` required). */
const LOAD_REPORT = s.obj({
  /** the publisher's peer id; must equal the gossip message's signer */
  node: s.str(MAX_NODE_ID_LENGTH, { min: 1 }),
  cpuPct: pct(),
  memPct: pct(),
  diskPct: pct(),
  /** VMs running on the node */
  vmCount: count(1_000_000),
  /** the node's applied Raft index: how far behind it is */
  appliedIndex: count(),
  /** publisher's clock (ms since epoch) */
  at: count(),
  /** increases by one per report of one process */
  seq: count()
}, {
  /** per warm pool with guests here; left out when there are none, so a host without pools
   * publishes what a node from before warm pools reads */
  warm: s.list(MAX_WARM_POOLS, WARM_COUNT)
})
export type LoadReport = Infer<typeof LOAD_REPORT>

const checkLoadReport = compile(LOAD_REPORT, 'load', 'load.', 'wire')

/** Checks a decoded report; throws BlixardError('BadMessage') naming the field. */
export function validateLoadReport (x: unknown): LoadReport {
  return checkLoadReport(x)
}

/** True when `r` should replace `old` as the node's freshest report. A restarted publisher starts
 * its seq again, so a later `at` also wins. */
export function isNewer (r: LoadReport, old: LoadReport): boolean {
  return r.at > old.at || (r.at === old.at && r.seq > old.seq)
}
