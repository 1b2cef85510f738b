// npm run sim:scale -- [--hosts 3,20,100,1000] [--topology a,b,c,d] [--seed S] [--writes W]
//   [--batch B] [--interval MS] [--hop MS] [--jitter MS] [--fanout K] [--faults] [--loss P] [--json]
// Prints the estimate table (estimate.ts): per topology and host count, the leader's frames,
// bytes and CPU per committed write, the busiest other node's CPU, and how many ticks a committed
// entry takes to reach the learners (p50/p99); --json prints the same as JSON. Exit 1 when a
// relayed log broke the checker or did not converge.
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_COST } from './cost.ts'
import type { CostParams } from './cost.ts'
import { estimate, estimateTable } from './estimate.ts'
import type { RunOptions } from './estimate.ts'
import { TOPOLOGIES, topologyByName } from './topology.ts'
import type { Topology } from './topology.ts'

/** Bounds on what the command line may ask for: a run is held in memory, one node per host. */
export const SCALE_LIMITS = { maxHosts: 2_000, maxWrites: 20_000, maxBatch: 1_000, maxFanout: 64, maxMs: 1_000 } as const

export interface ScaleCli {
  topologies: Topology[]
  hosts: number[]
  run: RunOptions
  cost: CostParams
  json: boolean
}

const USAGE = 'usage: npm run sim:scale -- [--hosts 3,20,100,1000] [--topology a,b,c,d] [--seed S] [--writes W] [--batch B] [--interval MS] [--hop MS] [--jitter MS] [--fanout K] [--faults] [--loss P] [--msg-ms X] [--byte-ns Y] [--json]'

/** Parses the arguments; throws an Error naming the argument that is wrong. */
export function parseScaleArgs (argv: readonly string[]): ScaleCli {
  const o: ScaleCli = { topologies: [...TOPOLOGIES], hosts: [3, 20, 100, 1000], run: {}, cost: { ...DEFAULT_COST }, json: false }
  const value = (i: number): string => {
    const v = argv[i]
    if (v === undefined || v.startsWith('--')) throw new Error(`${argv[i - 1]} needs a value`)
    return v
  }
  const int = (i: number, lo: number, hi: number): number => {
    const v = value(i)
    if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) throw new Error(`${argv[i - 1]} must be an integer from ${lo} to ${hi}, got ${JSON.stringify(v)}`)
    return Number(v)
  }
  const num = (i: number, lo: number, hi: number): number => {
    const v = value(i)
    const x = Number(v)
    if (v.trim() === '' || !Number.isFinite(x) || x < lo || x > hi) throw new Error(`${argv[i - 1]} must be a number from ${lo} to ${hi}, got ${JSON.stringify(v)}`)
    return x
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    switch (a) {
      case '--hosts': {
        const v = value(++i)
        const xs = v.split(',').map((s) => s.trim())
        if (xs.length > 16 || xs.some((s) => !/^\d+$/.test(s) || Number(s) < 1 || Number(s) > SCALE_LIMITS.maxHosts)) {
          throw new Error(`--hosts must be up to 16 comma-separated counts from 1 to ${SCALE_LIMITS.maxHosts}, got ${JSON.stringify(v)}`)
        }
        o.hosts = [...new Set(xs.map(Number))]
        break
      }
      case '--topology': {
        const v = value(++i)
        const ts = v.split(',').map((s) => topologyByName(s.trim()))
        if (ts.some((x) => x === null)) throw new Error(`--topology must be a comma list of ${TOPOLOGIES.join(', ')} (or a, b, c, d), got ${JSON.stringify(v)}`)
        o.topologies = [...new Set(ts as Topology[])]
        break
      }
      case '--seed': o.run.seed = int(++i, 0, 2 ** 32 - 1); break
      case '--writes': o.run.writes = int(++i, 1, SCALE_LIMITS.maxWrites); break
      case '--batch': o.run.batch = int(++i, 1, SCALE_LIMITS.maxBatch); break
      case '--interval': o.run.intervalMs = int(++i, 1, SCALE_LIMITS.maxMs); break
      case '--hop': o.run.hopMs = int(++i, 1, SCALE_LIMITS.maxMs); break
      case '--jitter': o.run.jitterMs = int(++i, 0, SCALE_LIMITS.maxMs); break
      case '--fanout': o.run.fanout = int(++i, 1, SCALE_LIMITS.maxFanout); break
      case '--loss': o.run.loss = num(++i, 0, 0.5); break
      case '--faults': o.run.faults = true; break
      case '--msg-ms': o.cost.msgMs = num(++i, 0, 10); break
      case '--byte-ns': o.cost.byteMs = num(++i, 0, 1_000) / 1e6; break
      case '--json': o.json = true; break
      default: throw new Error(`unknown argument ${JSON.stringify(a)}`)
    }
  }
  return o
}

function main (): void {
  let o: ScaleCli
  try {
    o = parseScaleArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`sim:scale: ${(err as Error).message}\n${USAGE}\n`)
    process.exit(2)
  }
  const e = estimate(o.topologies, o.hosts, o.run, o.cost, (r) => { process.stderr.write(`sim:scale: (${r.letter}) ${r.topology} ${r.hosts} hosts done\n`) })
  if (o.json) process.stdout.write(JSON.stringify(e, null, 2) + '\n')
  else process.stdout.write(estimateTable(e).join('\n') + '\n')
  const bad = e.rows.filter((r) => r.violations.length > 0)
  for (const r of bad) for (const v of r.violations) process.stderr.write(`sim:scale: (${r.letter}) ${r.hosts} hosts: ${v.checker} at ${v.at} ms: ${v.message}\n`)
  process.exitCode = bad.length > 0 ? 1 : 0
}

// run as the script only (the tests import parseScaleArgs)
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) main()
