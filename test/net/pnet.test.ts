// The cluster-key protector (node/net/pnet.ts): byte-for-byte the stream @libp2p/pnet's cipher
// produces, interoperable with stock @libp2p/pnet hosts both ways, and no crash on the large
// chunks that kill the stock WASM cipher (scripts/repro-pnet-wasm.mjs).
import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { preSharedKey } from '@libp2p/pnet'
import { testHost, CLUSTER_KEY } from './helpers.ts'
import { XSalsa20Stream, decodeSwarmKey } from '../../node/net/pnet.ts'
import { dialableAddr } from '../../node/net/host.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

const require = createRequire(import.meta.url)
const stockXsalsa20 = require('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (b: Uint8Array) => Uint8Array }

const ECHO = '/blixard-test/echo/1'
const PAYLOAD_BYTES = 3 * 1024 * 1024 // larger than the chunk that makes the stock cipher grow

test('the XSalsa20 stream equals the stock cipher over arbitrary chunk splits', () => {
  const key = randomBytes(32); const nonce = randomBytes(24)
  const ours = new XSalsa20Stream(key, nonce)
  const stock = stockXsalsa20(nonce, key)
  for (const n of [0, 1, 63, 64, 65, 7, 128, 1000, 4096, 3, 70_000, 1]) {
    const chunk = randomBytes(n)
    assert.equal(Buffer.from(ours.update(chunk)), Buffer.from(stock.update(chunk)), `chunk of ${n}`)
  }
})

test('the XSalsa20 stream takes 200 chunks of 900 KiB on 4 streams (the stock WASM cipher dies here)', () => {
  const key = randomBytes(32)
  const streams = Array.from({ length: 4 }, () => new XSalsa20Stream(key, randomBytes(24)))
  const big = new Uint8Array(900 * 1024)
  for (let i = 0; i < 200; i++) assert.is(streams[i % 4].update(big).length, big.length)
})

test('swarm key decoding names what is wrong', () => {
  assert.is(decodeSwarmKey(CLUSTER_KEY).length, 32)
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base16/\nabcd')), /64 hex digits/)
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('nope')), /first line/)
})

async function stockHost (): Promise<Libp2p> {
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: CLUSTER_KEY })
  })
}

async function echoHandler (host: Libp2p): Promise<void> {
  await host.handle(ECHO, async (stream) => {
    for await (const chunk of stream) stream.send(chunk.subarray())
    await stream.close()
  })
}

async function echoThrough (client: Libp2p, server: Multiaddr): Promise<Buffer> {
  const stream = await client.dialProtocol(server, ECHO)
  const payload = randomBytes(PAYLOAD_BYTES)
  const got: Buffer[] = []
  let n = 0
  const reading = (async () => {
    for await (const c of stream) { const b = Buffer.from(c.subarray()); got.push(b); n += b.length; if (n >= PAYLOAD_BYTES) break }
  })()
  for (let off = 0; off < payload.length; off += 256 * 1024) {
    if (!stream.send(payload.subarray(off, off + 256 * 1024))) await stream.onDrain()
  }
  await reading
  const back = Buffer.concat(got)
  assert.ok(back.equals(payload), 'echoed bytes equal the sent bytes')
  await stream.close().catch(() => {})
  return back
}

test('our protector talks to a stock @libp2p/pnet host, dialing and dialed', async () => {
  const ours = await testHost()
  const stock = await stockHost()
  try {
    await echoHandler(ours); await echoHandler(stock)
    await echoThrough(ours, stock.getMultiaddrs()[0]) // we dial, stock answers
    await echoThrough(stock, dialableAddr(ours)) // stock dials, we answer
  } finally {
    await Promise.all([ours.stop(), stock.stop()])
  }
})

test.run()
