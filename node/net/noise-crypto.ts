// Noise's transport cipher (ChaCha20-Poly1305, IETF: 12-byte nonce, 16-byte tag) on libsodium, the
// library the cluster-key cipher and the command signatures already use. @libp2p/noise's default
// runs messages under 1200 bytes through a WebAssembly build and larger ones through node:crypto,
// which pays for a cipher object per message; Raft frames and RPC answers are mostly a few hundred
// bytes to a few KiB, where libsodium took 0.4-0.7x the time of the default's choice (tmpb probe,
// session 12: 200 B 3.7 -> 1.6 µs, 700 B 6.3 -> 2.4 µs, 4000 B 17.4 -> 5.8 µs). Same algorithm, same
// wire format: peers on the stock Noise crypto interoperate (test/net/noise-crypto.test.ts).
// Key agreement, hashing and HKDF stay the default's (they run once per connection).
import { defaultCrypto } from '@libp2p/noise/crypto'
import type { ICryptoInterface } from '@libp2p/noise'
import type { Uint8ArrayList } from 'uint8arraylist'
import sodium from 'sodium-native'

const TAG = sodium.crypto_aead_chacha20poly1305_ietf_ABYTES

const flat = (b: Uint8Array | Uint8ArrayList): Uint8Array => b instanceof Uint8Array ? b : b.subarray()

export const sodiumNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    const m = flat(plaintext)
    const c = Buffer.allocUnsafe(m.byteLength + TAG)
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt(c, m, ad.byteLength > 0 ? ad : null, null, nonce, k)
    return c
  },
  chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k) {
    const c = flat(ciphertext)
    if (c.byteLength < TAG) throw new Error('Invalid chacha20poly1305 decryption')
    const m = Buffer.allocUnsafe(c.byteLength - TAG)
    try {
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(m, null, c, ad.byteLength > 0 ? ad : null, nonce, k)
    } catch {
      // the stock implementations' message, which Noise's callers know
      throw new Error('Invalid chacha20poly1305 decryption')
    }
    return m
  }
}
