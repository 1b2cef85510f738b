// The simulator as a test: 200 seeds of the shipped node core (node/core/raft-node.ts over the
// real Raft core), state machine, placement, scheduler and rebalancer loops under faults with every checker clean; each deliberately broken
// variant caught within 200 seeds; one seed's trace identical on two runs.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { BUGS, DEFAULT_STEPS, runSeed } from '../../sim/run.ts'
import type { SimBug } from '../../sim/replica.ts'

const SEEDS = 200
const nodesFor = (seed: number): 3 | 5 => seed % 2 === 1 ? 3 : 5

test(`${SEEDS} seeds, 3 and 5 nodes, no violations`, async () => {
  const failing: string[] = []
  let ops = 0
  let marksDown = 0
  let haStarts = 0
  let preemptions = 0
  // rebalancing moves and runs by the rebalancer's mode (drawn per seed)
  const byMode = { skew: { runs: 0, moves: 0 }, join: { runs: 0, moves: 0 } }
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await runSeed({ seed, nodes: nodesFor(seed), steps: DEFAULT_STEPS, bug: null, trace: false })
    ops += r.stats.opsOk
    marksDown += r.stats.haMarksDown
    haStarts += r.stats.haStarts
    preemptions += r.stats.preemptions
    const m = byMode[r.stats.rebalanceMode as 'skew' | 'join']
    m.runs++
    m.moves += r.stats.rebalanceMoves
    if (r.violations.length > 0) failing.push(`seed ${seed}: ${r.violations[0].checker}: ${r.violations[0].message.slice(0, 300)}`)
  }
  assert.equal(failing, [])
  assert.ok(ops > SEEDS * 50, `the workload made progress (${ops} completed ops)`)
  // HA is in the model, not idle: guests start under leases and nodes get marked down
  assert.ok(haStarts > SEEDS && marksDown > SEEDS / 10, `HA exercised: ${haStarts} guest starts, ${marksDown} nodes marked down`)
  // the scheduler acts, not idles: the shipped loops preempt and move VMs live, in
  // skew mode more than once a run; in join mode only into a host set ready again after a drain
  // (whose evacuated VMs are cooling), so less often
  assert.ok(preemptions > SEEDS / 10 && byMode.skew.moves > byMode.skew.runs && byMode.join.moves > byMode.join.runs / 10, `scheduler exercised: ${preemptions} preemptions, rebalancing ${JSON.stringify(byMode)}`)
})

for (const bug of BUGS) {
  test(`bug ${bug} is caught within ${SEEDS} seeds`, async () => {
    let caught: number | null = null
    for (let seed = 1; seed <= SEEDS && caught === null; seed++) {
      const r = await runSeed({ seed, nodes: nodesFor(seed), steps: DEFAULT_STEPS, bug: bug as SimBug, trace: false })
      if (r.violations.length > 0) caught = seed
    }
    assert.ok(caught !== null, `${bug} not caught in ${SEEDS} seeds`)
  })
}

// Seeds that once broke the real core (found by 10 000-seed runs); each must stay clean, and
// each must still fail with the bug it found planted back, so the seed keeps testing something.
// checker null: the seed's trajectory changed (the probe->replicate recovery sends appends on
// heartbeat answers) so the planted bug no longer bites on it; it stays as a clean-run seed, and
// seed 26 (found by scanning 1..2000 with the bug planted) takes over its config-safety check.
// 3241 and 4899 went the same way when the simulator started running the shipped node core
// (node/core/raft-node.ts: send-first, deferred commit-only HardState, new crash points); 26 and
// 10 carry the config-safety check now. No seed in 1..2000 has the planted bug reach two leaders
// in a term any more (config-safety flags the wrong configuration first), so 3241's
// election-safety check has no successor. Seed 10 went the same way when the simulated clients'
// writes started going through the shipped forwarder (sim/replica.ts): 26 carried the check alone,
// until fresh replicas joined through the shipped membership rounds (node/membership.ts) instead of
// the nemesis's addLearner; seed 24 (the first in 1..300 whose run catches the bug that way) took over,
// and stays a clean-run seed since the replicas run every membership round (self-registration, the
// recovery vote, reaching members): seed 51, the first in 1..400 caught that way again, took over,
// and 58 after it once leaders held back commit-only MsgApps (node/core/raft-node.ts).
const REGRESSIONS: Array<{ seed: number, bug: SimBug, checker: string | null }> = [
  { seed: 3241, bug: 'conf-not-rolled-back', checker: null },
  { seed: 4899, bug: 'conf-not-rolled-back', checker: null },
  { seed: 10, bug: 'conf-not-rolled-back', checker: null },
  { seed: 5337, bug: 'conf-not-rolled-back', checker: null },
  { seed: 26, bug: 'conf-not-rolled-back', checker: null },
  { seed: 24, bug: 'conf-not-rolled-back', checker: null },
  { seed: 51, bug: 'conf-not-rolled-back', checker: null },
  { seed: 58, bug: 'conf-not-rolled-back', checker: 'config-safety' }
]
for (const { seed, bug, checker } of REGRESSIONS) {
  test(`regression seed ${seed}: clean${checker === null ? '' : `, and ${bug} planted back is caught by ${checker}`}`, async () => {
    // These seeds were found before joint changes, HA leases and the scheduler model existed:
    // replay their trajectories without them (joint changes and HA are covered by the seed sweeps and test/raft/testdata/joint-*.txt;
    // with HA's renewals in the log, seed 26's planted bug no longer bites).
    const clean = await runSeed({ seed, nodes: nodesFor(seed), steps: DEFAULT_STEPS, bug: null, trace: false, jointChanges: false, ha: false, sched: false })
    assert.equal(clean.violations.map(v => `${v.checker}: ${v.message}`), [])
    if (checker === null) return
    const broken = await runSeed({ seed, nodes: nodesFor(seed), steps: DEFAULT_STEPS, bug, trace: false, jointChanges: false, ha: false, sched: false })
    assert.ok(broken.violations.some(v => v.checker === checker), `seed ${seed} with ${bug}: ${JSON.stringify(broken.violations)}`)
  })
}

// Seeds the 100 000-seed run failed for reasons outside the core, each fixed where it was:
// 25107, a delayed vote elected term 22 after term 23 had committed, which Raft allows but the
// leader-completeness checker flagged (it now bounds each entry's commit term); 52256, a replica
// that crashed and restarted within one tick never ticked again (the shell's tick chain).
for (const seed of [25107, 52256]) {
  test(`regression seed ${seed} stays clean`, async () => {
    const r = await runSeed({ seed, nodes: nodesFor(seed), steps: DEFAULT_STEPS, bug: null, trace: false })
    assert.equal(r.violations.map(v => `${v.checker}: ${v.message}`), [])
  })
}

test('--seed 7 --trace prints the same bytes twice', () => {
  const run = (): string => {
    const p = spawnSync(process.execPath, ['--import', 'tsx', 'sim/cli.ts', '--seed', '7', '--trace'], { encoding: 'utf8' })
    assert.is(p.status, 0, p.stderr)
    return p.stdout
  }
  const a = run()
  const b = run()
  assert.ok(a.split('\n').length > 1000, 'the trace has the run in it')
  assert.ok(a.trimEnd().endsWith('sim: 1 seeds, 0 violations'))
  assert.is(a, b)
})

test.run()
