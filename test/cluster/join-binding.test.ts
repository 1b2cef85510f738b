// Join binding: a fresh node (no configuration yet) accepts a leader's Raft traffic only from
// the peers it asked to join through and the leader that answered. Before, any holder of the
// cluster key could install a well-formed fake snapshot on it (and become its only admin).
// One real blixard-node process that waits for peers (bootstrap-expect 3, none started) plays
// the fresh node; a key holder sends it a fake snapshot and a MsgApp. Ports 18400 (metrics 18500).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TestCluster, waitFor, sleep } from './harness.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { encodeFrame } from '../../protocols/framing.ts'
import { RAFT_PROTOCOL } from '../../node/net/raft-transport.ts'
import type { Message } from '../../protocols/raft/types.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'

const BASE = 18400
const c = new TestCluster({ nodes: 3, basePort: BASE }, 'join-binding')
let attacker: BlixardHost
let evil = ''

test.before(async () => {
  await c.prepare()
  const { privateKey } = await loadOrCreateIdentity(join(c.dir, 'attacker'))
  evil = peerIdFromPrivateKey(privateKey).toString()
  attacker = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(c.keyFile), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dialTimeoutMs: 3_000 })
  c.start(0)
})
test.after(async () => {
  await attacker?.stop()
  await c.stop()
})

async function metric (name: string, label = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${BASE + 100}/metrics`)).text()
  let n = 0
  for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(label) && !line.startsWith('#')) n += Number(line.split(' ').pop())
  return n
}

test('a fresh node drops a fake snapshot and appends from a key holder it did not ask to join through', async () => {
  try {
    await waitFor('the fresh node to serve /metrics', 30_000, async () => { try { await metric('blixard_raft_term'); return true } catch { return false } }, 200)
    const me = c.nodes[0].peerId
    const fake = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
    fake.apply(1, encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: evil, name: 'evil' }, at: 1, key: 'a' }))
    const data = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: evil, name: 'evil' }, at: 1, key: 'b' })
    const msgs: Message[] = [
      { type: 'MsgSnap', from: evil, to: me, term: 7, snapshot: { meta: { index: 50, term: 7, conf: { voters: [evil, me], learners: [] } }, data: fake.snapshot() } },
      { type: 'MsgApp', from: evil, to: me, term: 7, index: 0, logTerm: 0, commit: 1, entries: [{ term: 7, index: 1, type: 'normal', data }] },
      { type: 'MsgHeartbeat', from: evil, to: me, term: 7, commit: 0 }
    ]
    const d0 = await metric('blixard_raft_messages_dropped_total', 'reason="not-admitter"')
    const s = await attacker.dialProtocol(multiaddr(c.nodes[0].addr), RAFT_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    s.send(encodeFrame(msgs, 64 << 20))
    await sleep(1_000)
    await s.close().catch(() => { s.abort(new Error('done')) })
    const d1 = await metric('blixard_raft_messages_dropped_total', 'reason="not-admitter"')
    console.log(`  dropped as not-admitter: ${d1 - d0} of ${msgs.length}; term ${await metric('blixard_raft_term')}, applied ${await metric('blixard_raft_applied_index')}`)
    assert.is(d1 - d0, msgs.length)
    assert.is(await metric('blixard_raft_term'), 0, 'the forged term reached the core')
    assert.is(await metric('blixard_raft_applied_index'), 0, 'the fake snapshot was installed')
    assert.ok(/not-admitter/.test(c.log(0)), 'the drop is logged')
    assert.is(c.nodes[0].proc!.exitCode, null, 'the node exited')
  } catch (err) { console.log(c.logTails()); throw err }
})

test.run()
