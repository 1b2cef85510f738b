// The libp2p host of a Blixard node: one createLibp2p with TCP, Noise, Yamux, pnet (the cluster
// key), identify, ping, Kademlia (/blixard prefix, server mode: we run on a LAN), gossipsub and
// optional mDNS, plus the caller's own services (Raft transport, RPC, load gossip).
import type { Libp2p, PrivateKey, ServiceMap, PeerId } from '@libp2p/interface'
import type { ServiceFactoryMap } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { clusterKeyProtector } from './pnet.ts'
import { mdns } from '@libp2p/mdns'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import type { KadDHT } from '@libp2p/kad-dht'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import {
  DIAL_TIMEOUT_MS, STREAM_READ_BUFFER_BYTES, INBOUND_UPGRADE_TIMEOUT_MS, MAX_INCOMING_PENDING_CONNECTIONS,
  INBOUND_CONNECTIONS_PER_IP_PER_S, MAX_CONNECTIONS, MAX_PARALLEL_DIALS
} from '../../protocols/limits.ts'

/** yamux's own cap on a stream's window (its MAX_STREAM_WINDOW) */
const YAMUX_MAX_STREAM_WINDOW = 16 * 1024 * 1024
/** Kademlia protocol id: our own DHT, never joined with the public IPFS one. */
export const DHT_PROTOCOL = '/blixard/kad/1.0.0'
/** mDNS service tag, so Blixard nodes find each other and nothing else. */
export const MDNS_SERVICE_TAG = 'blixard.local'

export interface CoreServices extends ServiceMap {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

/** A service factory as libp2p takes it: `(components) => service`. */
export type ServiceFactories<S extends ServiceMap> = { [K in keyof S]: (components: never) => S[K] }

export type BlixardHost<S extends ServiceMap = ServiceMap> = Libp2p<CoreServices & S>

export interface BlixardHostOptions<S extends ServiceMap> {
  /** persistent identity (node/identity.ts) */
  privateKey: PrivateKey
  /** the cluster key file's bytes (node/keygen.ts readClusterKey) */
  clusterKey: Uint8Array
  /** multiaddrs to listen on; default one TCP port on 127.0.0.1 chosen by the OS */
  listen?: string[]
  /** peers to dial at start and redial while unconnected (multiaddrs ending in /p2p/<id>) */
  bootstrap?: string[]
  /** multicast discovery on the LAN. Default off: never enable it in the host's own network
   * namespace in tests (it would multicast out of the machine). */
  mdns?: boolean
  /** mDNS query interval (ms); default 10 s as in @libp2p/mdns */
  mdnsIntervalMs?: number
  /** overall dial timeout (ms); default DIAL_TIMEOUT_MS. pnet mismatches often surface only here. */
  dialTimeoutMs?: number
  /** gossipsub heartbeat (ms); default 1000. The mesh forms on heartbeats, tests shorten it. */
  gossipHeartbeatMs?: number
  /** how often unconnected bootstrap peers are redialed (ms); default 2000 */
  bootstrapRedialMs?: number
  /** yamux's initial receive window per stream (bytes); default yamux's 256 KiB. A bulk stream
   * (a migration) moves at most one window per round trip through both event loops. */
  streamWindowBytes?: number
  /** our own services, composed into the same createLibp2p */
  services?: ServiceFactories<S>
}

/** Creates and starts a host. Stop it with `host.stop()`. */
export async function createBlixardHost<S extends ServiceMap = Record<string, never>> (opts: BlixardHostOptions<S>): Promise<BlixardHost<S>> {
  const dialTimeout = opts.dialTimeoutMs ?? DIAL_TIMEOUT_MS
  const bootstrap = (opts.bootstrap ?? []).map(a => multiaddr(a))
  const host = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({
      streamOptions: {
        maxReadBufferLength: STREAM_READ_BUFFER_BYTES,
        ...(opts.streamWindowBytes != null ? { initialStreamWindowSize: opts.streamWindowBytes, maxStreamWindowSize: Math.max(opts.streamWindowBytes, YAMUX_MAX_STREAM_WINDOW) } : {})
      }
    })],
    // our own protector: same wire format as @libp2p/pnet, without its WASM cipher's memory cap (pnet.ts)
    connectionProtector: clusterKeyProtector({ psk: opts.clusterKey }),
    // keyless sockets must not block keyed peers: short upgrade timeout, more pending slots, a
    // per-IP rate and overall caps (protocols/limits.ts says why each value)
    connectionManager: {
      dialTimeout,
      addressDialTimeout: dialTimeout,
      inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS,
      maxIncomingPendingConnections: MAX_INCOMING_PENDING_CONNECTIONS,
      inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_IP_PER_S,
      maxConnections: MAX_CONNECTIONS,
      maxParallelDials: MAX_PARALLEL_DIALS
    },
    peerDiscovery: opts.mdns === true ? [mdns({ serviceTag: MDNS_SERVICE_TAG, interval: opts.mdnsIntervalMs ?? 10_000 })] : [],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper, allowQueryWithZeroPeers: true }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        heartbeatInterval: opts.gossipHeartbeatMs ?? 1000
      }),
      ...(opts.services ?? {})
    } as unknown as ServiceFactoryMap<CoreServices & S>
  })

  // Discovered peers (mDNS, DHT) are dialed so that Raft, gossip and RPC can reach them.
  host.addEventListener('peer:discovery', (evt) => {
    const id = evt.detail.id
    if (id.equals(host.peerId) || host.getConnections(id).length > 0) return
    host.dial(id).catch(() => { /* discovery is best effort; the next announcement retries */ })
  })

  if (bootstrap.length > 0) startBootstrap(host, bootstrap, opts.bootstrapRedialMs ?? 2000)
  return host
}

/** Dials bootstrap peers now, then redials the unconnected ones until the host stops. */
function startBootstrap (host: Libp2p, addrs: Multiaddr[], everyMs: number): void {
  const dialAll = (): void => {
    if (host.status !== 'started') return
    for (const a of addrs) {
      const id = a.getComponents().find(c => c.name === 'p2p')?.value
      if (id != null && (id === host.peerId.toString() || host.getConnections().some(c => c.remotePeer.toString() === id))) continue
      host.dial(a).catch(() => { /* retried on the next round */ })
    }
  }
  dialAll()
  const timer = setInterval(dialAll, everyMs)
  timer.unref()
  host.addEventListener('stop', () => clearInterval(timer), { once: true })
}

/** The first address of a host that others can dial, with its /p2p/ suffix. */
export function dialableAddr (host: { getMultiaddrs: () => Multiaddr[], peerId: PeerId }): Multiaddr {
  const a = host.getMultiaddrs()[0]
  if (a == null) throw new Error('host has no listen address')
  return a
}
