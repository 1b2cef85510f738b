// The reasons a drain's moves leave on each VM name the node drained by its name, as `vm show`,
// `vm list` and the dashboard print them: the leader's scheduler pass over a real state machine,
// its proposals applied to it. Stopped VMs only, so the drain needs no stranding check and the
// same commands apply on every version of the state machine (this test also ran on the tree
// before the reasons named nodes, and failed there).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { schedulePass } from '../../node/scheduler.ts'
import { silentLogger } from '../../node/log.ts'

function ok (r: ApplyResult): void { assert.ok(r.ok, r.ok ? '' : `${r.error.kind}: ${r.error.message}`) }

test('a drain\'s reasons name the node it left by name, never its id: moved cold, and stranded (no other node fits)', async () => {
  const h = harness()
  // node ids as real ones look: the reasons must not carry them
  const ids = ['12D3KooWDrainAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '12D3KooWDrainBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB']
  const a = registerNode(ids[0], { name: 'node-a' })
  if (a.type === 'RegisterNode') a.node.labels = { ...a.node.labels, pin: 'here' }
  ok(h.run(a))
  ok(h.run(registerNode(ids[1], { name: 'node-b' })))
  // both stopped, both on node-a; `pinned` fits only node-a
  for (const [id, over] of [['idle', {}], ['pinned', { constraints: [{ label: 'pin', op: '==', value: 'here' }] }]] as const) {
    ok(h.run({ type: 'CreateVm', id, spec: spec(id, over as Parameters<typeof spec>[1]), desired: 'stopped' }))
    ok(h.run({ type: 'AssignVm', id, node: ids[0] }))
  }
  ok(h.run({ type: 'UpdateNode', id: ids[0], state: 'draining' } as Command))
  const proposed: Command[] = []
  await schedulePass({ sm: h.sm, load: { hints: () => new Map() }, isLeader: () => true, now: () => h.index() * 1000, log: silentLogger, propose: async (env) => { proposed.push(env.cmd); return h.run(env.cmd) } })
  const reasons = Object.fromEntries(proposed.flatMap((c) => c.type === 'AssignVm' ? [[c.id, c.reason ?? '']] : []))
  assert.match(reasons.idle ?? '', /^evacuated from draining node-a\b/, JSON.stringify(reasons))
  assert.match(reasons.pinned ?? '', /^evacuated from draining node-a; no other node fits$/, JSON.stringify(reasons))
  for (const r of Object.values(reasons)) assert.not.match(r, /12D3KooW/, r)
  // and that is what the records say
  assert.match(h.sm.getVm('pinned')?.status.reason ?? '', /^evacuated from draining node-a; no other node fits$/)
})

test.run()
