// What an applied command sets in motion on a node (node/apply-effects.ts effectsOf): learning
// another node's addresses, waking the scheduler, telling the rebalancer of a node that joined or became ready, waking the agent, the migration service, the volume reconciler and the snapshot service; nothing for a refused command.
// carryOut wakes exactly the services named, learns addresses only of a node the state knows, and
// before the execution block started only learns addresses.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { carryOut, effectsOf } from '../../node/apply-effects.ts'
import type { AppliedEffects, EffectTargets } from '../../node/apply-effects.ts'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import { vmSpec } from '../../sim/workload.ts'

const ok: ApplyResult = { ok: true }
const refused: ApplyResult = { ok: false, error: { kind: 'NotFound', message: 'no such VM' } }
const env = (cmd: Command): CommandEnvelope => ({ cmd, at: 0 })

const cases: Array<[string, Command, ApplyResult, ReturnType<typeof effectsOf>]> = [
  ['another node registers: learn its addresses', { type: 'UpdateNode', id: 'n2' } as unknown as Command, ok, { learnAddrsOf: 'n2', kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['this node updates itself: nothing to learn', { type: 'UpdateNode', id: 'self' } as unknown as Command, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a VM is created: place it', { type: 'CreateVm', id: 'vm1', spec: vmSpec('vm1', 1, 128), desired: 'running' }, ok, { learnAddrsOf: null, kickScheduler: true, kickAgent: true, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a status report changes nothing to act on', { type: 'ReportVmStatus' } as unknown as Command, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: false, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a node marked down ends its migrations: wake the migration service', { type: 'MarkNodeDown' } as unknown as Command, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: true, kickMigrations: true, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a volume change: wake the volume reconciler', { type: 'ResizeVolume', name: 'v', sizeGiB: 2 }, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a volume report: a VM waiting for it may be placed now', { type: 'ReportVolume', name: 'v', node: 'n1', generation: 1, outcome: 'ready' }, ok, { learnAddrsOf: null, kickScheduler: true, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a VM snapshot: wake the snapshot service', { type: 'DeleteVmSnapshot', vm: 'vm1', name: 's1' } as unknown as Command, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: false, kickSnapshots: true, kickPools: false, nodeReady: null }],
  ['a refused snapshot command sets nothing in motion', { type: 'SnapshotVm', vm: 'vm1', name: 's1' } as unknown as Command, refused, { learnAddrsOf: null, kickScheduler: false, kickAgent: false, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a warm pool set: wake the pool service', { type: 'SetWarmPool', name: 'fn', vcpus: 1, memoryMiB: 96, size: 2 } as unknown as Command, ok, { learnAddrsOf: null, kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: true, nodeReady: null }],
  ['a node set ready (back from a drain, say): the rebalancer may fill it', { type: 'UpdateNode', id: 'n2', state: 'ready' } as unknown as Command, ok, { learnAddrsOf: 'n2', kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: 'n2' }],
  ['a node joins (its record created by this entry): the rebalancer may fill it', { type: 'RegisterNode', node: { id: 'n3' } } as unknown as Command, { ok: true, value: { id: 'n3', registeredAt: 5, updatedAt: 5 } }, { learnAddrsOf: 'n3', kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: 'n3' }],
  ['a restarted node registers again: no join', { type: 'RegisterNode', node: { id: 'n3' } } as unknown as Command, { ok: true, value: { id: 'n3', registeredAt: 5, updatedAt: 9 } }, { learnAddrsOf: 'n3', kickScheduler: false, kickAgent: true, kickMigrations: false, kickVolumes: true, kickSnapshots: false, kickPools: false, nodeReady: null }],
  ['a refused command sets nothing in motion', { type: 'CreateVm', id: 'vm1', spec: vmSpec('vm1', 1, 128), desired: 'running' }, refused, { learnAddrsOf: null, kickScheduler: false, kickAgent: false, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }]
]
for (const [name, cmd, r, want] of cases) {
  test(name, () => { assert.equal(effectsOf('self', env(cmd), r), want) })
}

function recorder (): { woke: string[], learned: string[], exec: EffectTargets, learn: Parameters<typeof carryOut>[2] } {
  const woke: string[] = []
  const learned: string[] = []
  const k = (name: string) => ({ kick: () => { woke.push(name) } })
  return {
    woke,
    learned,
    exec: { scheduler: k('scheduler'), agent: k('agent'), migrations: k('migrations'), volumes: k('volumes'), snapshots: k('snapshots'), pools: k('pools'), rebalancer: { nodeReady: (n) => { woke.push(`rebalancer ${n}`) } } },
    learn: { addrsOf: (n) => n === 'n2' ? ['/ip4/10.0.0.2/tcp/1'] : undefined, learnAddrs: async (n, a) => { learned.push(`${n} ${a.join(',')}`) } }
  }
}
const none: AppliedEffects = { learnAddrsOf: null, kickScheduler: false, kickAgent: false, kickMigrations: false, kickVolumes: false, kickSnapshots: false, kickPools: false, nodeReady: null }

test('carryOut wakes only the services named, and learns a known node\'s addresses', () => {
  const r = recorder()
  carryOut({ ...none, learnAddrsOf: 'n2', kickScheduler: true, kickVolumes: true }, r.exec, r.learn)
  assert.equal(r.woke, ['scheduler', 'volumes'])
  assert.equal(r.learned, ['n2 /ip4/10.0.0.2/tcp/1'])
  const u = recorder()
  carryOut({ ...none, learnAddrsOf: 'gone', kickPools: true, nodeReady: 'n4' }, u.exec, u.learn)
  assert.equal(u.learned, [], 'a node the state does not know: nothing to learn')
  assert.equal(u.woke, ['pools', 'rebalancer n4'])
})

test('carryOut before the execution block started only learns addresses', () => {
  const r = recorder()
  carryOut({ ...none, learnAddrsOf: 'n2', kickScheduler: true, kickAgent: true }, null, r.learn)
  assert.equal(r.woke, [])
  assert.equal(r.learned.length, 1)
})

test.run()
