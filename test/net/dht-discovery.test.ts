// Kademlia discovery on real libp2p hosts on 127.0.0.1 (node/net/host.ts): a peer whose known
// address went stale is found again through the DHT (reachPeer), and a host given one bootstrap
// address is connected to the peers behind it by the DHT's self-lookup, without dialing them
// itself. The routed-subnet version with real nodes is test/cluster/dht-subnets.test.ts.
import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p } from '@libp2p/interface'
import type { SingleKadDHT } from '@libp2p/kad-dht'
import { createBlixardHost, dialableAddr, reachPeer, DHT_MAX_PEERS } from '../../node/net/host.ts'
import { CLUSTER_KEY, sleep, testHost, until } from './helpers.ts'

const stopAll = async (hosts: Libp2p[]): Promise<void> => { await Promise.all(hosts.map(async (h) => { await h.stop() })) }

test('a peer restarted on a new port is reached again through the DHT: its stale address fails, a neighbour knows the new one', async () => {
  const bKey = await generateKeyPair('Ed25519')
  const c = await testHost()
  const a = await testHost({ bootstrap: [dialableAddr(c).toString()] })
  const b = await testHost({ privateKey: bKey, bootstrap: [dialableAddr(c).toString()] })
  const hosts: Libp2p[] = [a, c]
  try {
    await a.dial(dialableAddr(b))
    const oldAddr = dialableAddr(b).toString()
    await until(() => a.getConnections(c.peerId).length > 0 && c.getConnections(b.peerId).length > 0, 5000, 'a and b connected to c')
    await b.stop()
    await until(() => a.getConnections(b.peerId).length === 0, 5000, 'a notices b is gone')
    // b comes back with the same identity on another port; only c learns of it (b dials c)
    const b2 = await testHost({ privateKey: bKey, bootstrap: [dialableAddr(c).toString()] })
    hosts.push(b2)
    assert.is.not(dialableAddr(b2).toString(), oldAddr, 'b has a new address')
    await until(() => c.getConnections(b2.peerId).length > 0, 5000, 'b back at c')
    const known = (await a.peerStore.get(b2.peerId)).addresses.map((x) => x.multiaddr.toString())
    assert.ok(known.every((x) => !x.includes(dialableAddr(b2).toString().split('/p2p/')[0])), `a knows only b's old address: ${known.join(' ')}`)
    const t0 = Date.now()
    const how = await reachPeer(a, b2.peerId)
    console.log(`  stale address → ${how} in ${Date.now() - t0} ms`)
    assert.is(how, 'dht', 'found through the DHT, not at the known address')
    assert.ok(a.getConnections(b2.peerId).length > 0, 'a is connected to b at its new address')
    assert.is(await reachPeer(a, b2.peerId), 'connected')
  } finally { await stopAll(hosts) }
})

test('without the DHT, the same stale address leaves the peer unreachable (the control)', async () => {
  const bKey = await generateKeyPair('Ed25519')
  const c = await testHost()
  const a = await createBlixardHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: CLUSTER_KEY, mdns: false, dialTimeoutMs: 3000, dht: 'off', bootstrap: [dialableAddr(c).toString()] })
  const b = await testHost({ privateKey: bKey })
  const hosts: Libp2p[] = [a, c]
  try {
    await a.dial(dialableAddr(b))
    await b.stop()
    const b2 = await testHost({ privateKey: bKey, bootstrap: [dialableAddr(c).toString()] })
    hosts.push(b2)
    await until(() => c.getConnections(b2.peerId).length > 0 && a.getConnections(c.peerId).length > 0, 5000, 'b back at c')
    assert.is(await reachPeer(a, b2.peerId), 'unreachable')
  } finally { await stopAll(hosts) }
})

test('a host given one bootstrap address is connected to the peers behind it by the DHT, and the table is bounded', async () => {
  const a = await testHost()
  const b = await testHost({ bootstrap: [dialableAddr(a).toString()] })
  const c = await testHost({ bootstrap: [dialableAddr(a).toString()] })
  const hosts: Libp2p[] = [a, b, c]
  try {
    await until(() => a.getConnections(b.peerId).length > 0 && a.getConnections(c.peerId).length > 0, 5000, 'b and c at a')
    // b and c each know only a, and may have found each other already: start the new host once a's
    // DHT has both in its table, so that its lookup can return them
    await until(() => ((a.services.dht as SingleKadDHT | undefined)?.routingTable.size ?? 0) >= 2, 5000, 'a\'s routing table holds b and c')
    // d's own first self-lookup (kad-dht runs it 1 s after start, then every 5 minutes) finds
    // nothing: d knows nobody yet. Its bootstrap peer answers only later (it was down, or d
    // started first): the lookup on the table's first peer (joinThroughDht) is what finds b and c.
    const d = await testHost()
    hosts.push(d)
    await sleep(1_500)
    const t0 = Date.now()
    await d.dial(dialableAddr(a))
    await until(() => d.getConnections(b.peerId).length > 0 && d.getConnections(c.peerId).length > 0, 8000, 'd connected to b and c')
    console.log(`  one bootstrap address → connected to the 2 peers behind it in ${Date.now() - t0} ms`)
    assert.ok(DHT_MAX_PEERS <= 320, `the routing table is bounded: ${DHT_MAX_PEERS}`)
  } finally { await stopAll(hosts) }
})

test.run()
