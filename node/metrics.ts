// Prometheus metrics of one daemon. A registry per node (not prom-client's
// global) so that several nodes in one process (tests, benches) don't collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface NodeMetrics {
  registry: Registry
  raftTerm: Gauge
  raftCommitIndex: Gauge
  raftAppliedIndex: Gauge
  raftIsLeader: Gauge
  raftLeaderChanges: Counter
  raftProposalSeconds: Histogram
  raftMessagesSent: Counter<'type'>
  raftMessagesReceived: Counter<'type'>
  raftMessagesDropped: Counter<'reason'>
  raftReadySeconds: Histogram
  rpcRequests: Counter<'method' | 'error'>
  rpcSeconds: Histogram<'method'>
  rpcRefused: Counter<'reason'>
  rpcHeld: Gauge<'what'>
  gossipReports: Counter<'result'>
  gossipReportAge: Gauge<'node'>
  placementDecisions: Counter<'result'>
  placementSeconds: Histogram
  vmsByPhase: Gauge<'phase'>
  agentReconcileSeconds: Histogram
  libp2pConnections: Gauge
}

export function createMetrics (opts: { defaultMetrics?: boolean } = {}): NodeMetrics {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'blixard_' })
    // prom-client exports these counts as gauges named *_total, which the exposition format
    // reserves for counters (promtool check metrics rejects them); they add little, so drop them.
    for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) registry.removeSingleMetric(`blixard_nodejs_${name}`)
  }
  const r = [registry]
  const ms = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
  return {
    registry,
    raftTerm: new Gauge({ name: 'blixard_raft_term', help: 'Current Raft term', registers: r }),
    raftCommitIndex: new Gauge({ name: 'blixard_raft_commit_index', help: 'Highest Raft index known committed', registers: r }),
    raftAppliedIndex: new Gauge({ name: 'blixard_raft_applied_index', help: 'Highest Raft index applied to the state machine', registers: r }),
    raftIsLeader: new Gauge({ name: 'blixard_raft_is_leader', help: '1 if this node is the Raft leader', registers: r }),
    raftLeaderChanges: new Counter({ name: 'blixard_raft_leader_changes_total', help: 'Leader changes seen by this node', registers: r }),
    raftProposalSeconds: new Histogram({ name: 'blixard_raft_proposal_duration_seconds', help: 'Proposal to apply latency on the leader', buckets: ms, registers: r }),
    raftMessagesSent: new Counter({ name: 'blixard_raft_messages_sent_total', help: 'Raft messages sent by type', labelNames: ['type'], registers: r }),
    raftMessagesReceived: new Counter({ name: 'blixard_raft_messages_received_total', help: 'Raft messages received by type', labelNames: ['type'], registers: r }),
    raftMessagesDropped: new Counter({ name: 'blixard_raft_messages_dropped_total', help: 'Raft messages refused before the core by reason (non-member, spoofed, learner acting as voter, term or index out of bounds, bad entry or snapshot)', labelNames: ['reason'], registers: r }),
    raftReadySeconds: new Histogram({ name: 'blixard_raft_ready_duration_seconds', help: 'Time to persist, send and apply one Ready', buckets: ms, registers: r }),
    rpcRequests: new Counter({ name: 'blixard_rpc_requests_total', help: 'RPC requests served by method and error kind (none = success)', labelNames: ['method', 'error'], registers: r }),
    rpcRefused: new Counter({ name: 'blixard_rpc_refused_total', help: 'RPC work refused by a resource bound: answer_bytes (an answer too big for the bytes already queued for its connection or for all peers, answered Unavailable), streams (a stream over the process-wide cap, reset)', labelNames: ['reason'], registers: r }),
    rpcHeld: new Gauge({ name: 'blixard_rpc_held', help: 'What the RPC server holds now, read at scrape time: requests in flight (inflight), encoded answer bytes waiting for peers to read them (queued_answer_bytes), open streams (streams), connections with streams or requests (connections), watch generators not yet finished (watches), bytes of incomplete frames on all streams (partial_frame_bytes). Each returns to its idle value once a peer leaves', labelNames: ['what'], registers: r }),
    rpcSeconds: new Histogram({ name: 'blixard_rpc_duration_seconds', help: 'RPC latency by method', labelNames: ['method'], buckets: ms, registers: r }),
    gossipReports: new Counter({ name: 'blixard_gossip_reports_total', help: 'Load reports received by result', labelNames: ['result'], registers: r }),
    gossipReportAge: new Gauge({ name: 'blixard_gossip_report_age_seconds', help: 'Age of the freshest load report per node', labelNames: ['node'], registers: r }),
    placementDecisions: new Counter({ name: 'blixard_placement_decisions_total', help: 'Placement decisions by result', labelNames: ['result'], registers: r }),
    placementSeconds: new Histogram({ name: 'blixard_placement_duration_seconds', help: 'Time to place one batch', buckets: ms, registers: r }),
    vmsByPhase: new Gauge({ name: 'blixard_vms', help: 'VMs in the replicated state by phase', labelNames: ['phase'], registers: r }),
    agentReconcileSeconds: new Histogram({ name: 'blixard_agent_reconcile_duration_seconds', help: 'Duration of one agent reconcile pass', buckets: ms, registers: r }),
    libp2pConnections: new Gauge({ name: 'blixard_libp2p_connections', help: 'Open libp2p connections', registers: r })
  }
}
