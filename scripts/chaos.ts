// npm run chaos -- [--minutes N] [--nodes 3|5] [--seed S] [--clients C] [--json]
// The long Jepsen-style run (test/chaos/jepsen.ts): prints the nemesis's actions as they happen,
// then the figures and the verdict; exits 1 on any violation.
import { runChaos } from '../test/chaos/jepsen.ts'

const args = process.argv.slice(2)
const USAGE = 'usage: npm run chaos -- [--minutes N] [--nodes 3|5] [--seed S] [--clients C] [--json]'
if (args.includes('--help') || args.includes('-h')) { console.log(USAGE); process.exit(0) }
// a mistyped flag must not start a 10-minute run with defaults
const VALUED = ['--minutes', '--nodes', '--seed', '--clients']
for (let i = 0; i < args.length; i++) {
  if (VALUED.includes(args[i])) { i++; continue }
  if (args[i] !== '--json') { console.error(`unknown argument ${args[i]}\n${USAGE}`); process.exit(2) }
}
const val = (name: string, dflt: number): number => {
  const i = args.indexOf(name)
  if (i < 0) return dflt
  const v = Number(args[i + 1])
  if (!Number.isFinite(v) || v <= 0) { console.error(`${name} needs a positive number`); process.exit(2) }
  return v
}
const json = args.includes('--json')
const nodes = val('--nodes', 3)
if (nodes !== 3 && nodes !== 5) { console.error('--nodes must be 3 or 5'); process.exit(2) }
const r = await runChaos({
  nodes, workloadMs: Math.round(val('--minutes', 10) * 60_000), clients: val('--clients', 8), registers: 6, seed: val('--seed', Date.now() % 100000),
  log: (l) => { if (!json) console.log(l) }
})
const bad = r.nonLinearizable.length + r.staleNotFound.length + r.deadNodes.length + r.finalReadsMissing
if (json) console.log(JSON.stringify({ ...r, staleNotFound: r.staleNotFound.length, violations: bad }))
else {
  console.log(`chaos: ${r.ops} ops, ${r.ok} ok, ${r.unknown} writes with unknown outcome, faults ${JSON.stringify(r.faults)}, ${(r.elapsedMs / 1000).toFixed(0)} s`)
  console.log(`chaos: non-linearizable registers: ${r.nonLinearizable.length ? r.nonLinearizable.join(', ') : 'none'}; still not linearizable with NotFound answers ignored: ${r.otherAnomalies.length ? r.otherAnomalies.join(', ') : 'none'}; inconclusive: ${r.inconclusive.length}`)
  console.log(`chaos: NotFound after an acknowledged create: ${r.staleNotFound.length}; dead nodes: ${r.deadNodes.length ? r.deadNodes.join(',') : 'none'}; final reads missing: ${r.finalReadsMissing}`)
  console.log(`chaos: ${bad === 0 ? 'PASS' : 'FAIL'}`)
}
process.exit(bad === 0 ? 0 : 1)
