// Security with real blixard-node processes: the cluster key keeps
// everyone else out (the CLI fails fast and clearly, a 4th node never joins); a non-admin CLI
// identity can read but gets Unauthorized (exit 6) on a change until an admin adds it; garbage on
// /blixard/rpc/1 and /blixard/raft/1 resets that stream and the node keeps serving.
// Ports 17310-17313 (metrics 17410-17413).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TestCluster, waitFor, runCli, sleep, vmSpec } from './harness.ts'
import { writeClusterKey } from '../../node/keygen.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { encodeFrame, encodeVarint } from '../../protocols/framing.ts'
import { RPC_PROTOCOL } from '../../protocols/rpc.ts'
import { RAFT_PROTOCOL } from '../../node/net/raft-transport.ts'

const c = new TestCluster({ nodes: 4, basePort: 17310 }, 'security')
let wrongKey = ''
let failed = false

test.before(async () => {
  await c.prepare()
  wrongKey = join(c.dir, 'wrong.key')
  await writeClusterKey(wrongKey)
  for (const i of [0, 1, 2]) c.start(i)
  await waitFor('3 nodes agreeing on a leader with 3 voters', 90_000, async () => await c.agreed([0, 1, 2], 3), 250)
})
test.after(async () => {
  if (failed) console.log(c.logTails())
  await c.stop()
})

function guard (name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try { await fn() } catch (err) { failed = true; throw err }
  })
}

guard('the CLI with the wrong cluster key fails within a bounded time with a clear error', async () => {
  const r = await runCli(['status', '--json', '--timeout', '5'], { ...c.cliEnv(0), BLIXARD_CLUSTER_KEY_FILE: wrongKey }, 60_000)
  console.log(`  wrong-key CLI: exit ${r.code} after ${r.ms} ms (CLI process start included): ${r.stderr.split('\n')[0]}`)
  assert.is(r.code, 5, `exit ${r.code}: ${r.stderr}`)
  const err = (r.json as { error?: { kind: string, message: string } } | null)?.error
  assert.is(err?.kind, 'Unavailable')
  assert.match(r.stderr, /Error: .+/)
  assert.ok(r.ms < 45_000, `took ${r.ms} ms`)
})

guard('a 4th node with the wrong cluster key never joins', async () => {
  c.start(3, [], wrongKey)
  await waitFor('the wrong-key node to be up', 60_000, () => c.log(3).includes('"node started"'), 200)
  await sleep(6_000) // it redials its bootstrap peers every 2 s: three rounds
  const st = await waitFor('a status from node1', 20_000, async () => await c.status(0))
  assert.not.ok([...st.voters, ...st.learners].includes(c.nodes[3].peerId), JSON.stringify(st))
  const nodes = await (await c.client(0)).call('node.list', {})
  assert.not.ok(nodes.some((n) => n.id === c.nodes[3].peerId))
  assert.not.ok(/asked to join|installed snapshot|bootstrapping a new cluster/.test(c.log(3)), 'the wrong-key node must not join or form anything')
  c.kill(3, 'SIGKILL')
})

guard('a non-admin CLI identity can read, gets Unauthorized (exit 6) on a change, and can change once an admin adds it', async () => {
  const otherDir = join(c.dir, 'other-cli')
  const otherId = peerIdFromPrivateKey((await loadOrCreateIdentity(otherDir)).privateKey).toString()
  const env = { ...c.cliEnv(1), BLIXARD_CONFIG_DIR: otherDir }
  const read = await runCli(['status', '--json'], env)
  assert.is(read.code, 0, read.stderr)
  assert.is((read.json as { voters: string[] }).voters.length, 3)
  const denied = await runCli(['vm', 'create', 'not-allowed', '--no-start', '--json'], env)
  assert.is(denied.code, 6, `exit ${denied.code}: ${denied.stderr}`)
  assert.is((denied.json as { error: { kind: string } }).error.kind, 'Unauthorized')
  assert.match(denied.stderr, /not an admin/)
  const add = await runCli(['admin', 'add', otherId, '--name', 'second', '--json'], c.cliEnv(2))
  assert.is(add.code, 0, add.stderr)
  const allowed = await runCli(['vm', 'create', 'now-allowed', '--no-start', '--json'], env)
  assert.is(allowed.code, 0, `exit ${allowed.code}: ${allowed.stderr}`)
  assert.is((allowed.json as { spec: { name: string } }).spec.name, 'now-allowed')
})

async function resetAfter (i: number, protocol: string, bytes: Uint8Array): Promise<string> {
  const s = await c.rawStream(i, protocol)
  s.send(bytes)
  await waitFor(`the ${protocol} stream to be reset`, 15_000, () => s.status !== 'open', 20)
  return s.status
}

guard('garbage on /blixard/rpc/1 and /blixard/raft/1 resets the stream; the node keeps running and answers', async () => {
  const cases: Array<[string, Uint8Array]> = [
    // one whole frame of random content (a bare random prefix may declare a frame longer than what
    // follows, and the node rightly waits for the rest)
    ['a frame of random bytes', Uint8Array.from([...encodeVarint(4096), ...randomBytes(4096)])],
    ['random bytes after an over-long varint', Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...randomBytes(64)])],
    ['a valid length prefix and invalid CBOR', Uint8Array.from([...encodeVarint(6), 0xff, 0xfe, 0xfd, 0x1c, 0x1d, 0x1e])],
    ['a valid CBOR frame of the wrong shape', encodeFrame({ hello: 'world', id: 'x', batch: [1, 2, 3] }, 1 << 16)],
    ['a length prefix of 64 MiB', encodeVarint(64 * 1024 * 1024)]
  ]
  const target = 1
  const pid = c.nodes[target].proc!.pid!
  for (const protocol of [RPC_PROTOCOL, RAFT_PROTOCOL]) {
    for (const [what, bytes] of cases) {
      const status = await resetAfter(target, protocol, bytes)
      assert.ok(['reset', 'aborted', 'closed'].includes(status), `${protocol} ${what}: ${status}`)
      const st = await c.status(target)
      assert.ok(st != null && st.leader != null, `${protocol} ${what}: the node stopped answering`)
    }
  }
  assert.is(c.nodes[target].proc!.exitCode, null, 'the node process is still running')
  assert.ok(process.kill(pid, 0))
  const log = c.log(target)
  assert.ok(/"rpc\.stream\.rejected"/.test(log), 'the RPC rejection is logged')
  assert.ok(/"raft\.(message|stream)\.rejected"/.test(log), 'the Raft rejection is logged')
  // a good write still goes through the node that took the garbage
  const vm = await (await c.client(target)).call('vm.create', { spec: vmSpec('after-garbage'), start: false })
  assert.is(vm.spec.name, 'after-garbage')
  const st = await waitFor('the cluster to still agree', 10_000, async () => await c.agreed([0, 1, 2], 3))
  assert.is(st.length, 3)
})

test.run()
