// The target daemon's side of bench/migrate.ts in a process of its own, as it is between two
// hosts: a libp2p host (the test cluster key) with MigrationStreams. Driven over stdin/stdout, one
// JSON line each way: it prints {addr} once listening; `{"expect": {id, allow, targetSocket,
// windowBytes}}` answers {expecting: id} at once and {done: id, stats} or {failed: id, error} later.
import '../node/polyfill.ts'
import { createInterface } from 'node:readline'
import { peerIdFromString } from '@libp2p/peer-id'
import { testHost } from '../test/net/helpers.ts'
import { MigrationStreams } from '../node/migration/stream.ts'

const arg = (f: string): string | undefined => { const i = process.argv.indexOf(f); return i >= 0 ? process.argv[i + 1] : undefined }
const streamWindowBytes = arg('--stream-window') != null ? Number(arg('--stream-window')) : undefined
const out = (v: unknown): void => { process.stdout.write(JSON.stringify(v) + '\n') }

// the bench's own cluster key, so that the two processes' hosts admit each other
const clusterKey = Buffer.from(arg('--cluster-key') ?? '', 'base64')
const host = await testHost({ streamWindowBytes, clusterKey })
const streams = new MigrationStreams(host)
await streams.start()
out({ addr: host.getMultiaddrs()[0].toString() })
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line) as { expect?: { id: string, allow: string, targetSocket: string, windowBytes?: number } }
  if (m.expect == null) return
  const e = m.expect
  const allow = peerIdFromString(e.allow)
  streams.expect({ id: e.id, allow: (p) => p.equals(allow), targetSocket: e.targetSocket, windowBytes: e.windowBytes }).then(
    (stats) => { out({ done: e.id, stats }) },
    (err: Error) => { out({ failed: e.id, error: err.message }) })
  out({ expecting: e.id })
}).on('close', () => { void streams.stop().then(async () => { await host.stop() }).then(() => process.exit(0)) })
