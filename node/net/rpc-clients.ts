// One RPC client per peer, shared by every caller on this node (forwarding, formation, the console
// proxy): a connection that stopped being usable is replaced on the next call.
import { peerIdFromString } from '@libp2p/peer-id'
import type { StreamDialer } from './rpc.ts'
import { RPC_MEMBER_MAX_CONCURRENT } from '../../protocols/limits.ts'
import { RpcClient } from './rpc.ts'

export class RpcClients {
  private readonly clients = new Map<string, Promise<RpcClient>>()

  constructor (private readonly host: () => StreamDialer) {}

  async get (peer: string): Promise<RpcClient> {
    let c = this.clients.get(peer)
    if (c != null) {
      const cl = await c.catch(() => null)
      if (cl?.usable === true) return cl
      this.clients.delete(peer)
    }
    c = RpcClient.connect(this.host(), peerIdFromString(peer), { maxInFlight: RPC_MEMBER_MAX_CONCURRENT })
    this.clients.set(peer, c)
    c.catch(() => { this.clients.delete(peer) })
    return await c
  }

  drop (peer: string): void { this.clients.delete(peer) }

  closeAll (): void {
    for (const c of this.clients.values()) void c.then(async (cl) => { await cl.close() }).catch(() => {})
  }
}
