// yamux returns receive credit once half a window is consumed, not after every data frame
// (node/net/yamux-window.ts), on two real libp2p hosts on 127.0.0.1 (cluster key, Noise, yamux as
// in production). Socket writes are counted where they happen (net.Socket.prototype.write; both
// hosts live in this process). Each exchange also checks that every frame arrives whole and in
// order, and a bulk transfer of many windows still completes: the sender never stalls.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import { pushable } from 'it-pushable'
import { testHost } from './helpers.ts'
import { readFrames, writeFrame } from '../../node/net/frame-stream.ts'

const PROTO = '/blixard/test-window/1'
const MAX = 1024 * 1024

function spyWrites (): { writes: () => number, stop: () => void } {
  const orig = Socket.prototype.write
  let writes = 0
  Socket.prototype.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    writes++
    return orig.apply(this, args)
  } as Socket['write']
  return { writes: () => writes, stop: () => { Socket.prototype.write = orig } }
}

const nextTurn = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 1)) }

test('one-way streams in ping-pong (as the Raft transport uses them): one socket write per message, no window update after each', async () => {
  const a = await testHost()
  const b = await testHost()
  try {
    // each host sends on its own stream and reads the other's, like a Raft peer pair
    const atA = pushable<unknown>({ objectMode: true })
    const atB = pushable<unknown>({ objectMode: true })
    const reader = (into: typeof atA) => (s: Stream): void => { void (async () => { for await (const f of readFrames(s, { maxFrameBytes: MAX })) into.push(f) })().catch(() => {}) }
    await a.handle(PROTO, reader(atA))
    await b.handle(PROTO, reader(atB))
    const ab = await a.dialProtocol(b.getMultiaddrs()[0], PROTO)
    const ba = await b.dialProtocol(a.getMultiaddrs()[0], PROTO)
    const payload = 'x'.repeat(600) // about a MsgApp of one signed command
    await writeFrame(ab, { i: -1, payload }, MAX)
    await writeFrame(ba, { i: -1, payload }, MAX)
    const inB = atB[Symbol.asyncIterator]()
    const inA = atA[Symbol.asyncIterator]()
    await inB.next()
    await inA.next()
    await nextTurn()
    const ROUNDS = 100
    const spy = spyWrites()
    try {
      for (let i = 0; i < ROUNDS; i++) {
        await writeFrame(ab, { i, payload }, MAX)
        const got = await inB.next()
        assert.equal(got.value, { i, payload })
        await nextTurn() // the answer leaves in a later turn (a Raft peer persists first)
        await writeFrame(ba, { i, payload }, MAX)
        assert.equal((await inA.next()).value, { i, payload })
        await nextTurn()
      }
    } finally { spy.stop() }
    const perMessage = spy.writes() / (2 * ROUNDS)
    console.log(`  ${ROUNDS} round trips on one-way streams: ${spy.writes()} socket writes, ${perMessage.toFixed(2)} per message (every-frame updates: about 2)`)
    assert.ok(perMessage <= 1.1, `socket writes per message: ${perMessage.toFixed(2)} (a window update after each frame would make it ~2)`)
  } finally { await a.stop(); await b.stop() }
})

test('a bulk transfer of 40 windows on one stream completes, every byte in order (the sender gets credit back in time)', async () => {
  const recv = await testHost()
  const send = await testHost()
  try {
    let bytes = 0
    let frames = 0
    let inOrder = true
    let done!: () => void
    const finished = new Promise<void>((resolve) => { done = resolve })
    const FRAMES = 160
    const chunk = 'y'.repeat(64 * 1024) // 160 x 64 KiB = 10 MiB = 40 initial 256 KiB windows
    await recv.handle(PROTO, (s) => {
      void (async () => {
        for await (const f of readFrames(s, { maxFrameBytes: MAX })) {
          const m = f as { i: number, chunk: string }
          if (m.i !== frames) inOrder = false
          frames++
          bytes += m.chunk.length
          if (frames === FRAMES) done()
        }
      })().catch(() => {})
    })
    const s = await send.dialProtocol(recv.getMultiaddrs()[0], PROTO)
    const t0 = Date.now()
    for (let i = 0; i < FRAMES; i++) await writeFrame(s, { i, chunk }, MAX)
    let timer: NodeJS.Timeout | undefined
    const stalled = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`stalled: ${frames} of ${FRAMES} frames in 60 s`)) }, 60_000) })
    await Promise.race([finished, stalled]).finally(() => { clearTimeout(timer) })
    assert.ok(inOrder)
    assert.is(bytes, FRAMES * chunk.length)
    console.log(`  ${(bytes / 2 ** 20).toFixed(0)} MiB in ${Date.now() - t0} ms`)
  } finally { await send.stop(); await recv.stop() }
})

test.run()
