// Noise's transport cipher on libsodium (node/net/noise-crypto.ts) against @libp2p/noise's own:
// the same bytes both ways at the sizes a connection carries, a tampered message refused, and two
// real hosts — one on the stock crypto, one on ours — exchanging frames over the cluster key.
import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { defaultCrypto } from '@libp2p/noise/crypto'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Uint8ArrayList } from 'uint8arraylist'
import { randomBytes } from 'node:crypto'
import { sodiumNoiseCrypto } from '../../node/net/noise-crypto.ts'
import { clusterKeyProtector } from '../../node/net/pnet.ts'
import { testHost, CLUSTER_KEY } from './helpers.ts'
import { readFrames, writeFrame } from '../../node/net/frame-stream.ts'

const flat = (b: Uint8Array | Uint8ArrayList): Uint8Array => b instanceof Uint8Array ? b : b.subarray()

test('same ciphertext as the stock crypto, each decrypts the other, at 0 B to 64 KiB, with and without associated data', () => {
  const k = crypto.getRandomValues(new Uint8Array(32))
  for (const size of [0, 1, 15, 16, 17, 200, 1199, 1200, 1201, 4000, 65519]) {
    for (const ad of [new Uint8Array(0), crypto.getRandomValues(new Uint8Array(32))]) {
      const nonce = crypto.getRandomValues(new Uint8Array(12))
      const pt = crypto.getRandomValues(new Uint8Array(size))
      const ours = flat(sodiumNoiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))
      const stock = flat(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))
      assert.equal(Buffer.from(ours), Buffer.from(stock), `ciphertext of ${size} B`)
      assert.equal(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k))), Buffer.from(pt))
      assert.equal(Buffer.from(flat(sodiumNoiseCrypto.chaCha20Poly1305Decrypt(stock, nonce, ad, k))), Buffer.from(pt))
      // a list (as Noise hands over a multi-chunk message) encrypts as its bytes
      const list = new Uint8ArrayList(pt.subarray(0, size >> 1), pt.subarray(size >> 1))
      assert.equal(Buffer.from(flat(sodiumNoiseCrypto.chaCha20Poly1305Encrypt(list, nonce, ad, k))), Buffer.from(stock))
    }
  }
})

test('a tampered message, a wrong key or nonce, a message shorter than its tag: refused with the stock message', () => {
  const k = crypto.getRandomValues(new Uint8Array(32))
  const nonce = crypto.getRandomValues(new Uint8Array(12))
  const ad = new Uint8Array(0)
  const c = Buffer.from(flat(sodiumNoiseCrypto.chaCha20Poly1305Encrypt(new Uint8Array(300).fill(9), nonce, ad, k)))
  const bad: Array<[string, () => unknown]> = [
    ['a flipped bit', () => { const t = Buffer.from(c); t[10] ^= 1; return sodiumNoiseCrypto.chaCha20Poly1305Decrypt(t, nonce, ad, k) }],
    ['a flipped tag bit', () => { const t = Buffer.from(c); t[t.length - 1] ^= 1; return sodiumNoiseCrypto.chaCha20Poly1305Decrypt(t, nonce, ad, k) }],
    ['another key', () => sodiumNoiseCrypto.chaCha20Poly1305Decrypt(c, nonce, ad, crypto.getRandomValues(new Uint8Array(32)))],
    ['another nonce', () => sodiumNoiseCrypto.chaCha20Poly1305Decrypt(c, crypto.getRandomValues(new Uint8Array(12)), ad, k)],
    ['15 bytes', () => sodiumNoiseCrypto.chaCha20Poly1305Decrypt(c.subarray(0, 15), nonce, ad, k)]
  ]
  for (const [what, f] of bad) assert.throws(f, /Invalid chacha20poly1305 decryption/, what)
})

test('a host on the stock Noise crypto and one on ours talk over the cluster key, both ways', async () => {
  const ours = await testHost()
  const stock = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: clusterKeyProtector({ psk: CLUSTER_KEY })
  })
  const PROTO = '/blixard/test-noise-echo/1'
  const echo = async (s: import('@libp2p/interface').Stream): Promise<void> => {
    for await (const f of readFrames(s, { maxFrameBytes: 1 << 20 })) await writeFrame(s, f, 1 << 20)
  }
  await ours.handle(PROTO, (s) => { void echo(s).catch(() => {}) })
  await stock.handle(PROTO, (s) => { void echo(s).catch(() => {}) })
  try {
    for (const [from, to] of [[stock, ours], [ours, stock]] as const) {
      const s = await from.dialProtocol(to.getMultiaddrs()[0], PROTO)
      const payload = new Uint8Array(randomBytes(70_000))
      await writeFrame(s, { p: payload, n: 1 }, 1 << 20)
      for await (const f of readFrames(s, { maxFrameBytes: 1 << 20 })) {
        assert.equal(Buffer.from((f as { p: Uint8Array }).p), Buffer.from(payload))
        break
      }
      s.abort(new Error('done'))
    }
  } finally {
    await stock.stop()
    await ours.stop()
  }
})

test.run()
