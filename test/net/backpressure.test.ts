// Does a yamux stream whose reader stops reading stop its writer? Two real libp2p hosts on
// 127.0.0.1 (the cluster key, noise, yamux as in production): the receiver reads a little, then
// pauses its stream; the sender keeps writing 256 KiB frames with writeFrame, as the RPC server
// and the Raft transport do. The bytes held for that peer on the sender (the stream's write
// buffer) must stay bounded, and a writer that cannot drain must give up after its timeout.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Stream } from '@libp2p/interface'
import { testHost, sleep } from './helpers.ts'
import { writeFrame, readFrames } from '../../node/net/frame-stream.ts'

const PROTO = '/blixard/test-bulk/1'
const FRAME = 256 * 1024

for (const writers of [1, 32]) {
test(`a paused reader stops ${writers} writer(s) on one stream: the sender holds at most about one frame`, async () => {
  const recv = await testHost()
  const send = await testHost()
  const got: { s: Stream | null } = { s: null }
  await recv.handle(PROTO, (s) => { got.s = s })
  try {
    const s = await send.dialProtocol(recv.getMultiaddrs()[0], PROTO)
    // the receiver reads the first frames (so the stream has drained once), then stops reading
    let read = 0
    const reading = (async () => {
      while (got.s == null) await sleep(5)
      const inbound = got.s
      for await (const _ of readFrames(inbound, { maxFrameBytes: 2 * FRAME, maxBuffered: 2 })) {
        if (++read === 8) { inbound.pause(); break }
      }
    })().catch(() => {})
    let written = 0
    let maxHeld = 0
    let failure = null as Error | null
    // sampled on a timer as well as after each write: what the sender holds while writers wait
    const sampler = setInterval(() => { maxHeld = Math.max(maxHeld, s.writeBufferLength) }, 1)
    const payload = new Uint8Array(FRAME - 16)
    // each writer writes until the stream fails or 400 frames in all (100 MiB) have been written
    await Promise.all(Array.from({ length: writers }, async () => {
      while (failure == null && written < 400) {
        try {
          await writeFrame(s, { p: payload }, 2 * FRAME, 1500)
        } catch (err) { failure ??= err as Error; break }
        written++
        maxHeld = Math.max(maxHeld, s.writeBufferLength)
      }
    }))
    clearInterval(sampler)
    await reading
    const heldMiB = maxHeld / 2 ** 20
    process.stderr.write(`${writers} writer(s): receiver read ${read} frames then paused; sender wrote ${written} frames of ${FRAME / 1024} KiB; most held in the sender's write buffer ${heldMiB.toFixed(2)} MiB; writer ${failure != null ? `gave up: ${failure.message}` : 'never blocked'}\n`)
    // written while paused: yamux's window (it grew to 16 MiB while the receiver read fast), then nothing
    assert.ok(written * FRAME < 20 * 2 ** 20, `${written} frames went out to a reader that paused after 8`)
    assert.ok(maxHeld <= 2 * FRAME, `the sender held ${heldMiB.toFixed(1)} MiB for a peer that does not read`)
    assert.ok(failure != null, 'the writer to a peer that does not read times out instead of writing forever')
    s.abort(new Error('test done'))
  } finally {
    await send.stop()
    await recv.stop()
  }
})
}

test.run()
