// Forged Raft traffic: a key holder that is not a member speaks /blixard/raft/1 to 3 real
// blixard-node processes. Every forged message must be dropped before the core (counted in
// blixard_raft_messages_dropped_total), and afterwards the cluster keeps its leader (or holds a
// clean election), its term stays near where it was, no forged state appears on any node, an
// admin write goes through, and every process is alive.
// Ports 18100-18102 (metrics 18200-18202).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TestCluster, waitFor, sleep, vmSpec } from './harness.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'
import { encodeFrame } from '../../protocols/framing.ts'
import { RAFT_PROTOCOL } from '../../node/net/raft-transport.ts'
import type { Message } from '../../protocols/raft/types.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'

const BASE = 18100
const c = new TestCluster({ nodes: 3, basePort: BASE }, 'raft-attack')
let attacker: BlixardHost
let evil = ''
let failed = false

test.before(async () => {
  await c.prepare()
  const { privateKey } = await loadOrCreateIdentity(join(c.dir, 'attacker'))
  evil = peerIdFromPrivateKey(privateKey).toString()
  attacker = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(c.keyFile), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dialTimeoutMs: 3_000 })
  for (const i of [0, 1, 2]) c.start(i)
  await waitFor('3 nodes agreeing on a leader with 3 voters', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
})
test.after(async () => {
  if (failed) console.log(c.logTails())
  await attacker?.stop()
  await c.stop()
})

async function send (i: number, msgs: Message[]): Promise<void> {
  const s = await attacker.dialProtocol(multiaddr(c.nodes[i].addr), RAFT_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
  s.send(encodeFrame(msgs, 64 << 20))
  await sleep(150)
  await s.close().catch(() => { s.abort(new Error('done')) })
}

async function dropped (i: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${BASE + 100 + i}/metrics`)).text()
  let n = 0
  for (const line of text.split('\n')) if (line.startsWith('blixard_raft_messages_dropped_total{')) n += Number(line.split(' ').pop())
  return n
}

test('forged Raft messages from a non-member and a spoofed voter change nothing', async () => {
  try {
    const before = await waitFor('agreement', 20_000, async () => await c.agreed([0, 1, 2], 3))
    const leader = before[0].leader!
    const term0 = before[0].term
    const li = c.nodes.findIndex(n => n.peerId === leader)
    const fi = (li + 1) % 3
    const follower = c.nodes[fi].peerId
    const commit = before[0].commit
    const cmd = (k: string, cmd: Parameters<typeof encodeEnvelope>[0]['cmd']): Uint8Array => encodeEnvelope({ cmd, at: 1, key: k })
    const bogus = [
      { term: term0 + 1, index: commit + 1, type: 'normal' as const, data: cmd('evil-admin', { type: 'AddAdmin', peerId: evil, name: 'evil' }) },
      { term: term0 + 1, index: commit + 2, type: 'normal' as const, data: cmd('evil-vm', { type: 'CreateVm', id: 'evil-vm', spec: vmSpec('evil-vm') }) }
    ]
    const fake = new StateMachine(new MemoryKv(), UNCHECKED_AUTHORITY)
    fake.apply(1, cmd('a', { type: 'AddAdmin', peerId: evil, name: 'evil' }))
    const garbage = new Uint8Array(64).map((_, i) => (i * 91 + 7) & 0xff)
    const snap = (data: Uint8Array, from: string): Message => ({ type: 'MsgSnap', from, to: follower, term: term0 + 1, snapshot: { meta: { index: commit + 1000, term: term0 + 1, conf: { voters: [from, follower], learners: [] } }, data } })
    const cases: Array<[string, number, Message]> = [
      ['MsgApp, higher term, AddAdmin + CreateVm', fi, { type: 'MsgApp', from: evil, to: follower, term: term0 + 1, index: commit, logTerm: term0, commit: commit + 2, entries: bogus }],
      ['MsgSnap with a well-formed fake state', fi, snap(fake.snapshot(), evil)],
      ['MsgSnap with 64 garbage bytes', fi, snap(garbage, evil)],
      ['MsgHeartbeat at term 2^53-1', fi, { type: 'MsgHeartbeat', from: evil, to: follower, term: Number.MAX_SAFE_INTEGER, commit: 0 }],
      ['MsgAppResp at term+1 to the leader', li, { type: 'MsgAppResp', from: evil, to: leader, term: term0 + 1, index: 0 }],
      ['MsgTransferLeader from a non-member', li, { type: 'MsgTransferLeader', from: evil, to: leader, term: term0 }],
      ['MsgHeartbeat spoofing the leader', fi, { type: 'MsgHeartbeat', from: leader, to: follower, term: term0 + 5, commit: 0 }]
    ]
    const d0 = await Promise.all([0, 1, 2].map(dropped))
    for (const [what, i, msg] of cases) {
      await send(i, [msg])
      console.log(`  sent ${what} to node${i + 1}`)
    }
    await sleep(1_000)
    const after = await waitFor('the cluster to still agree', 15_000, async () => await c.agreed([0, 1, 2], 3))
    console.log(`  leader ${before[0].leader === after[0].leader ? 'unchanged' : 'changed'}, term ${term0} -> ${after[0].term}`)
    assert.is(after[0].leader, leader, 'leadership moved')
    assert.is(after[0].term, term0, 'the term moved')
    const d1 = await Promise.all([0, 1, 2].map(dropped))
    const delta = d1.reduce((a, b) => a + b, 0) - d0.reduce((a, b) => a + b, 0)
    console.log(`  dropped by the ingress check: ${delta} (the spoofed one is refused by the transport)`)
    assert.ok(delta >= cases.length - 1, `only ${delta} drops counted`)
    for (const i of [0, 1, 2]) {
      const admins = await (await c.client(i)).call('admin.list', { stale: true })
      assert.not.ok(admins.some(a => a.peerId === evil), `node${i + 1} has the forged admin`)
      const vms = await (await c.client(i)).call('vm.list', { stale: true })
      assert.not.ok(vms.some(v => v.spec.name === 'evil-vm'), `node${i + 1} has the forged VM`)
      assert.is(c.nodes[i].proc!.exitCode, null, `node${i + 1} exited`)
    }
    assert.ok(/raft message dropped/.test(c.log(fi)), 'the drop is logged')
    const logged = c.log(fi).split('\n').filter(l => l.includes('raft message dropped') && l.includes(evil)).length
    assert.ok(logged <= 4, `logged ${logged} times: once per peer and reason`)
    const vm = await (await c.client(li)).call('vm.create', { spec: vmSpec('after-attack'), start: false })
    assert.is(vm.spec.name, 'after-attack')
  } catch (err) { failed = true; throw err }
})

test('a learner member (joined by cluster.join) may not vote, transfer leadership, append or raise terms', async () => {
  try {
    const before = await waitFor('agreement', 20_000, async () => await c.agreed([0, 1, 2], 3))
    const leader = before[0].leader!
    const li = c.nodes.findIndex(n => n.peerId === leader)
    const fi = (li + 1) % 3
    const follower = c.nodes[fi].peerId
    const cl = await RpcClient.connect(attacker, multiaddr(c.nodes[fi].addr), { timeoutMs: 10_000, dialTimeoutMs: 3_000 })
    await cl.call('cluster.join', { addrs: attacker.getMultiaddrs().map(String) })
    await cl.close()
    await waitFor('the attacker to be a learner on every node', 20_000, async () => (await Promise.all([0, 1, 2].map(async i => (await c.status(i, true))?.learners.includes(evil) === true))).every(Boolean), 100)
    const mid = await waitFor('agreement', 20_000, async () => await c.agreed([0, 1, 2], 3))
    const term0 = mid[0].term
    const commit = mid[0].commit
    const data = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: evil, name: 'evil' }, at: 1, key: 'learner-evil' })
    const cases: Array<[string, number, Message]> = [
      ['MsgPreVote at term+1', fi, { type: 'MsgPreVote', from: evil, to: follower, term: term0 + 1, index: commit + 100, logTerm: term0 }],
      ['MsgVote at term+1', fi, { type: 'MsgVote', from: evil, to: follower, term: term0 + 1, index: commit + 100, logTerm: term0 }],
      ['MsgTransferLeader to the leader', li, { type: 'MsgTransferLeader', from: evil, to: leader, term: term0 }],
      ['MsgApp with AddAdmin to a follower', fi, { type: 'MsgApp', from: evil, to: follower, term: term0 + 1, index: commit, logTerm: term0, commit: commit + 1, entries: [{ term: term0 + 1, index: commit + 1, type: 'normal', data }] }],
      ['MsgAppResp at term+1 to the leader', li, { type: 'MsgAppResp', from: evil, to: leader, term: term0 + 1, index: 0 }],
      ['MsgHeartbeatResp at term 2^53-1 to the leader', li, { type: 'MsgHeartbeatResp', from: evil, to: leader, term: Number.MAX_SAFE_INTEGER }]
    ]
    const d0 = await Promise.all([0, 1, 2].map(dropped))
    for (const [what, i, msg] of cases) { await send(i, [msg]); console.log(`  learner sent ${what} to node${i + 1}`) }
    await sleep(1_000)
    const after = await waitFor('the cluster to still agree', 15_000, async () => await c.agreed([0, 1, 2], 3))
    console.log(`  leader ${after[0].leader === leader ? 'unchanged' : 'changed'}, term ${term0} -> ${after[0].term}`)
    assert.is(after[0].leader, leader)
    assert.is(after[0].term, term0)
    const d1 = await Promise.all([0, 1, 2].map(dropped))
    assert.ok(d1.reduce((a, b) => a + b, 0) - d0.reduce((a, b) => a + b, 0) >= cases.length, 'every learner forgery counted')
    for (const i of [0, 1, 2]) {
      const admins = await (await c.client(i)).call('admin.list', { stale: true })
      assert.not.ok(admins.some(a => a.peerId === evil), `node${i + 1} has the forged admin`)
      assert.is(c.nodes[i].proc!.exitCode, null, `node${i + 1} exited`)
    }
    const vm = await (await c.client(li)).call('vm.create', { spec: vmSpec('after-learner'), start: false })
    assert.is(vm.spec.name, 'after-learner')
  } catch (err) { failed = true; throw err }
})

test.run()
