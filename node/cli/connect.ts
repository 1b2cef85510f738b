// How the CLI reaches the cluster: its own libp2p identity under
// ~/.config/blixard/, the cluster key, and a node to talk to (--peer, or
// BLIXARD_PEER, or mDNS discovery on the LAN). Any node will do: every node
// answers every method. --peer-id names one node in particular: the CLI reaches any node first,
// then finds that one through the cluster's DHT (node/net/host.ts reachPeer).
import { BlixardError } from '../../protocols/errors.ts'
import { join } from 'node:path'
import { existsSync } from 'node:fs'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { loadOrCreateIdentity } from '../identity.ts'
import { readClusterKey } from '../keygen.ts'
import { createBlixardHost, reachPeer } from '../net/host.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import type { BlixardHost } from '../net/host.ts'
import { RpcClient } from '../net/rpc.ts'
import { CliError } from './errors.ts'
import { configDir } from './whoami.ts'
import { signingClient } from './signing.ts'
import { keySigner } from '../../protocols/auth.ts'

export function clusterKeyPath (explicit?: string): string {
  if (explicit != null) return explicit
  if (process.env.BLIXARD_CLUSTER_KEY_FILE != null) return process.env.BLIXARD_CLUSTER_KEY_FILE
  const mine = join(configDir(), 'cluster.key')
  return existsSync(mine) ? mine : '/etc/blixard/cluster.key'
}

export interface Connection {
  client: RpcClient
  host: BlixardHost
  peer: string
  close: () => Promise<void>
}

/** how long the CLI waits for the node it reached to enter its DHT routing table (identify) */
const DHT_ENTRY_WAIT_MS = 10_000
/** a --peer-id lookup that found nothing is retried after this (ms), until the CLI's timeout */
const PEER_ID_RETRY_MS = 500

export async function connect (opts: { peer?: string, peerId?: string, clusterKey?: string, timeoutMs?: number, mdnsWaitMs?: number }): Promise<Connection> {
  const { privateKey } = await loadOrCreateIdentity(configDir())
  const keyPath = clusterKeyPath(opts.clusterKey)
  let clusterKey: Uint8Array
  try {
    clusterKey = await readClusterKey(keyPath)
  } catch (err) {
    throw new CliError('Unavailable', `cannot read the cluster key ${keyPath}: ${(err as Error).message}`,
      'Pass --cluster-key FILE or set BLIXARD_CLUSTER_KEY_FILE: the CLI needs the same key as the nodes (make one for a new cluster with `blixard keygen PATH`).')
  }
  const peerAddr = opts.peer ?? process.env.BLIXARD_PEER
  const useMdns = peerAddr == null
  let wanted: PeerId | null = null
  if (opts.peerId != null) {
    try { wanted = peerIdFromString(opts.peerId) } catch { throw new BlixardError('InvalidParams', `--peer-id "${opts.peerId}" is not a peer id (e.g. 12D3KooW…; \`blixard node list -o wide\` shows them)`) }
  }
  // a DHT client only to find --peer-id: it asks, and stays out of the nodes' routing tables (it
  // leaves in a moment); no gossip (load reports are for nodes)
  const host = await createBlixardHost({ privateKey, clusterKey, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: useMdns, mdnsIntervalMs: 500, dht: wanted != null ? 'client' : 'off', pubsub: false })
  try {
    let target: PeerId | ReturnType<typeof multiaddr>
    let peerLabel: string
    if (peerAddr != null) {
      try { target = multiaddr(peerAddr) } catch { throw new BlixardError('InvalidParams', `--peer "${peerAddr}" is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/7001/p2p/12D3…)`) }
      peerLabel = peerAddr
    } else {
      const found = await discover(host, opts.mdnsWaitMs ?? 3_000)
      if (found == null) throw new CliError('Unavailable', 'no Blixard node found by mDNS on this LAN', 'Pass --peer MULTIADDR (a node\'s address, e.g. /ip4/10.0.0.1/tcp/7000/p2p/12D3…) or set BLIXARD_PEER.')
      target = found
      peerLabel = found.toString()
    }
    let client: RpcClient
    try {
      client = await connectRetrying(host, target, opts.timeoutMs ?? 15_000)
    } catch (err) {
      throw connectFailure(peerLabel, (err as Error).message)
    }
    const entryId = 'getComponents' in target ? target.getComponents().find((c) => c.name === 'p2p')?.value : target.toString()
    if (wanted != null && wanted.toString() !== entryId) {
      const entry = peerLabel
      await client.close().catch(() => {})
      // a loaded entry node may answer the first lookup before it knows the peer: retry until the
      // CLI's timeout (each lookup is bounded by DHT_FIND_PEER_TIMEOUT_MS)
      const deadline = Date.now() + (opts.timeoutMs ?? 15_000)
      await dhtReady(host, DHT_ENTRY_WAIT_MS)
      let how = await reachPeer(host, wanted)
      while (how === 'unreachable' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, PEER_ID_RETRY_MS))
        how = await reachPeer(host, wanted)
      }
      if (how === 'unreachable') {
        throw new CliError('Unavailable', `node ${wanted.toString()} not found through ${entry}: no member it asked knows where that peer id is`,
          'Check the peer id (`blixard node list -o wide`), and that the node runs; or give its address with --peer.')
      }
      peerLabel = wanted.toString()
      try {
        client = await connectRetrying(host, wanted, opts.timeoutMs ?? 15_000)
      } catch (err) {
        throw connectFailure(peerLabel, (err as Error).message)
      }
    }
    const signed = signingClient(client, keySigner(host.peerId.toString(), privateKey))
    return { client: signed, host, peer: peerLabel, close: async () => { await client.close().catch(() => {}); await host.stop() } }
  } catch (err) {
    await host.stop()
    throw err
  }
}

/** Waits until the DHT's routing table holds a peer (the node just reached, once identify ran). */
async function dhtReady (host: BlixardHost, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs
  while (((host.services.dht as SingleKadDHT | undefined)?.routingTable.size ?? 1) === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function discover (host: BlixardHost, waitMs: number): Promise<PeerId | null> {
  return await new Promise((resolve) => {
    const timer = setTimeout(() => { host.removeEventListener('peer:connect', on); resolve(null) }, waitMs)
    const on = (evt: CustomEvent<PeerId>): void => { clearTimeout(timer); host.removeEventListener('peer:connect', on); resolve(evt.detail) }
    host.addEventListener('peer:connect', on)
  })
}

/** A node too loaded to finish the handshake within its inbound upgrade timeout resets the
 * connection, as a node of another cluster does: dial again this many times, this far apart,
 * before saying what the address may be (seen in the README tour at load 36: one `vm logs` of a
 * healthy node was told it was not a Blixard node of this cluster). */
const RESET_RETRIES = 2
const RESET_RETRY_MS = 1000
const RESET = /ECONNRESET|EPIPE|stream reset|Encryption failed/

async function connectRetrying (host: BlixardHost, target: Parameters<typeof RpcClient.connect>[1], timeoutMs: number): Promise<RpcClient> {
  for (let i = 0; ; i++) {
    try {
      return await RpcClient.connect(host, target, { timeoutMs })
    } catch (err) {
      if (i >= RESET_RETRIES || !RESET.test((err as Error).message)) throw err
      await new Promise((resolve) => setTimeout(resolve, RESET_RETRY_MS))
    }
  }
}

/** What a dial's error text says about the other end, and what to do about it. */
const NOTHING_LISTENS = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL/
/** Garbage where libp2p expected its handshake (after the cluster key's encryption): the address
 * answers, but it is another service (HTTP, SSH, the dashboard port), or a node of another
 * cluster (another key: its bytes decrypt to noise, or it resets the connection). */
const SPEAKS_OTHER = /[Mm]essage length (length )?too long|Missing newline|[Ii]nvalid varint|protocol selection failed|[Pp]rotocol (error|negotiation)|[Uu]nexpected end of input|ECONNRESET|EPIPE|stream reset|[Ii]nvalid (message|multistream)|not supported/

export function connectFailure (peer: string, detail: string): CliError {
  if (NOTHING_LISTENS.test(detail)) {
    return new CliError('Unavailable', `cannot reach the node ${peer}: nothing listens there (${detail})`,
      'Check the address and port (a node\'s libp2p port, e.g. 7001, not its dashboard port), that blixard-node runs there, or try another node with --peer.')
  }
  if (SPEAKS_OTHER.test(detail)) {
    const busy = RESET.test(detail) ? `, or a Blixard node too loaded to finish the handshake in time (reset ${RESET_RETRIES + 1} times)` : ''
    return new CliError('Unavailable', `${peer} answered, but not as a Blixard node of this cluster: either another service listens there, or a Blixard node whose cluster key differs from this CLI's${busy} (libp2p said: ${detail})`,
      'Check the address and port (a node\'s libp2p port, e.g. 7001, not its dashboard or metrics port), and that --cluster-key (or BLIXARD_CLUSTER_KEY_FILE) is the key of that node\'s cluster.')
  }
  return new CliError('Unavailable', `cannot reach the node ${peer}: ${detail}`,
    'Check that blixard-node runs there and that this CLI has the cluster\'s key, or try another node with --peer; `blixard status --stale --peer ADDR` shows what a node knows.')
}
