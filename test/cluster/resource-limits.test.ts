// Attackers against one real blixard-node process (one peer trying to exhaust a node, with and
// without the key): idle keyless TCP sockets must not block a keyed client, and key holders sending
// partial maximum-size Raft frames on many streams must not grow the node without bound. RSS is
// read from /proc/PID/status of the node process.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { connect, type Socket } from 'node:net'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { testHost } from '../net/helpers.ts'
import { RAFT_PROTOCOL } from '../../node/net/raft-transport.ts'
import { encodeVarint } from '../../protocols/framing.ts'
import { MAX_RAFT_FRAME_BYTES, MAX_PARTIAL_FRAME_BYTES_TOTAL } from '../../protocols/limits.ts'
import { until } from '../ops/cluster.ts'

const P2P_PORT = 18310
const HTTP_PORT = 18360
let dir = ''
let node: LocalNode
let key: Uint8Array

function rssMiB (): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${node.proc!.pid!}/status`, 'utf8'))
  return Number(m![1]) / 1024
}
const alive = (): boolean => node.proc?.exitCode == null && node.proc?.signalCode == null
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'blixard-limits-'))
  const c = await prepareLocalCluster({ nodes: 1, dir, basePort: P2P_PORT })
  node = c.nodes[0]
  node.metricsPort = HTTP_PORT
  key = await readClusterKey(c.keyFile)
  startNode(c, node, { logToFiles: true })
  await until('node serves /api/state with a leader', 30_000, async () => {
    const r = await fetch(`http://127.0.0.1:${HTTP_PORT}/api/state`).catch(() => null)
    return r?.ok === true && (await r.json() as { raft: { leader: string | null } }).raft.leader != null
  })
})

test.after(async () => {
  node?.proc?.kill('SIGTERM')
  await new Promise((resolve) => { if (!alive()) resolve(null); else node.proc?.on('exit', resolve) })
  rmSync(dir, { recursive: true, force: true })
})

test('a dozen idle keyless TCP sockets do not block a keyed client for more than 2.5 s', async () => {
  const sockets: Socket[] = []
  for (let i = 0; i < 12; i++) {
    const s = connect(P2P_PORT, '127.0.0.1')
    s.on('error', () => {})
    sockets.push(s)
  }
  await sleep(100)
  const client = await testHost({ clusterKey: key, dialTimeoutMs: 1500 })
  const t0 = Date.now()
  try {
    for (;;) {
      try { await client.services.ping.ping(multiaddr(node.addr)); break } catch { if (Date.now() - t0 > 5000) throw new Error('keyed client blocked for 5 s') }
      await sleep(100)
    }
    const ms = Date.now() - t0
    process.stderr.write(`keyed client connected ${ms} ms after 12 idle sockets\n`)
    assert.ok(ms < 2500, `keyed client blocked ${ms} ms`)
  } finally {
    for (const s of sockets) s.destroy()
    await client.stop()
  }
})

test('key holders sending partial maximum-size Raft frames on many streams: RSS bounded, released, node alive', async () => {
  const before = rssMiB()
  const PEERS = 4
  const STREAMS = 8
  const PARTIAL = MAX_RAFT_FRAME_BYTES - 1024 // declared max size, all but the last KiB sent
  const attackers = await Promise.all(Array.from({ length: PEERS }, async () => await testHost({ clusterKey: key })))
  let peak = before
  try {
    await Promise.all(attackers.flatMap((a) => Array.from({ length: STREAMS }, async () => {
      const s = await a.dialProtocol(multiaddr(node.addr), RAFT_PROTOCOL).catch(() => null)
      if (s == null) return
      try {
        if (!s.send(encodeVarint(MAX_RAFT_FRAME_BYTES - 16))) await s.onDrain({ signal: AbortSignal.timeout(1000) })
        const chunk = new Uint8Array(256 * 1024)
        for (let sent = 0; sent < PARTIAL; sent += chunk.length) {
          if (!s.send(chunk)) await s.onDrain({ signal: AbortSignal.timeout(1000) })
          if (sent % (4 * 1024 * 1024) === 0) peak = Math.max(peak, rssMiB())
        }
      } catch { /* reset by the node: what we want */ }
    })))
    for (let i = 0; i < 10; i++) { peak = Math.max(peak, rssMiB()); await sleep(100) }
    assert.ok(alive(), 'node alive under attack')
  } finally {
    await Promise.all(attackers.map(async (a) => await a.stop()))
  }
  await sleep(3000)
  const after = rssMiB()
  process.stderr.write(`RSS MiB: before ${before.toFixed(0)}, peak ${peak.toFixed(0)}, 3 s after disconnect ${after.toFixed(0)} (attack: ${PEERS} peers x ${STREAMS} streams x ${(PARTIAL / 2 ** 20).toFixed(0)} MiB partial = ${(PEERS * STREAMS * PARTIAL / 2 ** 20).toFixed(0)} MiB offered; cap ${MAX_PARTIAL_FRAME_BYTES_TOTAL / 2 ** 20} MiB)\n`)
  assert.ok(alive(), 'node alive after attack')
  // unbounded, this attack took a node from 134 to 834 MiB; the bound here is the
  // partial-frame cap plus yamux windows and allocator slack
  assert.ok(peak - before < 250, `RSS grew ${(peak - before).toFixed(0)} MiB (offered ${PEERS * STREAMS * 16} MiB)`)
  assert.ok(after - before < 250, `RSS ${(after - before).toFixed(0)} MiB above the start after the attackers left`)
  const r = await fetch(`http://127.0.0.1:${HTTP_PORT}/api/state`)
  assert.ok(r.ok, 'node still answers')
})

test.run()
