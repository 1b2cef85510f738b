// A node whose state machine store was open when its machine went down (storage/state-dir.ts) starts
// with that store moved aside and rebuilds it from its Raft log's snapshot and entries: the pretend
// reboot is a RUN file naming another boot id, and the old store's bytes are garbage, so a node that
// read them would fail. Real blixard-node processes on 127.0.0.1; snapshots every 100 entries, so
// the rebuild starts from a snapshot and applies the entries after it. Ports 19700-19702.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TestCluster, waitFor, vmSpec } from './harness.ts'

const c = new TestCluster({ nodes: 3, basePort: 19700, extraArgs: ['--raft-snapshot-every', '100', '--raft-snapshot-keep', '0'] }, 'state-rebuild')
let failed = false
test.before(async () => { await c.prepare() })
test.after(async () => {
  if (failed) console.log(c.logTails())
  await c.stop()
})

test('a store left open by another boot is moved aside and rebuilt from the log; a clean stop marks it clean', async () => {
  try {
    for (const i of [0, 1, 2]) c.start(i)
    const sts = await waitFor('3 nodes agreeing on a leader', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
    const leader = c.nodes.findIndex((n) => n.peerId === sts[0].leader)
    const f = [0, 1, 2].find((i) => i !== leader)!
    const cl = await c.client(leader)
    const names = Array.from({ length: 130 }, (_, k) => `rebuild-${k}`)
    for (let k = 0; k < names.length; k += 10) {
      await Promise.all(names.slice(k, k + 10).map(async (name) => await cl.call('vm.create', { spec: vmSpec(name), start: false })))
    }
    const before = await waitFor(`node ${f} applied the writes`, 30_000, async () => { const s = await c.status(f); return s != null && s.applied >= sts[0].commit + names.length ? s : null })
    const stateDir = join(c.nodes[f].dir, 'state')
    assert.ok(existsSync(join(stateDir, 'RUN')), 'a running node marks its state directory')
    c.kill(f)
    await c.exited(f)
    // the machine "went down": another boot id, and a store nobody could read
    writeFileSync(join(stateDir, 'RUN'), '00000000-0000-0000-0000-00000000dead open\n')
    const size = statSync(join(stateDir, 'data.mdb')).size
    writeFileSync(join(stateDir, 'data.mdb'), Buffer.alloc(size, 0xa5))
    c.start(f)
    await waitFor(`node ${f} back and agreeing`, 60_000, async () => await c.agreed([0, 1, 2], 3), 250)
    assert.match(c.log(f), /state machine store moved aside and rebuilt from the Raft log/)
    const aside = readdirSync(c.nodes[f].dir).filter((x) => x.startsWith('state.unclean-'))
    assert.is(aside.length, 1, 'the old store is kept beside')
    // linearizable reads on the rebuilt node: it answers only once it has applied past the read index
    const fc = await c.client(f)
    for (const name of [names[0], names[64], names[names.length - 1]]) {
      const vm = await fc.call('vm.show', { vm: name })
      assert.is(vm.spec.name, name)
    }
    const list = await fc.call('vm.list', {})
    assert.is(list.filter((v: { spec: { name: string } }) => v.spec.name.startsWith('rebuild-')).length, names.length, 'every VM is back')
    const after = await c.status(f)
    assert.ok(after != null && after.applied >= before.applied, `applied ${after?.applied} >= ${before.applied}`)
    assert.match(readFileSync(join(stateDir, 'RUN'), 'utf8'), / open\n$/)
    c.kill(f, 'SIGTERM')
    await c.exited(f)
    assert.match(readFileSync(join(stateDir, 'RUN'), 'utf8'), / clean\n$/, 'a clean stop flushed the store and said so')
    console.log(`  rebuilt node ${c.nodes[f].name}: ${names.length} VMs back, applied ${after?.applied}`)
  } catch (err) { failed = true; throw err }
})

test.run()
