// The libp2p host of a node with its three services: the Raft transport (messages into the
// service), the RPC server (the API of node/api.ts plus internal.renewLease, behind the membership
// rules' authorization and per-peer limits) and load gossip. node/daemon.ts supplies the node's
// parts through HostServicesDeps; this file only connects them.
import type { PrivateKey } from '@libp2p/interface'
import type { ParamsOf, ResultOf } from '../protocols/rpc.ts'
import { RPC_MEMBER_MAX_CONCURRENT } from '../protocols/limits.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { NodeConfig } from './config.ts'
import { createBlixardHost, reachPeer } from './net/host.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MembershipDeps } from './membership.ts'
import type { BlixardHost } from './net/host.ts'
import { raftTransport } from './net/raft-transport.ts'
import { multiaddr } from '@multiformats/multiaddr'
import type { RaftTransport } from './net/raft-transport.ts'
import { rpcServer } from './net/rpc.ts'
import type { RpcHandlers, RpcServer } from './net/rpc.ts'
import { loadGossip } from './net/load-gossip.ts'
import type { LoadGossip } from './net/load-gossip.ts'
import type { RaftService } from './raft-service.ts'
import type { Logger } from './log.ts'
import type { NodeMetrics } from './metrics.ts'
import { sampleHostLoad, type WarmCount } from './metrics-wiring.ts'
import { instrumentAuthorize, instrumentHandlers } from './rpc-metrics.ts'
import { isMember, mayCall } from './core/membership-rules.ts'
import { BlixardError } from '../protocols/errors.ts'

export type NodeServices = { raft: RaftTransport, rpc: RpcServer, load: LoadGossip }

export interface HostServicesDeps {
  privateKey: PrivateKey
  clusterKey: Uint8Array
  cfg: NodeConfig
  sm: StateMachine
  self: () => string
  raft: () => RaftService | null
  /** the API's handlers (node/api.ts) */
  api: RpcHandlers
  /** internal.renewLease from a member (null until HA has started) */
  renewLease: (() => ((peer: string, epoch: number) => Promise<ResultOf<'internal.renewLease'>>) | null)
  /** internal.consoleHistory from a member: a live move's source hands the guest's console to its
   * target (null until execution has started) */
  consoleHistory: () => ((peer: string, p: ParamsOf<'internal.consoleHistory'>) => AsyncIterable<ResultOf<'internal.consoleHistory'>>) | null
  /** a Raft message arrived from `peer` (membership keeps who it heard from) */
  heard: (peer: string) => void
  log: Logger
  metrics: NodeMetrics
  /** this host's warm pool guests per pool, for its load reports (none before execution started) */
  warm?: () => WarmCount[]
}

export async function startNodeHost (d: HostServicesDeps): Promise<BlixardHost<NodeServices>> {
  // who may call what, and who gets a member's share of streams: node/core/membership-rules.ts
  const registered = (p: string): boolean => d.sm.getNode(p) != null
  const authorize = (peer: string, method: string): boolean => mayCall(peer, method, d.raft()?.conf(), registered, (p) => d.sm.isAdmin(p))
  const handlers: RpcHandlers = {
    ...d.api,
    'internal.renewLease': async (p, ctx) => {
      const renew = d.renewLease()
      if (renew == null) throw new BlixardError('Unavailable', 'leases not started')
      return await renew(ctx.peer, p.epoch)
    },
    'internal.consoleHistory': (p, ctx) => (async function * () {
      const serve = d.consoleHistory()
      if (serve == null) throw new BlixardError('Unavailable', 'this node runs no guests yet')
      yield * serve(ctx.peer, p)
    })()
  }
  return await createBlixardHost<NodeServices>({
    privateKey: d.privateKey,
    clusterKey: d.clusterKey,
    listen: d.cfg.listen,
    bootstrap: d.cfg.bootstrap,
    mdns: d.cfg.mdns,
    services: {
      raft: raftTransport({
        onMessage: (from, msg) => { d.heard(from); d.raft()?.step(msg, from) },
        onUnreachable: (peer) => { d.raft()?.reportUnreachable(peer) },
        onSnapshotStatus: (peer, ok) => { d.raft()?.reportSnapshot(peer, ok) },
        log: d.log
      }),
      rpc: rpcServer({
        handlers: instrumentHandlers(handlers, d.metrics),
        authorize: instrumentAuthorize(authorize, d.metrics),
        maxConcurrentFor: (peer) => isMember(peer, d.raft()?.conf(), registered) ? RPC_MEMBER_MAX_CONCURRENT : undefined,
        onRefused: (reason) => { d.metrics.rpcRefused.inc({ reason }) },
        log: d.log
      }),
      load: loadGossip({ sample: async () => await sampleHostLoad(d.cfg.dataDir, d.sm, d.self(), d.warm?.() ?? []), onReport: () => { d.metrics.gossipReports.inc({ result: 'accepted' }) }, log: d.log })
    }
  })
}

/** What the membership loop sees of the host: connected peers, our addresses, the Raft transport. */
export function hostView (host: () => BlixardHost<NodeServices>): Pick<MembershipDeps, 'connectedPeers' | 'ownAddrs' | 'addPeerAddrs' | 'reach'> {
  return {
    connectedPeers: () => host().getConnections().map((c) => c.remotePeer.toString()),
    ownAddrs: () => host().getMultiaddrs().map(String),
    // a bad address throws here (multiaddr's parser), and the caller logs it
    addPeerAddrs: async (peer, addrs) => { await host().services.raft.addPeerAddrs(peer, addrs.map((a) => multiaddr(a))) },
    // a record's address that does not parse is skipped (the others may still work)
    reach: async (peer, addrs) => await reachPeer(host(), peerIdFromString(peer), addrs.flatMap((a) => { try { return [multiaddr(a)] } catch { return [] } }))
  }
}
