// The leader's rebalancer (node/rebalancer.ts) over a real state machine, its proposals
// applied to it: in skew mode an unbalanced cluster gets live migrations (RebalanceVm → migration
// records) within the in-flight budget; in join mode (the default) only a node that joined is
// filled, woken by the join itself, also when it is heard of before its replica leads; apply
// refuses a move within the cooldown of any earlier move, live or cold, and off a node that is
// not ready; the settings come from the node's config (rebalance.mode, rebalance.hotPct).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { harness, registerNode, spec, errorKind } from '../storage/sm-fixtures.ts'
import { Rebalancer, rebalancePass, rebalancePlan, rebalancePlacementConfig, LEADER_REBALANCE_POLICY } from '../../node/rebalancer.ts'
import { resolveConfig } from '../../node/config.ts'
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

test('skew mode: a node joins a skewed cluster: the leader starts live migrations to it, at most maxConcurrent at once', async () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 6; i++) runningOn(h, `v${i}`, i < 5 ? 'a' : 'b')
  ok(h.run(registerNode('d', { cpu: 8 })))
  const sent: Command[] = []
  const deps = { sm: h.sm, load: { hints: () => new Map() }, isLeader: () => true, now: () => h.index() * 1000, log: silentLogger, propose: async (env: { cmd: Command }) => { sent.push(env.cmd); return h.run(env.cmd) }, mode: 'skew' as const }
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

test('join mode (the default): the node that joined is filled at once, woken by its registration; a replica that heard of it before leading fills it too', async () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 7; i++) runningOn(h, `v${i}`, i < 5 ? 'a' : i < 6 ? 'b' : 'c')
  ok(h.run(registerNode('d', { cpu: 8 })))
  const sent: Command[] = []
  let leading = false
  const r = new Rebalancer({ sm: h.sm, load: { hints: () => new Map() }, isLeader: () => leading, now: () => h.index() * 1000, log: silentLogger, propose: async (env) => { sent.push(env.cmd); return h.run(env.cmd) } }, 1e9, () => () => {})
  // a follower hears of the join (it applied the RegisterNode) and keeps it
  r.nodeReady('d')
  await r.tick()
  assert.equal(sent, [], 'a follower moves nothing')
  leading = true
  await r.tick()
  assert.is(sent.length, LEADER_REBALANCE_POLICY.maxConcurrent, 'the new leader fills d at once, within the budget')
  assert.ok(sent.every((c) => c.type === 'RebalanceVm' && c.target === 'd'), JSON.stringify(sent))
  assert.ok(h.sm.listVms().filter((v) => v.migration != null).every((v) => v.assignedNode === 'a'), 'from the fullest node')
  // an empty node nobody heard join is left alone, even with a leader looking
  const h2 = harness()
  for (const n of ['a', 'b', 'c']) ok(h2.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 6; i++) runningOn(h2, `v${i}`, i < 5 ? 'a' : 'b')
  const sent2: Command[] = []
  const quiet = new Rebalancer({ sm: h2.sm, load: { hints: () => new Map() }, isLeader: () => true, now: () => h2.index() * 1000, log: silentLogger, propose: async (env) => { sent2.push(env.cmd); return h2.run(env.cmd) } }, 1e9, () => () => {})
  await quiet.tick()
  assert.equal(sent2, [], 'c is empty but did not join now: join mode leaves it (skew mode would not)')
})

test('the cooldown counts cold moves too: a VM moved cold, or taken off its node, is not moved live again within it', () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  runningOn(h, 'v', 'a')
  ok(h.run({ type: 'StartMigration', vm: 'v', target: 'b', cold: true }))
  assert.is(h.sm.getVm('v')!.movedAt, h.index() * 1000, 'the cold move is recorded')
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v', node: 'a', generation: 1, status: { phase: 'stopped', reason: '', at: 1 }, released: h.sm.getVm('v')!.releasing!.since }] }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id: 'v', node: 'b', generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
  const r = h.run({ type: 'RebalanceVm', vm: 'v', target: 'c', reason: 'test' })
  assert.is(errorKind(r), 'Conflict')
  assert.match(r.ok ? '' : r.error.message, /last moved \d+ s ago: the rebalancer waits 30 min between moves of one VM/)
  // nor does the plan propose it (skew mode, the whole cluster on b)
  const plan = rebalancePlan(h.sm, new Map(), h.index() * 1000, { active: true, started: [], filling: [] })
  assert.not.ok(plan.moves.some((m) => m.vmId === 'v'), JSON.stringify(plan.moves))
  // a first placement is no move; an unassignment is
  runningOn(h, 'w', 'c')
  assert.is(h.sm.getVm('w')!.movedAt, undefined)
  ok(h.run({ type: 'AssignVm', id: 'w', node: null }))
  assert.is(h.sm.getVm('w')!.movedAt, h.index() * 1000)
})

test('the settings come from the node config: mode join by default, skew or off by BLIXARD_REBALANCE; hotPct by BLIXARD_REBALANCE_HOT_PCT, a bad value named', () => {
  const d = resolveConfig({})
  assert.equal(d.rebalance, { mode: 'join', hotPct: 80 })
  assert.equal(resolveConfig({ env: { BLIXARD_REBALANCE: 'skew', BLIXARD_REBALANCE_HOT_PCT: '100' } }).rebalance, { mode: 'skew', hotPct: 100 })
  assert.equal(resolveConfig({ file: { text: '[rebalance]\nmode = "off"\n', path: 'x.toml' } }).rebalance.mode, 'off')
  assert.equal(resolveConfig({ argv: ['--rebalance', 'skew'] }).rebalance.mode, 'skew')
  assert.throws(() => resolveConfig({ env: { BLIXARD_REBALANCE: 'on' } }), (e: Error) => e.message.startsWith('config rebalance.mode (env BLIXARD_REBALANCE)') && e.message.includes('on'))
  for (const bad of ['0', '101', '50%', '7.5', 'hot']) {
    assert.throws(() => resolveConfig({ env: { BLIXARD_REBALANCE_HOT_PCT: bad } }), (e: Error) => e.message.startsWith('config rebalance.hotPct (env BLIXARD_REBALANCE_HOT_PCT)'), bad)
  }
})

test('nodes that share one busy host all gossip a hot cpu: nothing moves at the default hotPct; hotPct 100 lets them take VMs', () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (let i = 0; i < 4; i++) runningOn(h, `v${i}`, 'a')
  const busy = new Map(['a', 'b', 'c'].map((n) => [n, { cpuPct: 100, memPct: 30, ageMs: 500 }]))
  const now = h.index() * 1000
  const hot = rebalancePlan(h.sm, busy, now, FRESH_MEMORY)
  assert.equal(hot.moves, [])
  assert.match(hot.why, /hot or full targets/)
  const config = rebalancePlacementConfig(resolveConfig({ env: { BLIXARD_REBALANCE_HOT_PCT: '100' } }).rebalance)
  assert.equal(config, { hotPct: 100 })
  const moves = rebalancePlan(h.sm, busy, now, FRESH_MEMORY, LEADER_REBALANCE_POLICY, config).moves
  assert.ok(moves.length > 0 && moves.every((m) => m.from === 'a' && m.to !== 'a'), JSON.stringify(moves))
})

test.run()
