// The leader's rebalancer (node/rebalancer.ts) over a real state machine, its proposals
// applied to it: a node joins an unbalanced cluster and receives live migrations (RebalanceVm →
// migration records), within the in-flight budget; apply refuses a move within the cooldown and
// off a node that is not ready.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { harness, registerNode, spec, errorKind } from '../storage/sm-fixtures.ts'
import { rebalancePass, rebalancePlan, rebalanceConfigFromEnv, LEADER_REBALANCE_POLICY } from '../../node/rebalancer.ts'
import { FRESH_MEMORY } from '../../placement/plans/rebalance-policy.ts'
import { REBALANCE_COOLDOWN_MS } from '../../storage/apply-sched.ts'
import { silentLogger } from '../../node/log.ts'

type H = ReturnType<typeof harness>
function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }

function runningOn (h: H, id: string, node: string): void {
  ok(h.run({ type: 'CreateVm', id, spec: spec(id, { vcpus: 1, memoryMiB: 512 }) }))
  ok(h.run({ type: 'AssignVm', id, node }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id, node, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
}

test('a node joins a skewed cluster: the leader starts live migrations to it, at most maxConcurrent at once', async () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 6; i++) runningOn(h, `v${i}`, i < 5 ? 'a' : 'b')
  ok(h.run(registerNode('d', { cpu: 8 })))
  const sent: Command[] = []
  const deps = { sm: h.sm, load: { hints: () => new Map() }, isLeader: () => true, now: () => h.index() * 1000, log: silentLogger, propose: async (env: { cmd: Command }) => { sent.push(env.cmd); return h.run(env.cmd) } }
  const dry = rebalancePlan(h.sm, new Map(), h.index() * 1000, FRESH_MEMORY)
  assert.ok(dry.moves.length > 0 && dry.after < dry.before, dry.why)
  assert.equal(h.sm.listVms().filter((v) => v.migration != null), [], 'a dry run changes nothing')
  const { step, started } = await rebalancePass(deps, FRESH_MEMORY)
  assert.is(started, LEADER_REBALANCE_POLICY.maxConcurrent)
  assert.ok(sent.every((c) => c.type === 'RebalanceVm'))
  const moving = h.sm.listVms().filter((v) => v.migration != null)
  assert.is(moving.length, LEADER_REBALANCE_POLICY.maxConcurrent)
  assert.ok(moving.every((v) => v.migration?.source === 'a' && v.migration.phase === 'preparing' && v.assignedNode === 'a'), 'live: the VM stays on its source until the switchover')
  // the budget is spent while they move: the next pass proposes nothing
  sent.length = 0
  const again = await rebalancePass(deps, step.memory)
  assert.equal(sent, [])
  assert.match(again.step.why, /moves in flight/)
})

test('apply refuses a rebalancing move within the cooldown of the VM\'s last move, and off a node that is not ready', () => {
  const h = harness()
  for (const n of ['a', 'b']) ok(h.run(registerNode(n, { cpu: 8 })))
  runningOn(h, 'v', 'a')
  ok(h.run({ type: 'RebalanceVm', vm: 'v', target: 'b', reason: 'test' }))
  const m = h.sm.getVm('v')!.migration!
  ok(h.run({ type: 'CancelMigration', vm: 'v' }))
  const r = h.run({ type: 'RebalanceVm', vm: 'v', target: 'b', reason: 'again' })
  assert.is(errorKind(r), 'Conflict')
  assert.match(r.ok ? '' : r.error.message, new RegExp(`the rebalancer waits ${REBALANCE_COOLDOWN_MS / 60_000} min between moves of one VM`))
  assert.ok(m.started > 0)
  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'draining', onto: ['b'] }))
  const d = h.run({ type: 'RebalanceVm', vm: 'v', target: 'b', reason: 'x' })
  assert.match(d.ok ? '' : d.error.message, /not on a ready node/)
})

test('nodes that share one busy host all gossip a hot cpu: nothing moves at the default hotPct; BLIXARD_REBALANCE_HOT_PCT=100 lets them take VMs, and a bad value is named', () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 4; i++) runningOn(h, `v${i}`, 'a')
  const busy = new Map(['a', 'b', 'c'].map((n) => [n, { cpuPct: 100, memPct: 30, ageMs: 500 }]))
  const now = h.index() * 1000
  const hot = rebalancePlan(h.sm, busy, now, FRESH_MEMORY)
  assert.equal(hot.moves, [])
  assert.match(hot.why, /hot or full targets/)
  const config = rebalanceConfigFromEnv({ BLIXARD_REBALANCE_HOT_PCT: '100' })
  assert.equal(config, { hotPct: 100 })
  const moves = rebalancePlan(h.sm, busy, now, FRESH_MEMORY, LEADER_REBALANCE_POLICY, config).moves
  assert.ok(moves.length > 0 && moves.every((m) => m.from === 'a' && m.to !== 'a'), JSON.stringify(moves))
  assert.equal(rebalanceConfigFromEnv({}), {})
  for (const bad of ['0', '101', '50%', '7.5', '-1', 'hot']) {
    assert.throws(() => rebalanceConfigFromEnv({ BLIXARD_REBALANCE_HOT_PCT: bad }), (e: Error) => e.message.includes(`BLIXARD_REBALANCE_HOT_PCT must be a whole percent from 1 to 100, got "${bad}"`))
  }
})

test.run()
