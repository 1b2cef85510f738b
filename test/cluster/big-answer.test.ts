// A near-limit RPC answer: one vm.list answer of ~0.9 MiB (under the 1 MiB RPC limit) used to
// kill the node that answered it (the old pnet cipher's WASM memory). Here a real 3-node cluster
// holds enough stopped VMs (created with start: false: records only, no guest) for a ~0.9 MiB
// answer; it is read from the leader and a follower, and every node lives. Ports 18420 (metrics 18520).
import { test } from 'uvu'
import { readFileSync } from 'node:fs'
import * as assert from 'uvu/assert'
import { TestCluster, waitFor, sleep, vmSpec } from './harness.ts'
import { encodeCbor } from '../../storage/codec.ts'

const c = new TestCluster({ nodes: 3, basePort: 18420 }, 'big-answer')
const TARGET_BYTES = 900 * 1024
/** creates in flight at once (the RPC client's own cap is higher; this keeps the leader's batches moderate) */
const PARALLEL = 32

test.before(async () => {
  await c.prepare()
  for (const i of [0, 1, 2]) c.start(i)
  await waitFor('3 nodes agreeing on a leader with 3 voters', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
})
test.after(async () => { await c.stop() })

test('a ~0.9 MiB vm.list answer is delivered by the leader and a follower, and every node lives', async () => {
  try {
    const st = await waitFor('agreement', 20_000, async () => await c.agreed([0, 1, 2], 3))
    const li = c.nodes.findIndex(n => n.peerId === st[0].leader)
    const fi = (li + 1) % 3
    const cl = await c.client(li)
    // size of one record as vm.list answers it, to know how many make the target
    await cl.call('vm.create', { spec: vmSpec('big-0000'), start: false })
    const one = encodeCbor(await cl.call('vm.list', {})).byteLength
    const want = Math.ceil(TARGET_BYTES / one)
    const t0 = Date.now()
    let next = 1
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (next < want) {
        const k = next++
        await cl.call('vm.create', { spec: vmSpec(`big-${String(k).padStart(4, '0')}`), start: false })
      }
    }))
    console.log(`  ${want} stopped VMs (~${one} bytes each) created in ${Date.now() - t0} ms`)
    for (const i of [li, fi]) {
      const t1 = Date.now()
      const vms = await (await c.client(i)).call('vm.list', {}, { timeoutMs: 30_000 })
      const bytes = encodeCbor(vms).byteLength
      console.log(`  node${i + 1} (${i === li ? 'leader' : 'follower'}) answered ${vms.length} VMs, ${(bytes / 1024).toFixed(0)} KiB, in ${Date.now() - t1} ms`)
      assert.is(vms.length, want)
      assert.ok(bytes >= TARGET_BYTES * 0.95, `answer only ${bytes} bytes`)
    }
    await sleep(3_000) // the old failure came ~2.4 s after the answer
    for (const i of [0, 1, 2]) assert.is(c.nodes[i].proc!.exitCode, null, `node${i + 1} exited`)
    // the node processes' resident memory (VmRSS of each child; the answer was built and sent already)
    const rss = [0, 1, 2].map(i => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${c.nodes[i].proc!.pid!}/status`, 'utf8'))?.[1] ?? NaN) / 1024)
    console.log(`  RSS after: ${rss.map(r => r.toFixed(0)).join('/')} MiB`)
    const after = await waitFor('the cluster to still agree', 15_000, async () => await c.agreed([0, 1, 2], 3))
    assert.is(after[0].leader, st[0].leader)
  } catch (err) { console.log(c.logTails()); throw err }
})

test.run()
