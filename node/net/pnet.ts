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
// comes from @noble/ciphers (plain JS, no shared memory, no size limit), computed per call.
import type { ConnectionProtector, MultiaddrConnection, AbortOptions, Logger } from '@libp2p/interface'
import { InvalidParametersError } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { AbstractMultiaddrConnectionInit, SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import { xsalsa20 } from '@noble/ciphers/salsa.js'

export const PSK_NONCE_BYTES = 24
export const PSK_KEY_BYTES = 32
/** XSalsa20 produces its keystream in 64-byte blocks; the block counter addresses them. */
const BLOCK = 64
/** How long the nonce exchange may take before the connection is dropped (ms); as @libp2p/pnet. */
export const PSK_HANDSHAKE_TIMEOUT_MS = 1000

/**
 * One direction of the XSalsa20 stream: XORs successive chunks as one continuous stream.
 * Holds the unused tail of the last keystream block so chunks need not be block-aligned.
 */
export class XSalsa20Stream {
  private block = 0 // index of the next whole block to generate
  private rest: Uint8Array = new Uint8Array(0) // unused keystream bytes of the previous block
  constructor (private readonly key: Uint8Array, private readonly nonce: Uint8Array) {
    if (key.length !== PSK_KEY_BYTES) throw new Error(`XSalsa20 key must be ${PSK_KEY_BYTES} bytes, got ${key.length}`)
    if (nonce.length !== PSK_NONCE_BYTES) throw new Error(`XSalsa20 nonce must be ${PSK_NONCE_BYTES} bytes, got ${nonce.length}`)
  }

  update (input: Uint8Array): Uint8Array {
    const out = new Uint8Array(input.length)
    let i = 0
    // 1. finish the previous partial block
    const head = Math.min(this.rest.length, input.length)
    for (; i < head; i++) out[i] = input[i]! ^ this.rest[i]!
    this.rest = this.rest.subarray(head)
    // 2. whole blocks in one call
    const whole = Math.floor((input.length - i) / BLOCK) * BLOCK
    if (whole > 0) {
      out.set(xsalsa20(this.key, this.nonce, input.subarray(i, i + whole), undefined, this.block), i)
      this.block += whole / BLOCK
      i += whole
    }
    // 3. start a new block for the tail and keep what it does not use
    if (i < input.length) {
      const ks = xsalsa20(this.key, this.nonce, new Uint8Array(BLOCK), undefined, this.block)
      this.block += 1
      const n = input.length - i
      for (let j = 0; j < n; j++) out[i + j] = input[i + j]! ^ ks[j]!
      this.rest = ks.subarray(n)
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
      if (data instanceof Uint8Array) this.onData(this.inbound.update(data))
      else for (const buf of data) this.onData(this.inbound.update(buf))
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
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(this.outbound.update(data.subarray())) }
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
