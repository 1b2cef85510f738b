// The API's dependencies (node/api.ts ApiDeps) from a node's parts: the state machine and Raft,
// the write path, the membership loop (hello, join), the event log, the load board and gossip,
// and the console. node/daemon.ts hands over the parts; this file says which serves what.
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { VmRecord } from '../protocols/model.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { NodeConfig } from './config.ts'
import { createApi } from './api.ts'
import type { RpcHandlers } from './net/rpc.ts'
import type { RaftService } from './raft-service.ts'
import type { NodeMetrics } from './metrics.ts'
import type { LoadBoard } from './scheduler.ts'
import type { LoadGossip } from './net/load-gossip.ts'
import type { Membership } from './membership.ts'
import type { EventLog } from './events.ts'
import type { ConsoleOptions } from './console-proxy.ts'

export type AppliedListener = (index: number, env: CommandEnvelope, r: ApplyResult) => void

export interface NodeApiParts {
  id: () => string
  cfg: NodeConfig
  sm: StateMachine
  raft: () => RaftService | null
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** watchers of applied commands (the daemon calls each on apply) */
  listeners: Set<AppliedListener>
  board: LoadBoard
  gossip: () => LoadGossip
  membership: Membership
  events: EventLog
  vmLogs: (vm: VmRecord, o: ConsoleOptions, signal: AbortSignal) => AsyncIterable<string>
  consoleInput: (vm: VmRecord, data: Buffer) => Promise<{ bytes: number, node: string }>
  metrics: NodeMetrics
}

export function nodeApi (p: NodeApiParts): RpcHandlers {
  return createApi({
    id: p.id,
    cephConfig: p.cfg.ceph,
    rebalanceConfig: p.cfg.rebalance,
    sm: p.sm,
    raft: p.raft,
    propose: p.propose,
    load: p.board,
    metrics: p.metrics,
    subscribe: (fn) => { p.listeners.add(fn); return () => { p.listeners.delete(fn) } },
    loadReports: () => p.gossip().reports(),
    hello: () => p.membership.hello(),
    join: async (peer, addrs) => await p.membership.admit(peer, addrs),
    vmLogs: p.vmLogs,
    consoleInput: p.consoleInput,
    recentEvents: () => p.events.recent(),
    subscribeNotes: (fn) => p.events.subscribeNotes(fn),
    describe: (_i, env, r) => p.events.describe(env, r)
  })
}
