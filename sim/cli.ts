// npm run sim -- --seeds N [--start S] [--nodes 3|5] [--steps K] [--bug NAME] [--seed S --trace]
// Runs seeds (on two worker processes when there are many), prints each failing
// seed with the command that replays it, and ends with exactly
// "sim: N seeds, V violations" (exit 1 when V > 0). Progress goes to stderr.
import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { BUGS, DEFAULT_STEPS, replayCommand, runSeed } from './run.ts'
import type { RunResult } from './run.ts'
import type { SimBug } from './replica.ts'

interface CliOptions {
  seeds: number
  start: number
  nodes: 3 | 5 | null
  steps: number
  bug: SimBug | null
  trace: boolean
  workers: number
}

function usage (msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run sim -- --seeds N [--start S] [--nodes 3|5] [--steps K] [--bug ${BUGS.join('|')}] [--seed S --trace]\n`)
  process.exit(2)
}

function parse (argv: string[]): CliOptions {
  const o: CliOptions = { seeds: 1, start: 1, nodes: null, steps: DEFAULT_STEPS, bug: null, trace: false, workers: 2 }
  const int = (i: number): number => {
    const v = argv[i]
    if (v === undefined || !/^\d+$/.test(v)) usage(`${argv[i - 1]} needs a non-negative integer`)
    return Number(v)
  }
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--seeds': o.seeds = int(++i); break
      case '--start': o.start = int(++i); break
      case '--seed': o.start = int(++i); o.seeds = 1; break
      case '--steps': o.steps = int(++i); break
      case '--workers': o.workers = Math.max(1, int(++i)); break
      case '--nodes': {
        const n = int(++i)
        if (n !== 3 && n !== 5) usage('--nodes must be 3 or 5')
        o.nodes = n
        break
      }
      case '--bug': {
        const b = argv[++i] as SimBug
        if (!BUGS.includes(b)) usage(`unknown bug ${String(b)}`)
        o.bug = b
        break
      }
      case '--trace': o.trace = true; break
      case '--help': case '-h':
        process.stdout.write(`usage: npm run sim -- --seeds N [--start S] [--nodes 3|5] [--steps K] [--bug NAME] [--seed S --trace]\nplanted bugs (--bug): ${BUGS.join(', ')}\n`)
        process.exit(0)
      default: usage(`unknown argument ${argv[i]}`)
    }
  }
  return o
}

/** 3 and 5 nodes alternate across seeds unless --nodes fixes it. */
export function nodesFor (seed: number, fixed: 3 | 5 | null): 3 | 5 {
  return fixed ?? (seed % 2 === 1 ? 3 : 5)
}

/** Run one seed, turning an exception (a crash of the code under test) into a violation. */
export async function runSafely (seed: number, o: Pick<CliOptions, 'nodes' | 'steps' | 'bug' | 'trace'>): Promise<RunResult> {
  const nodes = nodesFor(seed, o.nodes)
  try {
    return await runSeed({ seed, nodes, steps: o.steps, bug: o.bug, trace: o.trace })
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err))
    const where = (e.stack ?? '').split('\n').slice(1, 4).map(l => l.trim()).join(' < ')
    return {
      seed, nodes, steps: o.steps, bug: o.bug, trace: [],
      violations: [{ checker: 'exception', at: -1, message: `${e.name}: ${e.message} at ${where}` }],
      stats: { events: 0, messages: 0, ops: 0, opsOk: 0, opsUnknown: 0, maxTerm: 0, commit: 0, crashes: 0, partitions: 0, membership: 0, joint: 0, replicas: 0, inconclusive: 0, schedulerProposals: 0, haFences: 0, haMarksDown: 0, haPauses: 0, haStarts: 0, preemptions: 0, rebalanceMoves: 0, tenantOps: 0, rebalanceMode: 'none', drains: 0, undrains: 0, movesJudged: 0 }
    }
  }
}

function report (r: RunResult): void {
  if (r.violations.length === 0) return
  const lines = [`seed ${r.seed} (${r.nodes} nodes${r.bug !== null ? ', bug ' + r.bug : ''}): ${r.violations.length} violations`]
  for (const v of r.violations) lines.push(`  ${v.checker} at ${v.at} ms: ${v.message}`)
  lines.push(`  replay: ${replayCommand(r)}`)
  process.stdout.write(lines.join('\n') + '\n')
}

interface WorkerJob { seeds: number[], nodes: 3 | 5 | null, steps: number, bug: SimBug | null }

function workerMain (): void {
  process.on('message', (job: WorkerJob) => { void (async () => {
    for (const seed of job.seeds) {
      const r = await runSafely(seed, { nodes: job.nodes, steps: job.steps, bug: job.bug, trace: false })
      process.send?.(r)
    }
    // The parent disconnects once it has every result; then this process has nothing left and exits.
  })() })
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--worker') { workerMain(); return }
  const o = parse(argv)
  const seeds: number[] = []
  for (let s = o.start; s < o.start + o.seeds; s++) seeds.push(s)
  const t0 = Date.now()
  let done = 0
  let violations = 0
  // what the scheduler (preemption, rebalancing) did over all seeds (stderr, beside the progress)
  const sched = { preemptions: 0, rebalanceMoves: 0, skewRuns: 0, joinRuns: 0, drains: 0, undrains: 0, movesJudged: 0 }
  const tally = (r: RunResult): void => {
    sched.preemptions += r.stats.preemptions; sched.rebalanceMoves += r.stats.rebalanceMoves; sched.drains += r.stats.drains
    sched.undrains += r.stats.undrains; sched.movesJudged += r.stats.movesJudged
    if (r.stats.rebalanceMode === 'skew') sched.skewRuns++; else if (r.stats.rebalanceMode === 'join') sched.joinRuns++
  }
  const progress = (): void => {
    if (seeds.length >= 20 && (done % 50 === 0 || done === seeds.length)) {
      process.stderr.write(`sim: ${done}/${seeds.length} seeds, ${violations} violations, ${((Date.now() - t0) / 1000).toFixed(1)}s\n`)
    }
  }
  const workers = o.trace || seeds.length < 20 ? 1 : o.workers
  if (workers === 1) {
    for (const seed of seeds) {
      const r = await runSafely(seed, o)
      if (o.trace) process.stdout.write(r.trace.join('\n') + (r.trace.length > 0 ? '\n' : ''))
      report(r)
      tally(r)
      violations += r.violations.length
      done++
      progress()
    }
  } else {
    // Results arrive out of order from the workers; print them in seed order.
    const results = new Map<number, RunResult>()
    let nextToPrint = 0
    const children: ChildProcess[] = []
    const self = fileURLToPath(import.meta.url)
    await new Promise<void>((resolve, reject) => {
      let finished = 0
      for (let w = 0; w < workers; w++) {
        const mine = seeds.filter((_, i) => i % workers === w)
        const child = fork(self, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        children.push(child)
        let received = 0
        child.on('message', (r: RunResult) => {
          if (++received === mine.length) child.disconnect()
          results.set(r.seed, r)
          while (nextToPrint < seeds.length && results.has(seeds[nextToPrint])) {
            const rr = results.get(seeds[nextToPrint]) as RunResult
            results.delete(seeds[nextToPrint])
            report(rr)
            tally(rr)
            violations += rr.violations.length
            nextToPrint++
            done++
            progress()
          }
        })
        child.on('error', reject)
        child.on('exit', (code) => {
          if (code !== 0) { reject(new Error(`sim worker exited with ${String(code)}`)); return }
          if (++finished === workers) resolve()
        })
        child.send({ seeds: mine, nodes: o.nodes, steps: o.steps, bug: o.bug } satisfies WorkerJob)
      }
    })
    if (done !== seeds.length) throw new Error(`sim: only ${done} of ${seeds.length} seeds reported`)
  }
  process.stderr.write(`sim: scheduler: ${sched.preemptions} preemptions, ${sched.rebalanceMoves} rebalancing moves (${sched.skewRuns} skew-mode runs, ${sched.joinRuns} join-mode), ${sched.drains} drains and ${sched.undrains} undrains, ${sched.movesJudged} moved VMs checked against the hosts at the end\n`)
  process.stdout.write(`sim: ${seeds.length} seeds, ${violations} violations\n`)
  process.exitCode = violations > 0 ? 1 : 0
}

await main()
