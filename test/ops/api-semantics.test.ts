// Client semantics against 3 real nodes: a write sent to a follower that has just
// restarted resolves a VM created while it was down (after a ReadIndex barrier, never a stale
// NotFound), and a mutating call retried with the same idempotency key applies once and
// answers with the first attempt's result.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { OpsCluster, until } from './cluster.ts'
import { startNode } from '../../scripts/local-cluster.ts'
import { track } from '../cluster/harness.ts'

let c: OpsCluster
test.before(async () => { c = await OpsCluster.start('semantics', 17431) })
test.after(async () => { await c?.stop() })

interface Vm { id: string, spec: { name: string }, desired: string, generation: number }
const json = <T>(r: { code: number, stdout: string, stderr: string, json: unknown }, what: string): T => {
  assert.is(r.code, 0, `${what}: exit ${r.code}: ${r.stderr}`)
  return r.json as T
}

test('a follower that has just restarted resolves a VM created while it was down', async () => {
  const leader = await c.leaderIndex()
  const f = (leader + 1) % 3
  const via = c.nodes[(leader + 2) % 3].addr
  const node = c.nodes[f]
  node.proc?.kill('SIGKILL')
  await until(`${node.name} gone`, 10_000, () => node.proc?.exitCode != null || node.proc?.signalCode != null)
  const vm = json<Vm>(await c.cli(['vm', 'create', 'fresh', '--json'], { BLIXARD_PEER: via }), 'create while the follower is down')
  track(startNode({ keyFile: c.keyFile, nodes: c.nodes }, node, { admins: [c.adminId], logToFiles: true }))
  // the first write through the restarted node, as soon as it answers at all
  const r = await until('the restarted follower answers', 30_000, async () => {
    const x = await c.cli(['vm', 'stop', 'fresh', '--json'], { BLIXARD_PEER: node.addr }, 20_000)
    return x.code === 5 ? null : x // not reachable yet: try again
  }, 100)
  const stopped = json<Vm>(r, 'stop through the restarted follower')
  assert.is(stopped.id, vm.id)
  assert.is(stopped.desired, 'stopped', 'the answer is the record this stop produced')
})

test('the same idempotency key twice: applied once, the first result both times', async () => {
  const key = `sem-create-${Date.now()}`
  const a = json<Vm>(await c.cli(['vm', 'create', 'once', '--json', '--idempotency-key', key]), 'first create')
  const b = json<Vm>(await c.cli(['vm', 'create', 'once', '--json', '--idempotency-key', key], { BLIXARD_PEER: c.nodes[2].addr }), 'retried create')
  assert.is(b.id, a.id, 'the retry answers with the VM the first attempt created, not AlreadyExists')
  const list = json<Vm[]>(await c.cli(['vm', 'list', '--json']), 'list')
  assert.is(list.filter((v) => v.spec.name === 'once').length, 1)

  const dk = `sem-delete-${Date.now()}`
  const d1 = json<{ id: string }>(await c.cli(['vm', 'delete', 'once', '--force', '--json', '--idempotency-key', dk]), 'delete')
  const d2 = json<{ id: string }>(await c.cli(['vm', 'delete', 'once', '--force', '--json', '--idempotency-key', dk], { BLIXARD_PEER: c.nodes[1].addr }), 'retried delete')
  assert.equal(d2, d1, 'the retried delete answers as the first, not NotFound')
  // a new key is a new command: now the VM is gone
  assert.is((await c.cli(['vm', 'delete', 'once', '--json'])).code, 3)
})

test('an update answers with the record its own command produced', async () => {
  json<Vm>(await c.cli(['vm', 'create', 'gm', '--json']), 'create')
  const u = json<Vm & { spec: { memoryMiB: number } }>(await c.cli(['vm', 'update', 'gm', '--memory', '256', '--json'], { BLIXARD_PEER: c.nodes[1].addr }), 'update')
  assert.is(u.generation, 2)
  assert.is(u.spec.memoryMiB, 256)
})

test.run()
