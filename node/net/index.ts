// The network layer of a Blixard node, in one import. Composition, as the daemon does it:
//
//   import '../polyfill.ts'                              // first: libp2p 3 on Node 20
//   const { privateKey } = await loadOrCreateIdentity(cfg.dataDir)
//   const host = await createBlixardHost({
//     privateKey, clusterKey: await readClusterKey(cfg.clusterKeyFile),
//     listen: cfg.listen, bootstrap: cfg.bootstrap, mdns: cfg.mdns,
//     services: {
//       raft: raftTransport({ onMessage: (from, m) => raft.step(m), onUnreachable: (p) => node.reportUnreachable(p),
//                             onSnapshotStatus: (p, ok) => node.reportSnapshot(p, ok) }),
//       rpc: rpcServer({ handlers, authorize: (peer) => isAdmin(peer) }),
//       load: loadGossip({ sample: () => readLoad() })
//     }
//   })
//   host.services.raft.send(ready.messages)               // never blocks
//   const client = await RpcClient.connect(cliHost, multiaddr(peer)); await client.call('cluster.status', {})
export { createBlixardHost, dialableAddr, DHT_PROTOCOL, MDNS_SERVICE_TAG } from './host.ts'
export type { BlixardHost, BlixardHostOptions, CoreServices, ServiceFactories } from './host.ts'
export { raftTransport, RAFT_PROTOCOL } from './raft-transport.ts'
export type { RaftTransport, RaftTransportInit, PeerStats } from './raft-transport.ts'
export { rpcServer, RpcClient, RPC_PROTOCOL } from './rpc.ts'
export type {
  RpcServer, RpcServerInit, RpcHandlers, RpcCallContext, UnaryHandler, StreamingHandler, RpcClientOptions,
  CallOptions, RpcSubscription, StreamDialer
} from './rpc.ts'
export { loadGossip } from './load-gossip.ts'
export type { LoadGossip, LoadGossipInit, LoadSample, AgedLoadReport } from './load-gossip.ts'
export { readFrames, writeFrame } from './frame-stream.ts'
export type { NetComponents } from './components.ts'
