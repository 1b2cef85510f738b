// The part of sodium-native (libsodium bindings) that Blixard uses: the streaming XSalsa20 of
// crypto_stream (its PRIMITIVE is "xsalsa20") for node/net/pnet.ts, and Ed25519 (crypto_sign)
// for the command signatures of protocols/auth.ts, and ChaCha20-Poly1305 (IETF) for Noise's
// transport messages (node/net/noise-crypto.ts). The package ships no types.
declare module 'sodium-native' {
  const sodium: {
    crypto_stream_PRIMITIVE: string
    crypto_stream_xor_STATEBYTES: number
    crypto_stream_xor_init: (state: Buffer, nonce: Buffer, key: Buffer) => void
    crypto_stream_xor_update: (state: Buffer, out: Uint8Array, input: Uint8Array) => void
    crypto_sign_BYTES: number
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    crypto_sign_SEEDBYTES: number
    crypto_sign_seed_keypair: (pk: Uint8Array, sk: Uint8Array, seed: Uint8Array) => void
    crypto_sign_detached: (sig: Uint8Array, message: Uint8Array, sk: Uint8Array) => void
    crypto_sign_verify_detached: (sig: Uint8Array, message: Uint8Array, pk: Uint8Array) => boolean
    crypto_aead_chacha20poly1305_ietf_ABYTES: number
    /** returns the ciphertext length; ad and nsec may be null */
    crypto_aead_chacha20poly1305_ietf_encrypt: (c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array) => number
    /** returns the message length; throws when the tag does not verify */
    crypto_aead_chacha20poly1305_ietf_decrypt: (m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array) => number
  }
  export default sodium
}
