// The cluster-key connection protector: the same `/key/swarm/psk/1.0.0` wire format as
// @libp2p/pnet (each side sends a random 24-byte nonce, then every byte in each direction is
// XORed with the XSalsa20 stream keyed by the 32-byte PSK and the sender's nonce), so a node with
// this protector talks to stock @libp2p/pnet peers both ways (test/net/pnet.test.ts).
//
// Why our own: @libp2p/pnet's cipher (the `xsalsa20` package) runs in WebAssembly with a memory
// capped at 62.5 MiB. Its `update` keeps a view of that memory per cipher; once any cipher grows the
// memory (one chunk above ~640 KiB), every other cipher's view is detached, reads as length 0 and
// grows the memory again by the whole chunk on its next call — a few large writes on a few
// connections hit the cap and the node dies with `WebAssembly.Memory.grow(): Maximum memory size
// exceeded` (scripts/repro-pnet-wasm.mjs reproduces it with the cipher alone). Here the keystream
// comes from libsodium (sodium-native): its streaming XSalsa20 state (crypto_stream_xor_init/update)
// lives in a small buffer per direction, the output is written into a fresh buffer per chunk, and
// nothing is shared between connections; native code, ~5x the stock cipher's speed (bench:cipher).
import type { ConnectionProtector, MultiaddrConnection, AbortOptions, Logger } from '@libp2p/interface'
import { InvalidParametersError } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { AbstractMultiaddrConnectionInit, SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import sodium from 'sodium-native'

export const PSK_NONCE_BYTES = 24
export const PSK_KEY_BYTES = 32
/** How long the nonce exchange may take before the connection is dropped (ms); as @libp2p/pnet. */
export const PSK_HANDSHAKE_TIMEOUT_MS = 1000

/** One direction of the XSalsa20 stream: XORs successive chunks as one continuous stream (libsodium
 * keeps the position, so chunks need not be block-aligned). */
export class XSalsa20Stream {
  private readonly state: Buffer
  constructor (key: Uint8Array, nonce: Uint8Array) {
    if (key.length !== PSK_KEY_BYTES) throw new Error(`XSalsa20 key must be ${PSK_KEY_BYTES} bytes, got ${key.length}`)
    if (nonce.length !== PSK_NONCE_BYTES) throw new Error(`XSalsa20 nonce must be ${PSK_NONCE_BYTES} bytes, got ${nonce.length}`)
    this.state = Buffer.alloc(sodium.crypto_stream_xor_STATEBYTES)
    sodium.crypto_stream_xor_init(this.state, Buffer.from(nonce), Buffer.from(key))
  }

  update (input: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(input.length)
    sodium.crypto_stream_xor_update(this.state, out, input)
    return out
  }

  /** XORs `buf` in place: only for bytes nobody else holds (a socket's fresh read buffer). */
  updateInPlace (buf: Uint8Array): Uint8Array {
    sodium.crypto_stream_xor_update(this.state, buf, buf)
    return buf
  }

  /** The chunks of a list, encrypted into one fresh buffer: one copy, not a concat and then another. */
  updateList (chunks: Iterable<Uint8Array>, length: number): Uint8Array {
    const out = Buffer.allocUnsafe(length)
    let o = 0
    for (const c of chunks) {
      sodium.crypto_stream_xor_update(this.state, out.subarray(o, o + c.byteLength), c)
      o += c.byteLength
    }
    return out
  }
}

interface BoxInit extends Omit<AbstractMultiaddrConnectionInit, 'remoteAddr' | 'direction'> {
  maConn: MultiaddrConnection
  psk: Uint8Array
  localNonce: Uint8Array
  remoteNonce: Uint8Array
}

/** The connection after the nonce exchange: decrypts what arrives, encrypts what is sent. */
class PskConnection extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly inbound: XSalsa20Stream
  private readonly outbound: XSalsa20Stream

  constructor (init: BoxInit) {
    super({ ...init, remoteAddr: init.maConn.remoteAddr, direction: init.maConn.direction })
    this.maConn = init.maConn
    this.inbound = new XSalsa20Stream(init.psk, init.remoteNonce)
    this.outbound = new XSalsa20Stream(init.psk, init.localNonce)
    this.maConn.addEventListener('message', (evt) => {
      const data: Uint8Array | Uint8ArrayList = evt.data
      // the transport's read buffers are fresh per read and handed on to nobody else: decrypting
      // them in place saves an allocation and a copy per chunk (bulk streams, migrations, feel it)
      if (data instanceof Uint8Array) this.onData(this.inbound.updateInPlace(data))
      else for (const buf of data) this.onData(this.inbound.updateInPlace(buf))
    })
    this.maConn.addEventListener('drain', () => { this.onMuxerDrain() })
    this.maConn.addEventListener('close', (evt) => {
      if (evt.error == null) this.onTransportClosed()
      else if (evt.local) this.abort(evt.error)
      else this.onRemoteReset()
    })
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.maConn.close(options)
  }

  sendData (data: Uint8ArrayList): SendResult {
    // never in place: what is sent may be a buffer the sender keeps (a cached protocol header)
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(this.outbound.updateList(data, data.byteLength)) }
  }

  sendReset (err: Error): void { this.maConn.abort(err) }
  sendPause (): void { this.maConn.pause() }
  sendResume (): void { this.maConn.resume() }
}

/** Parses a v1 swarm key file: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits. */
export function decodeSwarmKey (file: Uint8Array): Uint8Array {
  const lines = new TextDecoder().decode(file).split(/\r\n|\r|\n/)
  if (lines[0] !== '/key/swarm/psk/1.0.0/') throw new Error(`cluster key: first line must be /key/swarm/psk/1.0.0/, got ${JSON.stringify(lines[0]?.slice(0, 40))}`)
  if (lines[1] !== '/base16/') throw new Error(`cluster key: second line must be /base16/, got ${JSON.stringify(lines[1]?.slice(0, 40))}`)
  const hex = (lines[2] ?? '').trim()
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error('cluster key: third line must be 64 hex digits (a 32-byte key)')
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

class PskProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'blixard/pnet'
  constructor (private readonly psk: Uint8Array, private readonly timeoutMs: number) {}

  async protect (connection: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
    if (connection == null) throw new InvalidParametersError('no connection to protect')
    const log: Logger = connection.log.newScope('pnet')
    const localNonce = crypto.getRandomValues(new Uint8Array(PSK_NONCE_BYTES))
    const opts = options ?? { signal: AbortSignal.timeout(this.timeoutMs) }
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([
      bytes.read({ bytes: PSK_NONCE_BYTES, ...opts }),
      bytes.write(localNonce, opts)
    ])
    log('exchanged nonces')
    return new PskConnection({ localNonce, remoteNonce: remote.subarray(), psk: this.psk, maConn: bytes.unwrap(), log })
  }
}

/** libp2p `connectionProtector` factory, a drop-in for @libp2p/pnet's preSharedKey. */
export function clusterKeyProtector (init: { psk: Uint8Array, timeoutMs?: number }): () => ConnectionProtector {
  const key = decodeSwarmKey(init.psk)
  return () => new PskProtector(key, init.timeoutMs ?? PSK_HANDSHAKE_TIMEOUT_MS)
}
