// Runs inside a test's network namespace (mdns.test.ts): asks each given node for cluster.status
// every 300 ms and prints one JSON line per answer, {i, st} (st null when it did not answer);
// with PROBE_NODES=1 also each node's node table, {i, st, nodes} (dht-subnets.test.ts).
// usage: node --import tsx test/cluster/ns-probe.ts KEY_FILE CLI_DIR ADDR...
import '../../node/polyfill.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'

const [keyFile, cliDir, ...addrs] = process.argv.slice(2)
const { privateKey } = await loadOrCreateIdentity(cliDir)
const host = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(keyFile), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dialTimeoutMs: 2_000 })
const clients: Array<RpcClient | null> = addrs.map(() => null)
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
const stop = (): void => { Promise.resolve(host.stop()).finally(() => process.exit(0)).catch(() => {}) }
process.on('SIGTERM', stop)
process.stdin.on('end', stop) // the test went away
process.stdin.resume()
for (;;) {
  await Promise.all(addrs.map(async (a, i) => {
    try {
      if (clients[i]?.usable !== true) clients[i] = await RpcClient.connect(host, multiaddr(a), { timeoutMs: 3_000, dialTimeoutMs: 2_000 })
      const st = await clients[i]!.call('cluster.status', { stale: true })
      const nodes = process.env.PROBE_NODES === '1' ? await clients[i]!.call('node.list', { stale: true }) : undefined
      process.stdout.write(JSON.stringify({ i, st, nodes }) + '\n')
    } catch {
      clients[i] = null
      process.stdout.write(JSON.stringify({ i, st: null }) + '\n')
    }
  }))
  await new Promise((resolve) => setTimeout(resolve, 300))
}
