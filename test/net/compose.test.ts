// All our services in one createLibp2p per host, three hosts joined only by bootstrap addresses:
// Raft messages, RPC and load gossip all work side by side.
import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Message } from '../../protocols/raft/types.ts'
import { raftTransport, rpcServer, loadGossip, RpcClient, dialableAddr, type BlixardHost, type RaftTransport, type RpcServer, type LoadGossip } from '../../node/net/index.ts'
import { testHost, until } from './helpers.ts'
import { silentLogger } from '../../node/log.ts'

type S = { raft: RaftTransport, rpc: RpcServer, load: LoadGossip }
const hosts: Array<BlixardHost<S>> = []
const inbox: Message[][] = [[], [], []]

async function start (i: number, bootstrap: string[]): Promise<BlixardHost<S>> {
  return await testHost<S>({
    bootstrap,
    services: {
      raft: raftTransport({ onMessage: (_from, m) => inbox[i].push(m), log: silentLogger }),
      rpc: rpcServer({ handlers: { 'cluster.status': (_p, ctx) => ({ id: `host${i}`, leader: null, term: i, commit: 0, applied: 0, voters: [ctx.peer], learners: [], joint: null }) }, log: silentLogger }),
      load: loadGossip({ sample: () => ({ cpuPct: i, memPct: 1, diskPct: 1, vmCount: 0, appliedIndex: 0 }), intervalMs: 200, log: silentLogger })
    }
  })
}

test.after(async () => { await Promise.all(hosts.map(async h => { await h.stop() })) })

test('three composed hosts joined by bootstrap addresses exchange Raft, RPC and gossip', async () => {
  const rss0 = process.memoryUsage().rss
  hosts.push(await start(0, []))
  const seed = dialableAddr(hosts[0]).toString()
  hosts.push(await start(1, [seed]), await start(2, [seed]))
  const ids = hosts.map(h => h.peerId.toString())
  // both ends: the dialer sees the connection a moment before the listener does
  await until(() => [1, 2].every(j => hosts[j].getConnections(hosts[0].peerId).length > 0 && hosts[0].getConnections(hosts[j].peerId).length > 0), 5000, 'bootstrap connections')

  // Raft: 0 -> 1 and 2 directly; 1 -> 2 needs the address of 2, learned through identify/DHT or given
  await hosts[1].services.raft.addPeerAddrs(ids[2], hosts[2].getMultiaddrs())
  hosts[0].services.raft.send([1, 2].map(j => ({ type: 'MsgHeartbeat', from: ids[0], to: ids[j], term: 1, commit: 0 })))
  hosts[1].services.raft.send([{ type: 'MsgHeartbeatResp', from: ids[1], to: ids[2], term: 1 }])
  await until(() => inbox[1].length === 1 && inbox[2].length === 2, 5000, 'raft delivery')

  // RPC from host 2 to host 1
  const c = await RpcClient.connect(hosts[2], dialableAddr(hosts[1]))
  const st = await c.call('cluster.status', {})
  assert.is(st.id, 'host1')
  assert.equal(st.voters, [ids[2]])
  await c.close()

  // gossip: everyone sees everyone
  await until(() => hosts.every(h => h.services.load.reports().length === 3), 10_000, 'load reports everywhere')
  assert.is(hosts[0].services.load.get(ids[2])!.cpuPct, 2)
  console.log(`  3 composed hosts in one process: RSS grew ${((process.memoryUsage().rss - rss0) / 2 ** 20).toFixed(0)} MiB (total ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB)`)
})

test.run()
