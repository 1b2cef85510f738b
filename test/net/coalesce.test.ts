// Frames sent within one turn leave a connection as one socket write (node/net/coalesce.ts), on two
// real libp2p hosts on 127.0.0.1 (cluster key, Noise, yamux as in production). The socket writes
// are counted where they happen (net.Socket.prototype.write, both hosts live in this process); each
// test also checks that every frame arrives, whole and in order, which coalescing must not change.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { testHost, until } from './helpers.ts'
import { readFrames, writeFrame } from '../../node/net/frame-stream.ts'
import { coalescedPending, flushCoalesced, COALESCE_FLUSH_BYTES } from '../../node/net/coalesce.ts'

const PROTO = '/blixard/test-coalesce/1'
const MAX = 1024 * 1024

type Pair = Awaited<ReturnType<typeof pair>>
async function pair (streams: number): Promise<{ out: Stream[], got: unknown[][], done: Promise<void>, stop: () => Promise<void> }> {
  const recv = await testHost()
  const send = await testHost()
  const got: unknown[][] = []
  const reading: Array<Promise<void>> = []
  await recv.handle(PROTO, (s) => {
    const i = got.length
    got.push([])
    reading.push((async () => { for await (const f of readFrames(s, { maxFrameBytes: MAX })) got[i].push(f) })().catch(() => {}))
  })
  const out: Stream[] = []
  for (let i = 0; i < streams; i++) out.push(await send.dialProtocol(recv.getMultiaddrs()[0], PROTO))
  // each stream's first frame opens it on the far side (yamux's SYN goes with it)
  await Promise.all(out.map(async (s, i) => { await writeFrame(s, { hello: i }, MAX) }))
  await until(() => got.length === streams && got.every((g) => g.length === 1), 5000, 'every stream open on the receiver')
  return {
    out,
    got,
    done: Promise.resolve().then(async () => { await Promise.all(reading) }),
    stop: async () => { await send.stop(); await recv.stop() }
  }
}

/** Counts socket writes (calls and bytes) from now until `stop()`. */
function spyWrites (): { writes: () => number, bytes: () => number, stop: () => void } {
  const orig = Socket.prototype.write
  let writes = 0
  let bytes = 0
  Socket.prototype.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    writes++
    const chunk = args[0] as Uint8Array | string
    bytes += typeof chunk === 'string' ? chunk.length : chunk.byteLength
    return orig.apply(this, args)
  } as Socket['write']
  return { writes: () => writes, bytes: () => bytes, stop: () => { Socket.prototype.write = orig } }
}

/** Socket writes made while `fn` runs and until the turn after it ends (the coalesced flush). */
async function countWrites (fn: () => void): Promise<{ writes: number, bytes: number }> {
  const spy = spyWrites()
  try {
    fn()
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
  } finally { spy.stop() }
  return { writes: spy.writes(), bytes: spy.bytes() }
}

const sendAll = (p: Pair, perStream: number, size: number): void => {
  for (let n = 0; n < perStream; n++) {
    for (const [i, s] of p.out.entries()) void writeFrame(s, { i, n, pad: 'x'.repeat(size) }, MAX)
  }
}

test('60 small frames on 6 streams in one turn leave in one socket write, and all arrive in order', async () => {
  const p = await pair(6)
  try {
    const { writes } = await countWrites(() => { sendAll(p, 10, 100) })
    process.stderr.write(`  60 frames of ~120 B on 6 streams: ${writes} socket write(s)\n`)
    // without coalescing each frame is a write of its own (60 here), and every frame the receiver
    // reads sends a window update back
    assert.ok(writes <= 2, `${writes} socket writes for 60 frames sent in one turn`)
    await until(() => p.got.every((g) => g.length === 11), 5000, 'all 60 frames on the receiver')
    for (const g of p.got) {
      const ns = g.slice(1).map((f) => (f as { n: number }).n)
      assert.equal(ns, [...Array(10).keys()], 'each stream\'s frames whole and in order')
    }
  } finally { await p.stop() }
})

test('flushCoalesced() puts what waits on the wire at once (the Raft transport calls it before an fsync)', async () => {
  const p = await pair(1)
  try {
    const spy = spyWrites()
    try {
      for (let n = 0; n < 5; n++) void writeFrame(p.out[0], { n }, MAX)
      assert.is(spy.writes(), 0, 'held until the turn ends')
      assert.ok(coalescedPending() >= 1)
      flushCoalesced()
      assert.is(spy.writes(), 1, 'one write, synchronously')
      assert.is(coalescedPending(), 0)
    } finally { spy.stop() }
    await until(() => p.got[0].length === 6, 5000, 'the 5 frames on the receiver')
  } finally { await p.stop() }
})

test('a bulk send is not held: a list past the flush size goes at once', async () => {
  const p = await pair(1)
  try {
    const spy = spyWrites()
    try {
      void writeFrame(p.out[0], { big: new Uint8Array(COALESCE_FLUSH_BYTES) }, MAX)
      assert.ok(spy.bytes() >= COALESCE_FLUSH_BYTES, `${spy.bytes()} bytes written synchronously`)
    } finally { spy.stop() }
    await until(() => p.got[0].length === 2, 5000, 'the bulk frame on the receiver')
  } finally { await p.stop() }
})

test('a close sends the frames still waiting before the connection goes; an abort with frames waiting does not throw out of the flush', async () => {
  const p = await pair(2)
  try {
    for (let n = 0; n < 3; n++) void writeFrame(p.out[0], { n }, MAX)
    await p.out[0].close()
    await until(() => p.got[0].length === 4, 5000, 'the frames sent right before close')
    let uncaught: Error | null = null
    const onUncaught = (err: Error): void => { uncaught = err }
    process.on('uncaughtException', onUncaught)
    try {
      void writeFrame(p.out[1], { last: true }, MAX).catch(() => {})
      p.out[1].abort(new Error('test: stream aborted with a frame waiting'))
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally { process.off('uncaughtException', onUncaught) }
    assert.is(uncaught, null)
  } finally { await p.stop() }
})

test('a connection closed under frames that wait for the turn: the flush fails them, the process lives', async () => {
  const p = await pair(1)
  let uncaught: Error | null = null
  const onUncaught = (err: Error): void => { uncaught = err }
  process.on('uncaughtException', onUncaught)
  try {
    const w = writeFrame(p.out[0], { n: 1 }, MAX).catch((err: Error) => err)
    // the whole host stops in the same turn: its connections close below the waiting frame
    const stopping = p.stop()
    await new Promise((resolve) => setTimeout(resolve, 100))
    await stopping
    await w
    assert.is(uncaught, null)
  } finally { process.off('uncaughtException', onUncaught) }
})

test.run()
