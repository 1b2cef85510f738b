import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { streamPair } from '@libp2p/utils'
import { readFrames, writeFrame, partialFrameBytes } from '../../node/net/frame-stream.ts'
import { encodeVarint } from '../../protocols/framing.ts'
import { BlixardError, isWireError } from '../../protocols/errors.ts'

test('frames arrive in order and the reader ends when the writer half-closes', async () => {
  const [out, inb] = await streamPair()
  const n = 2000
  const writing = (async () => {
    for (let i = 0; i < n; i++) await writeFrame(out, { i, pad: 'x'.repeat(i % 50) }, 1 << 20)
    await out.close()
  })()
  const got: number[] = []
  let sawPause = false
  for await (const v of readFrames(inb, { maxFrameBytes: 1 << 20, maxBuffered: 8 })) {
    got.push((v as { i: number }).i)
    if (inb.readStatus === 'paused') sawPause = true
    if (got.length % 20 === 0) await new Promise(resolve => setTimeout(resolve, 2)) // a slow consumer
  }
  await writing
  assert.is(got.length, n)
  assert.ok(got.every((v, i) => v === i))
  assert.ok(sawPause, 'a slow consumer pauses the stream instead of buffering without bound')
})

test('a partial frame that stalls resets the stream after the frame timeout and releases its bytes', async () => {
  const [out, inb] = await streamPair()
  const before = partialFrameBytes()
  out.send(encodeVarint(5000))
  out.send(new Uint8Array(1000)) // a fifth of the body, then silence
  const t0 = Date.now()
  try {
    for await (const _ of readFrames(inb, { maxFrameBytes: 10_000, frameTimeoutMs: 200 })) assert.unreachable('no frame expected')
    assert.unreachable('should throw')
  } catch (err) {
    assert.match((err as Error).message, /not completed within 200 ms/)
  }
  assert.ok(Date.now() - t0 >= 190 && Date.now() - t0 < 2000, `reset after ${Date.now() - t0} ms`)
  assert.is(inb.status, 'aborted')
  assert.is(partialFrameBytes(), before, 'the stalled bytes no longer count')
})

test('a frame declared over the limit resets the stream with TooLarge', async () => {
  const [out, inb] = await streamPair()
  out.send(encodeVarint(5000))
  try {
    for await (const _ of readFrames(inb, { maxFrameBytes: 1000 })) assert.unreachable('no frame expected')
    assert.unreachable('should throw')
  } catch (err) {
    assert.ok(isWireError(err), String(err))
    assert.is((err as BlixardError).kind, 'TooLarge')
  }
  assert.is(inb.status, 'aborted')
})

test('a stream ending inside a frame is an error, not a silent end', async () => {
  const [out, inb] = await streamPair()
  out.send(Uint8Array.from([10, 1, 2])) // says 10 bytes, gives 2
  await out.close()
  try {
    for await (const _ of readFrames(inb, { maxFrameBytes: 1000 })) assert.unreachable()
    assert.unreachable('should throw')
  } catch (err) {
    assert.match((err as Error).message, 'inside a frame')
  }
})

test.run()
