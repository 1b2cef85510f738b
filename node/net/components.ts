// The parts of libp2p's components our services use, typed structurally so a service can be
// started against a real host or a hand-made fake.
import type { AbortOptions, PeerId, PeerStore, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

export interface RegistrarLike {
  handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string, options?: AbortOptions) => Promise<void>
}

export interface ConnectionManagerLike {
  openStream: (peer: PeerId, protocol: string, options?: AbortOptions) => Promise<Stream>
}

export interface NetComponents {
  peerId: PeerId
  registrar: RegistrarLike
  connectionManager: ConnectionManagerLike
  peerStore: PeerStore
}
