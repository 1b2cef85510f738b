// npm run model-check -- [--depth N] [--bug NAME] [--json] [budgets...]
// A bounded exhaustive model check of the Raft core: breadth-first over every
// interleaving of message delivery, drop, duplication, crash/restart, election
// and heartbeat timeouts, client writes, a membership change and ReadIndex
// reads, for 3 replicas running the real RawNode over the simulator's
// MemoryLogStore, with the simulator's invariants checked in every state.
// Ends with "model-check: ... V violations" (exit 1 when V > 0).
import { fileURLToPath } from 'node:url'
import { BUGS } from './run.ts'
import type { SimBug } from './replica.ts'
import { explore } from './model/explore.ts'
import type { ExploreResult } from './model/explore.ts'
import type { Budgets } from './model/actions.ts'
import type { ModelConfig } from './model/world.ts'

/** Default depth: with the default budgets the clean core explores 2.6 M states (814 k distinct)
 * to this depth in about 3.5 minutes on the 2-core machine; one level more is about 7 times that. */
export const DEFAULT_DEPTH = 7
export const MODEL_IDS = ['n1', 'n2', 'n3'] as const

/** Pipelined MsgApps per follower: more than a short path can fill. */
const MODEL_MAX_INFLIGHT = 4

export const DEFAULT_BUDGETS: Budgets = { writes: 1, reads: 1, confs: 1, crashes: 1, dups: 1, drop: true, crashAfterSend: true, timeouts: null, heartbeats: null }

export interface ModelCheckOptions {
  depth: number
  bug: SimBug | null
  json: boolean
  budgets: Budgets
  preVote: boolean
  checkQuorum: boolean
  maxSizePerMsg: number
  fifo: boolean
  maxViolations: number
  maxStates: number
  quiet: boolean
}

export function defaultOptions (): ModelCheckOptions {
  return { depth: DEFAULT_DEPTH, bug: null, json: false, budgets: { ...DEFAULT_BUDGETS }, preVote: false, checkQuorum: false, maxSizePerMsg: 1, fifo: false, maxViolations: 1, maxStates: 0, quiet: false }
}

export function runModelCheck (o: ModelCheckOptions): ExploreResult {
  const config: ModelConfig = {
    ids: MODEL_IDS,
    bugs: new Set(o.bug === null ? [] : [o.bug]),
    preVote: o.preVote,
    checkQuorum: o.checkQuorum,
    maxSizePerMsg: o.maxSizePerMsg,
    maxInflightMsgs: MODEL_MAX_INFLIGHT,
    fifo: o.fifo
  }
  return explore({
    depth: o.depth,
    budgets: o.budgets,
    config,
    maxViolations: o.maxViolations,
    maxStates: o.maxStates,
    progress: o.quiet ? null : (line) => process.stderr.write(`model-check: ${line}\n`)
  })
}

const USAGE = `usage: npm run model-check -- [--depth N] [--bug ${BUGS.join('|')}] [--json]
  [--writes N] [--reads N] [--confs N] [--joints N] [--crashes N] [--dups N] [--timeouts N] [--heartbeats N] [--no-drop] [--no-crash-after-send]
  [--pre-vote] [--check-quorum] [--fifo] [--max-size-per-msg B] [--max-violations N] [--max-states N] [--quiet]`

function usage (msg: string): never {
  process.stderr.write(`${msg}\n${USAGE}\n`)
  process.exit(2)
}

export function parseArgs (argv: readonly string[]): ModelCheckOptions {
  const o = defaultOptions()
  const int = (i: number): number => {
    const v = argv[i]
    if (v === undefined || !/^\d+$/.test(v)) usage(`${argv[i - 1]} needs a non-negative integer, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`)
    return Number(v)
  }
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--depth': o.depth = int(++i); break
      case '--bug': {
        const b = argv[++i] as SimBug
        if (!BUGS.includes(b)) usage(`unknown bug ${JSON.stringify(b ?? '')}`)
        o.bug = b
        break
      }
      case '--json': o.json = true; break
      case '--writes': o.budgets.writes = int(++i); break
      case '--reads': o.budgets.reads = int(++i); break
      case '--confs': o.budgets.confs = int(++i); break
      case '--joints': o.budgets.joints = int(++i); break
      case '--crashes': o.budgets.crashes = int(++i); break
      case '--dups': o.budgets.dups = int(++i); break
      case '--timeouts': o.budgets.timeouts = int(++i); break
      case '--heartbeats': o.budgets.heartbeats = int(++i); break
      case '--no-drop': o.budgets.drop = false; break
      case '--no-crash-after-send': o.budgets.crashAfterSend = false; break
      case '--pre-vote': o.preVote = true; break
      case '--check-quorum': o.checkQuorum = true; break
      case '--fifo': o.fifo = true; break
      case '--max-size-per-msg': o.maxSizePerMsg = int(++i); break
      case '--max-violations': o.maxViolations = Math.max(1, int(++i)); break
      case '--max-states': o.maxStates = int(++i); break
      case '--quiet': o.quiet = true; break
      default: usage(`unknown argument ${JSON.stringify(argv[i])}`)
    }
  }
  return o
}

function main (): void {
  const o = parseArgs(process.argv.slice(2))
  const r = runModelCheck(o)
  if (o.json) {
    process.stdout.write(JSON.stringify({
      bug: o.bug,
      depthBound: o.depth,
      budgets: o.budgets,
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      fifo: o.fifo,
      maxSizePerMsg: o.maxSizePerMsg,
      ...r
    }) + '\n')
  } else {
    const lines = [
      `bug: ${o.bug ?? 'none'}, depth bound ${o.depth}, budgets ${JSON.stringify(o.budgets)}, preVote ${o.preVote}, checkQuorum ${o.checkQuorum}, maxSizePerMsg ${o.maxSizePerMsg}, ${o.fifo ? 'fifo links' : 'unordered network'}`,
      `states explored: ${r.explored} (successor states generated, repeats included)`,
      `distinct states: ${r.distinct}`,
      `depth reached: ${r.depth}${r.exhausted ? ' (state space exhausted)' : ''}`,
      `states per level: ${r.levels.join(' ')}`,
      `transitions/s: ${r.transitionsPerSec}`,
      `elapsed: ${(r.elapsedMs / 1000).toFixed(1)} s`
    ]
    if (r.stopped !== null) lines.push(`stopped early: ${r.stopped}`)
    r.violations.forEach((v, k) => {
      lines.push(`violation ${k + 1}:`)
      for (const m of v.violations) lines.push(`  ${m}`)
      lines.push(`  reproduced by (${v.path.length} steps from the initial state, all 3 nodes followers at term 0):`)
      v.path.forEach((s, j) => lines.push(`    ${j + 1}. ${s}`))
    })
    lines.push(`model-check: ${r.explored} states explored, ${r.distinct} distinct, depth ${r.depth}, ${r.violations.length} violations`)
    process.stdout.write(lines.join('\n') + '\n')
  }
  process.exitCode = r.violations.length > 0 ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
