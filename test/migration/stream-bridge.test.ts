// The migration stream's framing and credit with real libp2p hosts on 127.0.0.1 and plain unix
// sockets standing in for the two QEMUs (no guest needed): bytes written in odd-sized pieces arrive
// whole and in order under the smallest window, both directions, and a window outside the bounds is refused.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { randomBytes, createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testHost } from '../net/helpers.ts'
import { announcedWindow, BRIDGE_WINDOW_BYTES, MAX_BRIDGE_WINDOW_BYTES, MIN_BRIDGE_WINDOW_BYTES, MigrationStreamError, MigrationStreams } from '../../node/migration/stream.ts'

/** what the source "QEMU" writes: enough to cross the window many times, in pieces that never align with a frame */
const TOTAL_BYTES = 6 * 1024 * 1024 + 12_345

/** Two libp2p hosts with the migration stream service, dialled to each other, a scratch dir and a
 * unix-socket server for the "target QEMU"; all of it stopped and removed after `fn`. */
async function withBridge (fn: (b: { dir: string, src: Awaited<ReturnType<typeof testHost>>, dst: Awaited<ReturnType<typeof testHost>>, streams: MigrationStreams[], target: Server }) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'blx-bridge-'))
  const [src, dst] = await Promise.all([testHost(), testHost()])
  const streams = [new MigrationStreams(src), new MigrationStreams(dst)]
  const target = createServer({ allowHalfOpen: true })
  try {
    for (const s of streams) await s.start()
    await src.dial(dst.getMultiaddrs()[0])
    await fn({ dir, src, dst, streams, target })
  } finally {
    target.close()
    for (const s of streams) await s.stop()
    await Promise.all([src.stop(), dst.stop()])
    await rm(dir, { recursive: true, force: true })
  }
}

test('a window a peer announces is checked: absent means the default, outside the bounds is refused', () => {
  assert.is(announcedWindow(undefined), BRIDGE_WINDOW_BYTES)
  assert.is(announcedWindow(MIN_BRIDGE_WINDOW_BYTES), MIN_BRIDGE_WINDOW_BYTES)
  for (const bad of [0, MIN_BRIDGE_WINDOW_BYTES - 1, MAX_BRIDGE_WINDOW_BYTES + 1, 1.5e6 + 0.5, '4194304', -1]) {
    assert.throws(() => announcedWindow(bad), (e: unknown) => e instanceof MigrationStreamError && /window must be/.test(e.message), String(bad))
  }
})

test('odd-sized writes cross the stream whole and in order under the smallest window, and the return path too', async () => {
  await withBridge(async ({ dir, src, dst, streams, target }) => {
    // the "target QEMU": hashes what arrives, answers a short reply on the return path, then ends
    const targetSock = join(dir, 'in.sock')
    const received = new Promise<{ bytes: number, sha: string }>((resolve) => {
      target.on('connection', (s: Socket) => {
        const h = createHash('sha256')
        let bytes = 0
        s.on('data', (d: Buffer) => { h.update(d); bytes += d.length })
        s.on('end', () => { s.end('ACK-FROM-TARGET'); resolve({ bytes, sha: h.digest('hex') }) })
      })
    })
    await new Promise<void>((resolve) => { target.listen(targetSock, resolve) })
    const accepted = streams[1].expect({ id: 'bridge-1', allow: (p) => p.equals(src.peerId), targetSocket: targetSock, windowBytes: MIN_BRIDGE_WINDOW_BYTES })
    accepted.catch(() => {})
    const out = join(dir, 'out.sock')
    const { done } = await streams[0].send({ id: 'bridge-1', peer: dst.peerId, listenSocket: out, windowBytes: MIN_BRIDGE_WINDOW_BYTES })

    // the "source QEMU": writes TOTAL_BYTES in pieces of 1..100 000 bytes, then half-closes
    const payload = randomBytes(TOTAL_BYTES)
    const qemu = createConnection({ path: out, allowHalfOpen: true })
    let reply = ''
    qemu.on('data', (d: Buffer) => { reply += d.toString() })
    await new Promise<void>((resolve) => { qemu.once('connect', resolve) })
    for (let o = 0, i = 0; o < payload.length; i++) {
      const n = Math.min(payload.length - o, 1 + ((i * 7919) % 100_000))
      if (!qemu.write(payload.subarray(o, o + n))) await new Promise((resolve) => qemu.once('drain', resolve))
      o += n
    }
    qemu.end()
    const [sent, got, arrived] = await Promise.all([done, accepted, received])
    await new Promise<void>((resolve) => { if (qemu.readableEnded) resolve(); else qemu.once('end', resolve) })
    assert.is(arrived.bytes, TOTAL_BYTES)
    assert.is(arrived.sha, createHash('sha256').update(payload).digest('hex'), 'the bytes arrive unchanged and in order')
    assert.is(sent.sentBytes, TOTAL_BYTES)
    assert.is(got.receivedBytes, TOTAL_BYTES)
    assert.ok(sent.pauses > 0, `a 256 KiB window must hold the sender back (${sent.pauses} pauses)`)
    assert.is(reply, 'ACK-FROM-TARGET', 'the return path reached the source')
    qemu.destroy()
  })
})

test('the stream opens before the source QEMU connects, and the target waits for a QEMU socket that appears late (connectWaitMs); the timeline is stamped in order', async () => {
  await withBridge(async ({ dir, src, dst, streams, target }) => {
    const targetSock = join(dir, 'late.sock')
    const received = new Promise<number>((resolve) => {
      target.on('connection', (s: Socket) => { let n = 0; s.on('data', (d: Buffer) => { n += d.length }); s.on('end', () => { s.end(); resolve(n) }) })
    })
    // no target socket yet: without connectWaitMs the target would refuse the stream
    const accepted = streams[1].expect({ id: 'late-1', allow: (p) => p.equals(src.peerId), targetSocket: targetSock, connectWaitMs: 5_000 })
    accepted.catch(() => {})
    const out = join(dir, 'out.sock')
    const { done } = await streams[0].send({ id: 'late-1', peer: dst.peerId, listenSocket: out })
    await new Promise((resolve) => setTimeout(resolve, 300))
    await new Promise<void>((resolve) => { target.listen(targetSock, resolve) })
    const qemu = createConnection({ path: out, allowHalfOpen: true })
    await new Promise<void>((resolve) => { qemu.once('connect', resolve) })
    qemu.end(Buffer.alloc(100_000, 7))
    const [sent, got, n] = await Promise.all([done, accepted, received])
    qemu.destroy()
    assert.is(n, 100_000)
    const t = sent.times
    assert.ok(t.streamOpened != null && t.answered != null && t.qemuConnected != null && t.firstByte != null && t.ended != null, JSON.stringify(t))
    assert.ok(t.streamOpened <= t.answered && t.streamOpened < t.qemuConnected, `the stream opened before the QEMU connected, not after: ${JSON.stringify(t)}`)
    assert.ok(t.qemuConnected <= t.firstByte && t.firstByte <= t.ended, JSON.stringify(t))
    assert.ok(got.times.answered != null && got.times.firstByte != null && got.times.answered <= got.times.firstByte, JSON.stringify(got.times))
  })
})

test.run()
