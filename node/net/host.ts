// The libp2p host of a Blixard node: one createLibp2p with TCP, Noise, Yamux, pnet (the cluster
// key), identify, ping, Kademlia (/blixard prefix, server mode: we run on a LAN), gossipsub and
// optional mDNS, plus the caller's own services (Raft transport, RPC, load gossip).
//
// Discovery: mDNS finds peers on the LAN; beyond it, Kademlia. A host that connects to its first
// DHT peer (a bootstrap address) looks itself up, and every peer that lookup meets is a discovery
// (dialed below). reachPeer() finds a peer whose known addresses fail through the DHT: the
// members connected to it answer with where it is now. pnet keeps the DHT ours: only holders of
// the cluster key ever connect, so only they fill our routing table or answer our queries.
import type { Libp2p, PrivateKey, ServiceMap, PeerId } from '@libp2p/interface'
import type { ServiceFactoryMap } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { coalescing } from './coalesce.ts'
import { halfWindowUpdates } from './yamux-window.ts'
import { sodiumNoiseCrypto } from './noise-crypto.ts'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { clusterKeyProtector } from './pnet.ts'
// mDNS, Kademlia and gossipsub are imported only by a host that runs them: a CLI runs none of them
// (most commands), and they are a third of the code a CLI start would otherwise load
import type { KadDHT, SingleKadDHT } from '@libp2p/kad-dht'
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
/** Kademlia's k: peers kept per bucket (and returned per FIND_NODE answer). */
export const DHT_K_BUCKET_SIZE = 20
/** Depth of the routing table's trie in bits: with k it bounds the table (DHT_MAX_PEERS). 4 bits
 * instead of kad-dht's 6: a cluster has hundreds of nodes, not the public DHT's millions. */
export const DHT_PREFIX_LENGTH = 4
/** the most peers our routing table holds, however many connect: 2^prefix × k */
export const DHT_MAX_PEERS = (2 ** DHT_PREFIX_LENGTH) * DHT_K_BUCKET_SIZE
/** one DHT lookup of a peer gives up after this (ms) */
export const DHT_FIND_PEER_TIMEOUT_MS = 5_000
/** the self-lookup that finds the members behind a bootstrap peer gives up after this (ms) */
export const DHT_JOIN_LOOKUP_TIMEOUT_MS = 5_000
/** after the routing table last emptied, the next first peer triggers a join lookup no sooner than this (ms) */
export const DHT_JOIN_LOOKUP_MIN_GAP_MS = 10_000

export interface CoreServices extends ServiceMap {
  identify: Identify
  ping: Ping
  /** absent when the host was created with `dht: 'off'` (the bench's baseline, a CLI) */
  dht?: KadDHT
  /** absent when the host was created with `pubsub: false` (a CLI) */
  pubsub?: GossipSub
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
  /** Kademlia: 'server' (a node: answers queries, default), 'client' (a CLI or probe: asks, and
   * never enters the nodes' routing tables, which it would leave at once), 'off' (no DHT at all) */
  dht?: 'server' | 'client' | 'off'
  /** gossipsub (load reports travel on it); default on. A CLI has no use for it. */
  pubsub?: boolean
  /** our own services, composed into the same createLibp2p */
  services?: ServiceFactories<S>
}

/** Creates and starts a host. Stop it with `host.stop()`. */
export async function createBlixardHost<S extends ServiceMap = Record<string, never>> (opts: BlixardHostOptions<S>): Promise<BlixardHost<S>> {
  const dialTimeout = opts.dialTimeoutMs ?? DIAL_TIMEOUT_MS
  const bootstrap = (opts.bootstrap ?? []).map(a => multiaddr(a))
  // yamux returns credit at half a window, not after every frame (yamux-window.ts says why)
  halfWindowUpdates()
  const [mdnsMod, dhtMod, pubsubMod] = await Promise.all([
    opts.mdns === true ? import('@libp2p/mdns') : null,
    opts.dht === 'off' ? null : import('@libp2p/kad-dht'),
    opts.pubsub === false ? null : import('@libp2p/gossipsub')
  ])
  const host = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: sodiumNoiseCrypto })],
    // one write per connection per turn instead of one per frame (coalesce.ts says why)
    streamMuxers: [coalescing(yamux({
      streamOptions: {
        maxReadBufferLength: STREAM_READ_BUFFER_BYTES,
        ...(opts.streamWindowBytes != null ? { initialStreamWindowSize: opts.streamWindowBytes, maxStreamWindowSize: Math.max(opts.streamWindowBytes, YAMUX_MAX_STREAM_WINDOW) } : {})
      }
    }))],
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
    peerDiscovery: mdnsMod != null ? [mdnsMod.mdns({ serviceTag: MDNS_SERVICE_TAG, interval: opts.mdnsIntervalMs ?? 10_000 })] : [],
    services: {
      identify: identify(),
      ping: ping(),
      // passthroughMapper: a cluster lives on private addresses, which the default mapper drops
      ...(dhtMod == null ? {} : { dht: dhtMod.kadDHT({ protocol: DHT_PROTOCOL, clientMode: opts.dht === 'client', peerInfoMapper: dhtMod.passthroughMapper, allowQueryWithZeroPeers: true, kBucketSize: DHT_K_BUCKET_SIZE, prefixLength: DHT_PREFIX_LENGTH }) }),
      ...(pubsubMod == null
        ? {}
        : {
            pubsub: pubsubMod.gossipsub({
              allowPublishToZeroTopicPeers: true,
              emitSelf: false,
              heartbeatInterval: opts.gossipHeartbeatMs ?? 1000
            })
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
  if (host.services.dht != null) joinThroughDht(host, host.services.dht)
  return host
}

/**
 * kad-dht looks itself up 1 s after start and then every 5 minutes: a node whose bootstrap peer
 * answers later (it started first, or the link was down) would learn the members behind that peer
 * only minutes on. So: whenever the routing table gets its first peer, look ourselves up now. The
 * lookup meets the peers closest to us; each is a `peer:discovery`, which createBlixardHost dials.
 */
function joinThroughDht (host: Libp2p, dht: KadDHT): void {
  let lastAt = -Infinity
  let running = false
  const lookup = async (): Promise<void> => {
    if (running || host.status !== 'started' || Date.now() - lastAt < DHT_JOIN_LOOKUP_MIN_GAP_MS) return
    running = true
    lastAt = Date.now()
    try {
      for await (const ev of dht.getClosestPeers(host.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(DHT_JOIN_LOOKUP_TIMEOUT_MS) })) void ev
    } catch { /* nobody answered in time: the periodic self-lookup retries */ } finally { running = false }
  }
  // kad-dht's RoutingTable is an event emitter ('peer:add'); its public type says only `size`
  const table = (dht as SingleKadDHT).routingTable as RoutingTableEvents
  table.addEventListener('peer:add', () => {
    if (table.size === 1) void lookup()
  })
}

interface RoutingTableEvents { size: number, addEventListener: (type: 'peer:add', fn: () => void) => void }

/** What reachPeer did: already connected, dialed at the addresses we knew, or found through the DHT. */
export type ReachResult = 'connected' | 'known-addrs' | 'dht' | 'unreachable'

/**
 * Connect to `peer`: at once if connected; else at its known addresses (`addrs`, e.g. its node
 * record, merged into the peer store first); else through the DHT: the members connected to it
 * tell us where it is now, those addresses replace the stale ones (the dialer tries addresses one
 * after another, a dead one costs a whole address timeout), and we dial again. Never throws.
 */
export async function reachPeer (host: Libp2p<{ dht?: KadDHT }>, peer: PeerId, addrs: Multiaddr[] = []): Promise<ReachResult> {
  if (peer.equals(host.peerId)) return 'connected'
  if (host.getConnections(peer).length > 0) return 'connected'
  try {
    if (addrs.length > 0) await host.peerStore.merge(peer, { multiaddrs: addrs })
    if ((await host.peerStore.get(peer).catch(() => null))?.addresses.length !== 0) {
      await host.dial(peer)
      return 'known-addrs'
    }
  } catch { /* stale or no addresses: ask the DHT */ }
  const found = await findPeerAddrs(host, peer)
  if (found.length === 0) return 'unreachable'
  try {
    await host.peerStore.patch(peer, { multiaddrs: found })
    await host.dial(peer)
    return 'dht'
  } catch { return 'unreachable' }
}

/** Where the DHT says `peer` is now (its own answer or its neighbours'), never our cache: [] when
 * nobody knows or the lookup timed out. */
export async function findPeerAddrs (host: Libp2p<{ dht?: KadDHT }>, peer: PeerId, timeoutMs = DHT_FIND_PEER_TIMEOUT_MS): Promise<Multiaddr[]> {
  const dht = host.services.dht
  if (dht == null) return []
  try {
    for await (const ev of dht.findPeer(peer, { useCache: false, signal: AbortSignal.timeout(timeoutMs) })) {
      if (ev.name === 'FINAL_PEER' && ev.peer.multiaddrs.length > 0) return ev.peer.multiaddrs
    }
  } catch { /* not found, or timed out */ }
  return []
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
