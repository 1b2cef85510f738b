// Draining a node moves its running VMs live (node/scheduler.ts `evacuation`, EvacuateVm in
// storage/apply-migration.ts): the leader's scheduler pass over a real state machine, its proposals
// applied to it. Running VMs go live (at most MAX_LIVE_EVACUATIONS_PER_NODE at once), the rest cold,
// each with its reason; a VM whose live move from here just failed goes cold.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { harness, registerNode, spec, errorKind } from '../storage/sm-fixtures.ts'
import { MAX_LIVE_EVACUATIONS_PER_NODE, schedulePass } from '../../node/scheduler.ts'
import { silentLogger } from '../../node/log.ts'

type H = ReturnType<typeof harness>

function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }

function runningOn (h: H, id: string, node: string): void {
  ok(h.run({ type: 'CreateVm', id, spec: spec(id) }))
  ok(h.run({ type: 'AssignVm', id, node }))
  ok(h.run({ type: 'ReportVmStatus', reports: [{ id, node, generation: 1, status: { phase: 'running', reason: '', at: 1 } }] }))
}

/** one scheduler pass as the leader at `now`; its proposals apply to `h` */
async function pass (h: H, now: number): Promise<Array<{ cmd: Command, ok: boolean }>> {
  const out: Array<{ cmd: Command, ok: boolean }> = []
  await schedulePass({ sm: h.sm, load: { hints: () => new Map() }, isLeader: () => true, now: () => now, log: silentLogger, propose: async (env) => { const r = h.run(env.cmd); out.push({ cmd: env.cmd, ok: r.ok }); return r } })
  return out
}

test('a draining node: running VMs leave live, MAX_LIVE_EVACUATIONS_PER_NODE at a time; a stopped one and one whose live move failed leave cold, with reasons', async () => {
  const h = harness()
  for (const n of ['a', 'b', 'c']) ok(h.run(registerNode(n, { cpu: 8 })))
  for (const id of ['v1', 'v2', 'v3']) runningOn(h, id, 'a')
  ok(h.run({ type: 'CreateVm', id: 'idle', spec: spec('idle'), desired: 'stopped' }))
  ok(h.run({ type: 'AssignVm', id: 'idle', node: 'a' }))
  runningOn(h, 'flaky', 'a')
  ok(h.run({ type: 'StartMigration', vm: 'flaky', target: 'b' }))
  const started = h.sm.getVm('flaky')!.migration!.started
  ok(h.run({ type: 'ReportMigration', vm: 'flaky', node: 'b', started, event: 'failed', reason: 'no tiny guest' }))
  const now = h.index() * 1000

  // not yet draining: the scheduler moves nothing, and may not start a live move of its own
  assert.equal(await pass(h, now), [])
  assert.is(errorKind(h.run({ type: 'EvacuateVm', vm: 'v1', target: 'b' })), 'Conflict')

  ok(h.run({ type: 'UpdateNode', id: 'a', state: 'draining', onto: ['b', 'c'] }))
  const first = await pass(h, now)
  const live = first.filter((p) => p.cmd.type === 'EvacuateVm')
  const cold = first.filter((p) => p.cmd.type === 'AssignVm')
  assert.is(live.length, MAX_LIVE_EVACUATIONS_PER_NODE)
  assert.ok(live.every((p) => p.ok), 'the live moves applied')
  assert.equal(cold.map((p) => p.cmd.type === 'AssignVm' ? p.cmd.id : '').sort(), ['flaky', 'idle'])
  const reasons = Object.fromEntries(cold.map((p) => p.cmd.type === 'AssignVm' ? [p.cmd.id, p.cmd.reason] : []))
  assert.match(reasons.idle!, /evacuated from draining node-a \(not running: nothing to move live\)/)
  assert.match(reasons.flaky!, /its live migration failed: target failed: no tiny guest/)
  const movingLive = live.map((p) => p.cmd.type === 'EvacuateVm' ? p.cmd.vm : '')
  for (const id of movingLive) {
    const v = h.sm.getVm(id)!
    assert.equal([v.migration?.phase, v.migration?.source, v.assignedNode], ['preparing', 'a', 'a'], `${id} stays on a until its switchover`)
  }

  // the next pass leaves the moving ones alone and starts no other while the limit is in flight
  const second = await pass(h, now + 500)
  assert.equal(second.filter((p) => p.cmd.type === 'EvacuateVm'), [])
  assert.equal(second.filter((p) => p.cmd.type === 'AssignVm' && movingLive.includes(p.cmd.id)), [])

  // one finishes: the next goes live
  const done = movingLive[0]
  const s = h.sm.getVm(done)!.migration!
  ok(h.run({ type: 'ReportMigration', vm: done, node: s.target, started: s.started, event: 'target-ready' }))
  ok(h.run({ type: 'ReportMigration', vm: done, node: 'a', started: s.started, event: 'source-completed' }))
  ok(h.run({ type: 'ReportMigration', vm: done, node: s.target, started: s.started, event: 'target-running' }))
  const third = await pass(h, now + 1000)
  assert.equal(third.map((p) => p.cmd.type), ['EvacuateVm'])
})

test.run()
