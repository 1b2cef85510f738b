// How a fresh LAN of nodes booted at the same moment forms exactly one cluster.
//
// A node whose data dir already holds a membership simply runs. A fresh node
// (empty membership) repeatedly asks every peer it has discovered (mDNS,
// Kademlia, bootstrap addresses) for a hello: is it in a cluster, and which
// node id is the lowest it knows. Then:
//   1. if any peer is in a cluster, the fresh node joins it: it asks that peer
//      to have it added (the leader's autopilot adds it as a learner anyway);
//   2. otherwise, once it sees at least `expect` nodes (itself included) and
//      it holds the lowest id among them, and at least `expect - 1` peers also
//      name it as the lowest id they know, it bootstraps a one-voter cluster.
//      Everyone else then sees a cluster and joins (rule 1); autopilot grows
//      the voters to 3 (5).
// Two clusters could only form if two groups of at least `expect` nodes each
// never saw one another during the start-up. Usually the lowest id of all wins;
// a node that decides before mDNS has shown it the lowest one (a loaded host)
// bootstraps as the lowest of those it saw, and the rest still join it.
// This is Consul's bootstrap_expect with a deterministic single bootstrapper.

export interface PeerHello {
  id: string
  inCluster: boolean
  /** the lowest node id the peer knows among fresh nodes (itself included) */
  lowestKnown: string
}

export type BootstrapDecision =
  | { action: 'wait', why: string }
  | { action: 'join', via: string, why: string }
  | { action: 'bootstrap', why: string }

export function decideBootstrap (self: string, expect: number, hellos: PeerHello[]): BootstrapDecision {
  const inCluster = hellos.filter((h) => h.inCluster).map((h) => h.id).sort()
  if (inCluster.length > 0) return { action: 'join', via: inCluster[0], why: `${inCluster[0]} is already in a cluster` }
  const ids = [self, ...hellos.map((h) => h.id)].sort()
  if (ids.length < expect) return { action: 'wait', why: `saw ${ids.length} of ${expect} expected nodes` }
  if (ids[0] !== self) return { action: 'wait', why: `${ids[0]} has the lowest id and will bootstrap` }
  const agree = hellos.filter((h) => h.lowestKnown === self).length
  if (agree < expect - 1) return { action: 'wait', why: `${agree} of ${expect - 1} peers agree this node bootstraps` }
  return { action: 'bootstrap', why: `lowest id among ${ids.length} fresh nodes, confirmed by ${agree} peers` }
}
