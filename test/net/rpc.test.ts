import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { EventEmitter } from 'node:events'
import type { Stream } from '@libp2p/interface'
import type { VmRecord, VmSpec } from '../../protocols/model.ts'
import { encodeFrame, encodeVarint } from '../../protocols/framing.ts'
import { type VmWatchEvent } from '../../protocols/rpc.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { rpcServer, RpcClient, RPC_PROTOCOL, ListAnswer, dialFailure, type RpcServer, type RpcHandlers } from '../../node/net/rpc.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { dialableAddr } from '../../node/net/host.ts'
import { recordingLogger, silentLogger, type LogRecord } from '../../node/log.ts'
import { testHost, until, percentile, sleep } from './helpers.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { RPC_SERVER_STREAMS_PER_CONNECTION } from '../../protocols/limits.ts'

const spec: VmSpec = {
  name: 'web-1', vcpus: 2, memoryMiB: 512, diskGiB: 4, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [],
  kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'on-failure', requires: []
}
const vm = (id: string, s: VmSpec = spec): VmRecord => ({
  id, spec: s, generation: 1, desired: 'running', assignedNode: null,
  status: { phase: 'pending', reason: '', node: null, at: 1 }, createdAt: 1, updatedAt: 1
})

const logs: LogRecord[] = []
let admins = new Set<string>()
let watchEnded = 0
let listDrawn = 0
/** vm.watch generators started and not yet finished; each subscribes to `feed` like the daemon's watch subscribes to applied commands */
let watchesLive = 0
const feed = new EventEmitter().setMaxListeners(0)
let server: BlixardHost<{ rpc: RpcServer }>
let client: BlixardHost
let other: BlixardHost
let rpc: RpcClient

const handlers: RpcHandlers = {
  'cluster.status': (p, ctx) => ({ id: 'srv', leader: 'srv', term: 3, commit: 10, applied: p.stale === true ? 9 : 10, voters: ['srv', ctx.peer], learners: [], joint: null }),
  'node.show': (p) => { throw new BlixardError('NotFound', `no node '${p.node}'`) },
  'node.list': () => { throw new RaftError('NotLeader', 'not the leader', 'leader-peer') },
  'vm.create': (p) => {
    if (p.spec.name === 'unsure') throw new BlixardError('Indeterminate', 'the leader changed under the write', undefined, p.idempotencyKey)
    return vm('vm-1', p.spec)
  },
  'vm.show': async (p, ctx) => {
    if (p.vm === 'slow') await new Promise(resolve => { ctx.signal.addEventListener('abort', resolve); setTimeout(resolve, 5000).unref() })
    if (p.vm === 'boom') throw new Error('disk on fire')
    return vm(p.vm)
  },
  // a table of `node` VMs (a number), drawn lazily: as the daemon's vm.list draws the state machine's pages
  'vm.list': (p) => {
    const n = Number(p.node ?? '3')
    return new ListAnswer((function * () { for (let i = 0; i < n; i++) { listDrawn++; yield vm(`vm-${i}`) } })(), 'vm.list (narrow it with --node NODE)')
  },
  'vm.watch': async function * (p, ctx): AsyncGenerator<VmWatchEvent> {
    watchesLive++
    const onChange = (): void => {}
    feed.on('change', onChange)
    try {
      if (p.vm === 'three') {
        for (let i = 0; i < 3; i++) yield { type: 'put', vm: vm(`v${i}`) }
        return
      }
      for (let i = 0; !ctx.signal.aborted; i++) {
        yield { type: 'put', vm: vm(`tick${i}`) }
        await sleep(5)
      }
    } finally {
      watchEnded++
      watchesLive--
      feed.off('change', onChange)
    }
  }
}

test.before(async () => {
  server = await testHost<{ rpc: RpcServer }>({
    services: {
      rpc: rpcServer({
        handlers,
        authorize: (peer) => admins.has(peer),
        log: recordingLogger(logs).log
      })
    }
  })
  client = await testHost()
  other = await testHost()
  admins = new Set([client.peerId.toString()])
  rpc = await RpcClient.connect(client, dialableAddr(server), { timeoutMs: 2000 })
})
test.after(async () => { await Promise.all([server.stop(), client.stop(), other.stop()]) })

test('round trip, with the caller peer id passed to the handler', async () => {
  const st = await rpc.call('cluster.status', {})
  assert.equal(st, { id: 'srv', leader: 'srv', term: 3, commit: 10, applied: 10, voters: ['srv', client.peerId.toString()], learners: [], joint: null })
  assert.is((await rpc.call('cluster.status', { stale: true })).applied, 9)
  assert.equal(await rpc.call('vm.create', { spec }), vm('vm-1'))
})

test('sequential latency and pipelined throughput on loopback', async () => {
  const lat: number[] = []
  for (let i = 0; i < 500; i++) {
    const t0 = performance.now()
    await rpc.call('vm.show', { vm: `x${i}` })
    lat.push(performance.now() - t0)
  }
  const n = 5000
  const t0 = performance.now()
  const all = await Promise.all(Array.from({ length: n }, async (_, i) => await rpc.call('vm.show', { vm: `p${i}` })))
  const secs = (performance.now() - t0) / 1000
  assert.is(all[n - 1].id, `p${n - 1}`)
  console.log(`  rpc sequential p50 ${percentile(lat, 0.5).toFixed(3)} ms p99 ${percentile(lat, 0.99).toFixed(3)} ms; pipelined ${(n / secs).toFixed(0)} req/s (64 in flight)`)
  assert.ok(percentile(lat, 0.5) < 10)
})

test('unknown methods and malformed params get named errors, and the stream keeps serving', async () => {
  const expectErr = async (p: Promise<unknown>, kind: string, needle: string): Promise<void> => {
    try { await p; assert.unreachable('should fail') } catch (err) {
      assert.instance(err, BlixardError)
      assert.is((err as BlixardError).kind, kind, (err as Error).message)
      assert.ok((err as Error).message.includes(needle), (err as Error).message)
    }
  }
  await expectErr(rpc.callRaw('vm.explode', {}), 'UnknownMethod', 'vm.explode')
  await expectErr(rpc.callRaw('admin.list', {}), 'UnknownMethod', 'not served')
  await expectErr(rpc.callRaw('node.show', {}), 'InvalidParams', "missing field 'node'")
  await expectErr(rpc.callRaw('node.show', { node: 7 }), 'InvalidParams', 'params.node')
  await expectErr(rpc.callRaw('vm.show', { vm: 'a', extra: 1 }), 'InvalidParams', "unknown field 'extra'")
  await expectErr(rpc.callRaw('vm.show', 'not an object'), 'InvalidParams', 'expected an object')
  await expectErr(rpc.callRaw('vm.create', { spec: { ...spec, vcpus: 0 } }), 'InvalidSpec', 'vcpus')
  await expectErr(rpc.call('node.show', { node: 'n9' }), 'NotFound', "no node 'n9'")
  await expectErr(rpc.call('vm.show', { vm: 'boom' }), 'Internal', 'disk on fire')
  try { await rpc.call('node.list', {}); assert.unreachable() } catch (err) {
    assert.is((err as BlixardError).kind, 'NotLeader')
    assert.is((err as BlixardError).leader, 'leader-peer')
  }
  assert.ok(rpc.usable)
  assert.is((await rpc.call('vm.show', { vm: 'after' })).id, 'after')
})

test('mutating methods are refused to non-admins', async () => {
  const rpc2 = await RpcClient.connect(other, dialableAddr(server))
  try {
    await rpc2.call('vm.create', { spec })
    assert.unreachable()
  } catch (err) {
    assert.is((err as BlixardError).kind, 'Unauthorized')
  }
  assert.is((await rpc2.call('cluster.status', {})).term, 3) // reads are open
  await rpc2.close()
})

test('an Indeterminate answer carries the idempotency key to retry with, as a field a script can read', async () => {
  const err = await rpc.call('vm.create', { spec: { ...spec, name: 'unsure' }, idempotencyKey: 'key-42' }).then(() => null, (e: unknown) => e)
  assert.ok(err instanceof BlixardError)
  assert.is(err.kind, 'Indeterminate')
  assert.is(err.key, 'key-42')
  assert.equal(err.toJSON(), { kind: 'Indeterminate', message: 'the leader changed under the write', key: 'key-42' })
})

test('per-request timeout, then the client still works', async () => {
  const t0 = Date.now()
  try { await rpc.call('vm.show', { vm: 'slow' }, { timeoutMs: 150 }); assert.unreachable() } catch (err) {
    assert.is((err as BlixardError).kind, 'Timeout')
  }
  assert.ok(Date.now() - t0 < 1000)
  assert.is((await rpc.call('vm.show', { vm: 'ok' })).id, 'ok')
})

test('watch streams results to the end, and cancel stops the server side', async () => {
  const got: string[] = []
  for await (const ev of rpc.watch('vm.watch', { vm: 'three' })) got.push(ev.type === 'put' ? ev.vm.id : ev.id)
  assert.equal(got, ['v0', 'v1', 'v2'])
  const before = watchEnded
  const live: string[] = []
  for await (const ev of rpc.watch('vm.watch', {})) {
    if (ev.type === 'put') live.push(ev.vm.id)
    if (live.length === 5) break // break = cancel
  }
  assert.equal(live, ['tick0', 'tick1', 'tick2', 'tick3', 'tick4'])
  await until(() => watchEnded === before + 1, 2000, 'server-side watch to end')
  // unary calls interleave with a running watch
  const sub = rpc.watch('vm.watch', {})
  const it = sub[Symbol.asyncIterator]()
  assert.ok((await it.next()).done !== true)
  assert.is((await rpc.call('vm.show', { vm: 'mid' })).id, 'mid')
  sub.cancel()
})

/** nothing left of any watch on the server: no generator suspended, no listener, no count */
const watchesGone = (): boolean => watchesLive === 0 && feed.listenerCount('change') === 0 && server.services.rpc.stats().watches === 0

test('a watch the caller does not read past its backlog ends with TooLarge after the items it holds, and its server side ends', async () => {
  // the previous test's cancelled watch ends on its own time: start from none
  await until(watchesGone, 2000, 'earlier watches to end')
  const slow = await RpcClient.connect(client, dialableAddr(server), { timeoutMs: 2000, maxWatchBacklog: 4 })
  try {
    const it = slow.watch('vm.watch', {})[Symbol.asyncIterator]()
    await sleep(200) // ticks every 5 ms arrive unread
    const got: string[] = []
    try {
      for (;;) { const r = await it.next(); if (r.done === true) break; if (r.value.type === 'put') got.push(r.value.vm.id) }
      assert.unreachable('ended without an error')
    } catch (err) {
      assert.is((err as BlixardError).kind, 'TooLarge')
    }
    assert.equal(got, ['tick0', 'tick1', 'tick2', 'tick3', 'tick4'], 'the backlog is delivered before the error')
    // the client's overflow cancel alone ends the server's generator and releases its listener
    await until(watchesGone, 2000, `server-side watch to end after the overflow cancel (live ${watchesLive}, listeners ${feed.listenerCount('change')}, ${JSON.stringify(server.services.rpc.stats())})`)
  } finally { await slow.close() }
  // and a client that closes with a watch running leaves nothing either
  const closing = await RpcClient.connect(client, dialableAddr(server), { timeoutMs: 2000 })
  const it = closing.watch('vm.watch', {})[Symbol.asyncIterator]()
  assert.ok((await it.next()).done !== true)
  assert.is(watchesLive, 1)
  await closing.close()
  await until(watchesGone, 2000, `server-side watch to end after the client closed (live ${watchesLive})`)
})

test('attacker: two key holders open 64 watches and vanish (connections reset): nothing is left on the server', async () => {
  await until(watchesGone, 2000, 'earlier watches to end')
  const base = server.services.rpc.stats()
  const attackers = [await testHost(), await testHost()]
  try {
    // each: 2 streams x 16 watches (the per-stream cap; a watch counts against the 32 requests a
    // connection may have in flight), each read once so that it is running on the server
    const opened = Promise.all(attackers.map(async (a) => {
      const clients = await Promise.all([0, 1].map(async () => await RpcClient.connect(a, dialableAddr(server), { timeoutMs: 2000 })))
      await Promise.all(clients.flatMap(c => Array.from({ length: 16 }, async () => {
        assert.ok((await c.watch('vm.watch', {})[Symbol.asyncIterator]().next()).done !== true)
      })))
    }))
    await Promise.race([opened, sleep(3000).then(() => { throw new Error(`64 watches not all running within 3 s (live ${watchesLive})`) })])
    assert.is(watchesLive, 64)
    assert.is(feed.listenerCount('change'), 64)
    assert.is(server.services.rpc.stats().watches, 64)
    assert.is(server.services.rpc.stats().streams, base.streams + 4)
    // vanish: their connections are reset under their streams, nothing is closed politely
    for (const a of attackers) for (const conn of a.getConnections()) conn.abort(new Error('attacker vanishes'))
    const t0 = Date.now()
    await until(() => watchesGone() && server.services.rpc.stats().streams === base.streams && server.services.rpc.stats().connections === base.connections,
      1000, `the server to release the attackers' watches (live ${watchesLive}, ${JSON.stringify(server.services.rpc.stats())})`)
    const st = server.services.rpc.stats()
    console.log(`  64 watches of two vanished peers released in ${Date.now() - t0} ms; server: ${st.streams} streams, ${st.inflight} in flight, ${st.queuedAnswerBytes} answer bytes queued`)
    assert.is(st.inflight, base.inflight)
    assert.is(st.queuedAnswerBytes, 0)
  } finally { await Promise.all(attackers.map(async a => { await a.stop() })) }
  assert.is((await rpc.call('vm.show', { vm: 'after-vanish' })).id, 'after-vanish')
})

test('attacker: a non-admin asking for a 10-million-VM list gets TooLarge, and the server drew only what fits in one answer', async () => {
  const asker = await RpcClient.connect(other, dialableAddr(server), { timeoutMs: 5000 })
  try {
    const small = await asker.call('vm.list', {})
    assert.equal(small.map(v => v.id), ['vm-0', 'vm-1', 'vm-2'])
    const heap0 = process.memoryUsage().heapUsed
    listDrawn = 0
    const t0 = Date.now()
    const err = await asker.call('vm.list', { node: String(10_000_000) }).then(() => null, (e: unknown) => e)
    const ms = Date.now() - t0
    assert.instance(err, BlixardError)
    assert.is((err as BlixardError).kind, 'TooLarge')
    assert.match((err as Error).message, /^vm\.list \(narrow it with --node NODE\): the answer passed 1048576 bytes after \d+ items/)
    const fit = Number(/after (\d+) items/.exec((err as Error).message)![1])
    console.log(`  10M-VM vm.list refused in ${ms} ms after drawing ${listDrawn} records (${fit} fit in 1 MiB); heap used ${((process.memoryUsage().heapUsed - heap0) / 2 ** 20).toFixed(0)} MiB from before (no GC forced)`)
    // built a record at a time: one past what fits, never the table (10M records would be ~15 GB)
    assert.is(listDrawn, fit + 1)
    assert.ok(ms < 2000, `${ms} ms`)
    assert.ok(asker.usable)
    assert.is((await asker.call('vm.list', { node: '2' })).length, 2)
  } finally { await asker.close() }
})

async function garbage (bytes: Uint8Array): Promise<Stream> {
  const s = await client.dialProtocol(dialableAddr(server), RPC_PROTOCOL)
  s.send(bytes)
  await until(() => s.status !== 'open', 3000, `reset (status ${s.status})`)
  return s
}

test('garbage on /blixard/rpc/1 resets that stream with a named error; the node serves the next request', async () => {
  const cases: Array<[Uint8Array, string]> = [
    [Uint8Array.from([0x03, 0xff, 0xfe, 0xfd]), 'BadMessage'], // undecodable CBOR
    [encodeFrame([1, 2, 3], 1000), 'BadMessage'], // not a request envelope
    [encodeFrame({ id: -1, method: 'x' }, 1000), 'BadMessage'],
    [encodeVarint(64 * 1024 * 1024), 'TooLarge'] // declares a 64 MiB frame
  ]
  for (const [bytes, kind] of cases) {
    logs.length = 0
    const s = await garbage(bytes)
    assert.ok(['reset', 'aborted', 'closed'].includes(s.status), s.status)
    await until(() => logs.some(l => l.msg === 'rpc.stream.rejected'), 2000, 'rejection log')
    assert.is(logs.find(l => l.msg === 'rpc.stream.rejected')!.fields.error, kind)
    const fresh = await RpcClient.connect(client, dialableAddr(server))
    assert.is((await fresh.call('cluster.status', {})).term, 3)
    await fresh.close()
  }
  assert.ok(server.services.rpc.stats().rejectedStreams >= 4)
  assert.is((await rpc.call('vm.show', { vm: 'still' })).id, 'still')
})

test('fuzz: random bytes and random CBOR values on fresh streams never stop the server', async () => {
  const samples = [
    ...fc.sample(fc.uint8Array({ minLength: 1, maxLength: 300 }), { numRuns: 25, seed: 7 }),
    ...fc.sample(fc.anything({ withTypedArray: true, withMap: true }), { numRuns: 25, seed: 8 }).map(v => { try { return encodeFrame(v, 1 << 20) } catch { return Uint8Array.from([1, 0xff]) } })
  ]
  for (const bytes of samples) {
    const s = await client.dialProtocol(dialableAddr(server), RPC_PROTOCOL)
    s.send(bytes)
    await sleep(5)
    s.abort(new Error('done'))
  }
  const fresh = await RpcClient.connect(client, dialableAddr(server))
  assert.is((await fresh.call('cluster.status', {})).term, 3)
  await fresh.close()
  assert.is((await rpc.call('vm.show', { vm: 'alive' })).id, 'alive')
})

test('a dial that fails says why, never "undefined" or "[object Event]": empty messages, every address of an AggregateError, Events, non-Errors', async () => {
  assert.is(dialFailure(new Error('connection refused')), 'connection refused')
  const abort = new Error(''); abort.name = 'AbortError'
  assert.is(dialFailure(abort), 'AbortError')
  assert.is(dialFailure(new AggregateError([new Error('ECONNREFUSED 127.0.0.1:1'), new Error('ECONNREFUSED 127.0.0.1:1'), abort], '')), 'ECONNREFUSED 127.0.0.1:1; AbortError')
  assert.is(dialFailure(undefined), 'the dial failed without a reason')
  assert.is(dialFailure('boom'), 'boom')
  // an Event libp2p rejected with: its error if it carries one, else its type, never "[object Event]"
  const closed = Object.assign(new Event('close'), { error: new Error('stream reset by remote') })
  assert.is(dialFailure(closed), 'stream reset by remote')
  assert.is(dialFailure(new Event('abort')), 'the connection ended (abort event) before the stream opened')
  // a real failed dial: a port nobody listens on
  const a = await testHost()
  try {
    await RpcClient.connect(a, dialableAddr(a).decapsulate('/tcp').encapsulate('/tcp/1'), { dialTimeoutMs: 2_000 })
    assert.unreachable('the dial should fail')
  } catch (err) {
    assert.instance(err, BlixardError)
    assert.match((err as Error).message, /^cannot open an RPC stream: /)
    assert.not.match((err as Error).message, /undefined/)
  } finally { await a.stop() }
})

test('a stream past the per-connection limit fails with an error that names the limit and what to do, and the streams within it serve', async () => {
  const peer = await testHost()
  try {
    // the first opens the connection (concurrent first dials may race to two, and one is closed)
    const clients = [await RpcClient.connect(peer, dialableAddr(server), { timeoutMs: 2000 })]
    clients.push(...await Promise.all(Array.from({ length: RPC_SERVER_STREAMS_PER_CONNECTION - 1 }, async () => await RpcClient.connect(peer, dialableAddr(server), { timeoutMs: 2000 }))))
    await Promise.all(clients.map(async (c) => { assert.is((await c.call('cluster.status', {})).id, 'srv') }))
    // refused while it is negotiated (connect fails) or on its first call, as libp2p's timing goes
    const err = await RpcClient.connect(peer, dialableAddr(server), { timeoutMs: 2000 }).then(async (c) => await c.call('cluster.status', {})).then(() => null, (e: unknown) => e)
    assert.instance(err, BlixardError)
    assert.is((err as BlixardError).kind, 'Unavailable')
    assert.match((err as BlixardError).message, `${RPC_SERVER_STREAMS_PER_CONNECTION} per connection`, (err as BlixardError).message)
    assert.match((err as BlixardError).message, 'close idle clients')
    assert.is((await clients[0].call('cluster.status', {})).id, 'srv')
  } finally {
    await peer.stop()
  }
})

test('a server that goes away fails pending calls with Unavailable', async () => {
  const tmp = await testHost<{ rpc: RpcServer }>({ services: { rpc: rpcServer({ handlers, log: silentLogger }) } })
  const c = await RpcClient.connect(client, dialableAddr(tmp))
  const slow = c.call('vm.show', { vm: 'slow' }).then(() => null, (err: unknown) => err)
  await sleep(50)
  await tmp.stop()
  assert.instance(await slow, BlixardError)
  assert.is((await slow as BlixardError).kind, 'Unavailable')
  assert.not.ok(c.usable)
  try { await c.call('cluster.status', {}); assert.unreachable() } catch (err) { assert.is((err as BlixardError).kind, 'Unavailable') }
})

test.run()
