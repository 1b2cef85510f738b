// The part of sodium-native (libsodium bindings) that Blixard uses: the streaming XSalsa20 of
// crypto_stream (its PRIMITIVE is "xsalsa20") for node/net/pnet.ts, and Ed25519 (crypto_sign)
// for the command signatures of protocols/auth.ts. The package ships no types.
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
  }
  export default sodium
}
