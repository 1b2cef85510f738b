// The part of sodium-native (libsodium bindings) that node/net/pnet.ts uses: the streaming
// XSalsa20 of crypto_stream (its PRIMITIVE is "xsalsa20"). The package ships no types.
declare module 'sodium-native' {
  const sodium: {
    crypto_stream_PRIMITIVE: string
    crypto_stream_xor_STATEBYTES: number
    crypto_stream_xor_init: (state: Buffer, nonce: Buffer, key: Buffer) => void
    crypto_stream_xor_update: (state: Buffer, out: Uint8Array, input: Uint8Array) => void
  }
  export default sodium
}
