import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import type { Message } from '../../protocols/raft/types.ts'
import { encodeFrame } from '../../protocols/framing.ts'
import { raftTransport, RAFT_PROTOCOL, type RaftTransport } from '../../node/net/raft-transport.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { dialableAddr } from '../../node/net/host.ts'
import { recordingLogger, silentLogger, type LogRecord } from '../../node/log.ts'
import { testHost, until, sleep } from './helpers.ts'

interface Node {
  host: BlixardHost<{ raft: RaftTransport }>
  id: string
  got: Array<{ from: string, msg: Message }>
  unreachable: string[]
  logs: LogRecord[]
  key: PrivateKey
  onGot?: () => void
  snaps: Array<[string, boolean]>
}

async function node (opts: { key?: PrivateKey, listen?: string[], maxQueue?: number, writeTimeoutMs?: number } = {}): Promise<Node> {
  const key = opts.key ?? await generateKeyPair('Ed25519')
  const n = { got: [], unreachable: [], logs: [], snaps: [], key } as unknown as Node
  n.host = await testHost<{ raft: RaftTransport }>({
    privateKey: key,
    listen: opts.listen,
    services: {
      raft: raftTransport({
        onMessage: (from, msg) => { n.got.push({ from, msg }); n.onGot?.() },
        onUnreachable: (peer) => n.unreachable.push(peer),
        onSnapshotStatus: (peer, ok) => n.snaps.push([peer, ok]),
        log: recordingLogger(n.logs).log,
        maxQueue: opts.maxQueue,
        writeTimeoutMs: opts.writeTimeoutMs,
        reconnectMinMs: 20,
        reconnectMaxMs: 200,
        dialTimeoutMs: 1000
      })
    }
  })
  n.id = n.host.peerId.toString()
  return n
}

function app (from: string, to: string, index: number): Message {
  return { type: 'MsgApp', from, to, term: 1, index, logTerm: 1, commit: 0, entries: [{ term: 1, index: index + 1, type: 'normal', data: Uint8Array.from([index % 256]) }] }
}

const nodes: Node[] = []
test.after(async () => { await Promise.all(nodes.map(async n => { try { await n.host.stop() } catch {} })) })

test('three hosts exchange batches of Raft messages in order', async () => {
  const [a, b, c] = await Promise.all([node(), node(), node()])
  nodes.push(a, b, c)
  await b.host.dial(dialableAddr(a.host))
  await c.host.dial(dialableAddr(a.host))
  await a.host.dial(dialableAddr(c.host)).catch(() => {})
  const msgs: Message[] = []
  for (let i = 0; i < 500; i++) msgs.push(app(a.id, b.id, i), app(a.id, c.id, i))
  msgs.push({ type: 'MsgHeartbeat', from: a.id, to: b.id, term: 1, commit: 0, context: Uint8Array.from([1, 2]) })
  const t0 = performance.now()
  a.host.services.raft.send(msgs)
  await until(() => b.got.length === 501 && c.got.length === 500, 5000, 'delivery')
  console.log(`  1001 messages to 2 peers delivered in ${(performance.now() - t0).toFixed(1)} ms`)
  assert.equal(b.got.slice(0, 500).map(g => g.msg.index), [...Array(500).keys()])
  assert.ok(b.got.every(g => g.from === a.id))
  assert.equal(b.got[500].msg, msgs[1000])
  assert.equal(c.got[499].msg, msgs[999])
  const st = a.host.services.raft.stats()
  assert.is(st[b.id].sentMsgs, 501)
  assert.ok(st[b.id].sentFrames >= 2 && st[b.id].sentFrames < 501, `batched: ${st[b.id].sentFrames} frames`)
  assert.ok(st[b.id].connected)
  // replies flow the other way on b's own stream
  b.host.services.raft.send([{ type: 'MsgAppResp', from: b.id, to: a.id, term: 1, index: 500 }])
  await until(() => a.got.length === 1, 3000, 'reply')
  assert.is(a.got[0].msg.type, 'MsgAppResp')
})

test('round-trip latency of a single message on loopback', async () => {
  const [a, b] = nodes
  const lat: number[] = []
  for (let i = 0; i < 200; i++) {
    const got = new Promise<void>(resolve => { a.onGot = resolve })
    const t0 = performance.now()
    b.host.services.raft.send([{ type: 'MsgHeartbeatResp', from: b.id, to: a.id, term: 1 }])
    await got
    lat.push(performance.now() - t0)
  }
  a.onGot = undefined
  lat.sort((x, y) => x - y)
  console.log(`  one-way raft message on loopback: p50 ${lat[100].toFixed(3)} ms, p99 ${lat[198].toFixed(3)} ms`)
  assert.ok(lat[100] < 20)
})

test('a restarted peer is reached again (reconnection) and the outage is reported', async () => {
  const a = nodes[0]
  const b = nodes[1]
  const addr = dialableAddr(b.host).toString().split('/p2p/')[0]
  await b.host.stop()
  a.unreachable.length = 0
  a.host.services.raft.send([app(a.id, b.id, 1)])
  await until(() => a.unreachable.includes(b.id), 5000, 'unreachable report')
  const b2 = await node({ key: b.key, listen: [addr] })
  nodes[1] = b2
  // Raft keeps sending (heartbeats): one of them lands once b is back
  await until(async () => {
    a.host.services.raft.send([{ type: 'MsgHeartbeat', from: a.id, to: b2.id, term: 2, commit: 0 }])
    await sleep(50)
    return b2.got.length > 0
  }, 8000, 'delivery after restart')
  assert.is(b2.got[0].msg.type, 'MsgHeartbeat')
  assert.is(b2.got[0].from, a.id)
  assert.ok(a.host.services.raft.stats()[b2.id].failures >= 1)
})

async function rawStream (from: Node, to: Node): Promise<import('@libp2p/interface').Stream> {
  return await from.host.dialProtocol(dialableAddr(to.host), RAFT_PROTOCOL)
}

async function resetOf (s: import('@libp2p/interface').Stream): Promise<void> {
  await until(() => s.status === 'reset' || s.status === 'aborted' || s.status === 'closed', 3000, `reset (status ${s.status})`)
}

test('garbage bytes on /blixard/raft/1 reset the stream with a named error; the node keeps serving', async () => {
  const [a, , c] = nodes
  for (const garbage of [Uint8Array.from([0x05, 0xff, 0xff, 0xff, 0xff, 0xff]), Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), encodeFrame({ not: 'a batch' }, 1000)]) {
    a.logs.length = 0
    const s = await rawStream(c, a)
    s.send(garbage)
    await resetOf(s)
    await until(() => a.logs.some(l => l.msg === 'raft.message.rejected'), 3000, 'rejection log')
    const l = a.logs.find(l => l.msg === 'raft.message.rejected')!
    assert.ok(['BadMessage', 'TooLarge'].includes(String(l.fields.error)), JSON.stringify(l))
  }
  const before = a.got.length
  c.host.services.raft.send([{ type: 'MsgVote', from: c.id, to: a.id, term: 9, index: 1, logTerm: 1 }])
  await until(() => a.got.length === before + 1, 3000, 'good message after garbage')
  assert.is(a.got[before].msg.type, 'MsgVote')
})

test('fuzz: random bytes and random CBOR batches never crash the receiver or reach onMessage', async () => {
  const [a, , c] = nodes
  const before = a.got.length
  const samples = [
    ...fc.sample(fc.uint8Array({ minLength: 1, maxLength: 300 }), { numRuns: 25, seed: 3 }),
    ...fc.sample(fc.array(fc.anything({ withTypedArray: true }), { maxLength: 4 }), { numRuns: 25, seed: 4 }).map(v => encodeFrame(v, 1 << 20))
  ]
  for (const bytes of samples) {
    const s = await rawStream(c, a)
    s.send(bytes)
    await sleep(5)
    s.abort(new Error('done'))
  }
  await sleep(200)
  assert.is(a.got.length, before)
  c.host.services.raft.send([{ type: 'MsgVote', from: c.id, to: a.id, term: 11 }])
  await until(() => a.got.length === before + 1, 3000, 'a good message after the fuzz')
})

test('a message whose from is not the sending peer is dropped, the rest of the batch delivered', async () => {
  const [a, b, c] = nodes
  a.logs.length = 0
  const before = a.got.length
  const s = await rawStream(c, a)
  s.send(encodeFrame([
    { type: 'MsgVote', from: b.id, to: a.id, term: 10 }, // forged
    { type: 'MsgHup', from: c.id, to: a.id, term: 10 }, // local-only
    { type: 'MsgVote', from: c.id, to: a.id, term: 10 }
  ], 10000))
  await until(() => a.got.length === before + 1, 3000, 'the good message')
  assert.is(a.got[before].from, c.id)
  const rejected = a.logs.filter(l => l.msg === 'raft.message.rejected').map(l => String(l.fields.message))
  assert.is(rejected.length, 2)
  assert.ok(rejected[0].includes('is not the sending peer'))
  assert.ok(rejected[1].includes('.type'))
  await s.close()
})

test('an overflowing queue drops the oldest MsgApp first and reports the peer unreachable', async () => {
  const a = await node({ maxQueue: 10 })
  nodes.push(a)
  const ghost = (await node()) // a peer that is never dialable: stop it right away
  await ghost.host.stop()
  const msgs: Message[] = [{ type: 'MsgHeartbeat', from: a.id, to: ghost.id, term: 1 }]
  for (let i = 0; i < 20; i++) msgs.push(app(a.id, ghost.id, i))
  a.host.services.raft.send(msgs)
  assert.ok(a.unreachable.includes(ghost.id))
  const st = a.host.services.raft.stats()[ghost.id]
  assert.ok(st.dropped >= 11, `dropped ${st.dropped}`)
  assert.ok(a.logs.some(l => l.msg === 'raft.queue.overflow'))
})

test('a peer that stops reading gets its stream reset after the write timeout, and is reported', async () => {
  const a = await node({ writeTimeoutMs: 300 })
  nodes.push(a)
  const stuck = await testHost()
  const streams: import('@libp2p/interface').Stream[] = []
  await stuck.handle(RAFT_PROTOCOL, (stream) => { stream.pause(); streams.push(stream) })
  try {
    await a.host.dial(dialableAddr(stuck))
    const id = stuck.peerId.toString()
    const big = new Uint8Array(512 * 1024)
    const msgs: Message[] = []
    for (let i = 0; i < 16; i++) msgs.push({ type: 'MsgApp', from: a.id, to: id, term: 1, index: i, logTerm: 1, commit: 0, entries: [{ term: 1, index: i + 1, type: 'normal', data: big }] })
    const t0 = Date.now()
    a.host.services.raft.send(msgs)
    await until(() => a.unreachable.includes(id), 5000, 'unreachable after the write timeout')
    const took = Date.now() - t0
    assert.ok(took >= 250, `reported after ${took} ms`)
    const why = a.logs.find(l => l.msg === 'raft.peer.unreachable')
    console.log(`  stuck reader detected after ${took} ms: ${JSON.stringify(why?.fields)}`)
    assert.is(why?.fields.error, 'TimeoutError')
    assert.ok(a.host.services.raft.stats()[id].failures >= 1)
    assert.ok(streams.length >= 1)
  } finally {
    await stuck.stop()
  }
})

test('snapshot delivery is reported: ok when written, failed when lost', async () => {
  const [a, , c] = nodes
  const snap = (to: string): Message => ({ type: 'MsgSnap', from: a.id, to, term: 5, snapshot: { meta: { index: 50, term: 4, conf: { voters: [a.id, to], learners: [] } }, data: new Uint8Array(6 * 1024 * 1024).fill(7) } })
  a.snaps.length = 0
  const before = c.got.length
  a.host.services.raft.send([snap(c.id)])
  await until(() => c.got.length === before + 1, 3000, 'snapshot delivery')
  assert.is(c.got[before].msg.snapshot!.data.byteLength, 6 * 1024 * 1024) // above the 4 MiB default stream buffer
  assert.equal(a.snaps, [[c.id, true]])
  const ghost = await node()
  await ghost.host.stop()
  a.host.services.raft.send([snap(ghost.id)])
  await until(() => a.snaps.length === 2, 3000, 'failed snapshot report')
  assert.equal(a.snaps[1], [ghost.id, false])
})

test.run()
