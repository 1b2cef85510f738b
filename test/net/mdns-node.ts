// One Blixard host with mDNS on, for the namespace test: prints JSON lines
// {"ready": id, "addrs": [...]} then {"connected": id, "ms": N} per peer, and stops on SIGTERM.
// usage: node --import tsx test/net/mdns-node.ts LISTEN_MULTIADDR CLUSTER_KEY_FILE
import '../../node/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createBlixardHost } from '../../node/net/host.ts'
import { readClusterKey } from '../../node/keygen.ts'

const [listen, keyFile] = process.argv.slice(2)
const t0 = Date.now()
const host = await createBlixardHost({
  privateKey: await generateKeyPair('Ed25519'),
  clusterKey: await readClusterKey(keyFile),
  listen: [listen],
  mdns: true,
  mdnsIntervalMs: 1000,
  dialTimeoutMs: 3000
})
const say = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }
host.addEventListener('peer:connect', (evt) => say({ connected: evt.detail.toString(), ms: Date.now() - t0 }))
say({ ready: host.peerId.toString(), addrs: host.getMultiaddrs().map(String) })
const stop = (): void => { Promise.resolve(host.stop()).finally(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
setTimeout(stop, 150_000).unref() // the test kills us; this only bounds an orphan
