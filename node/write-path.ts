// How a write leaves this node: signed as this node's own when it carries no authority
// (node/own-commands.ts), then proposed here when this node leads or forwarded (batched, retried
// under one idempotency key) to the leader by the shipped forwarder (node/core/forwarder.ts), whose
// environment here is the Raft service and the libp2p RPC clients. The simulator gives the same
// forwarder a simulated network instead (sim/replica.ts).
import { randomUUID } from 'node:crypto'
import type { ApplyResult, CommandEnvelope } from '../protocols/commands.ts'
import type { Signer } from '../protocols/auth.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import { Forwarder } from './core/forwarder.ts'
import { leaderRefusal } from './api.ts'
import { signOwn } from './own-commands.ts'
import type { RaftService } from './raft-service.ts'
import type { RpcClient } from './net/rpc.ts'
import type { RpcClients } from './net/rpc-clients.ts'
import { BlixardError } from '../protocols/errors.ts'

export interface WritePathDeps {
  self: () => string
  sm: StateMachine
  raft: () => RaftService | null
  clients: RpcClients
  signer: () => Signer | null
  stopping: () => boolean
  sleep: (ms: number) => Promise<void>
}

export class WritePath {
  readonly forwarder: Forwarder<RpcClient>

  constructor (private readonly d: WritePathDeps) {
    this.forwarder = new Forwarder<RpcClient>({
      isLeader: () => d.raft()?.isLeader() === true,
      leaderId: () => d.raft()?.leaderId() ?? null,
      refusal: (env) => leaderRefusal(d.sm, d.self(), env, d.raft()?.term()),
      proposeLocal: async (env) => {
        const raft = d.raft()
        if (raft == null) throw new BlixardError('Unavailable', 'Raft is not running on this node yet')
        return await raft.propose(env)
      },
      connect: async (leader) => await d.clients.get(leader),
      callOne: async (c, env, timeoutMs) => await c.call('internal.propose', { env }, { timeoutMs }),
      callMany: async (c, envs, timeoutMs) => await c.call('internal.proposeMany', { envs }, { timeoutMs }),
      dropConnection: (leader) => { d.clients.drop(leader) },
      defer: (run) => { setImmediate(run) },
      sleep: d.sleep,
      stopping: d.stopping
    })
  }

  /** A write from this node (its own commands, the API's): proposed wherever the leader is, under
   * one idempotency key for every attempt (node/core/forwarder.ts says when it is Indeterminate). */
  async propose (env: CommandEnvelope): Promise<ApplyResult> {
    const key = env.key ?? randomUUID()
    const full = await signOwn({ ...env, key }, this.d.signer(), this.d.sm, this.d.raft()?.term())
    return await this.forwarder.propose({ ...full, key })
  }
}
