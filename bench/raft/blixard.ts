// The Blixard side of bench/raft.ts: blixard-node processes on 127.0.0.1 started by
// scripts/local-cluster.ts, and client hosts that hold the cluster key and an admin identity and
// write through the real RPC path (RpcClient over /blixard/rpc/1, one stream per client).
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'
import type { ResultOf } from '../../protocols/rpc.ts'
import { keySigner, signCommand } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { SIGNATURE_VALIDITY } from '../../node/api.ts'
import { randomUUID } from 'node:crypto'
import { BlixardError } from '../../protocols/errors.ts'

/** The bench's admin keys by peer id: every admin write is signed (protocols/auth.ts). */
const KEYS = new Map<string, PrivateKey>()
/** How many writes one fetched log index serves as the base of `until` (well under SIGNATURE_VALIDITY). */
const UNTIL_REFRESH_WRITES = 1_000

export interface BlixardBench {
  keyFile: string
  nodes: LocalNode[]
  /** nodes started at the beginning (the 4th, if any, is the joiner) */
  voters: LocalNode[]
  /** admins[0] is the control host's identity (status, probes); the others are the load clients' */
  admins: ClientIdentity[]
  start: (n: LocalNode) => void
  kill: (n: LocalNode) => void
  stop: () => void
}

export interface ClientIdentity { privateKey: PrivateKey, peerId: string }

/** Prepares `total` node dirs and `identities` admin identities, and starts the first 3 nodes. */
export async function blixardCluster (dir: string, basePort: number, total: number, identities: number, env?: NodeJS.ProcessEnv, nodeFlags?: string[]): Promise<BlixardBench> {
  const c = await prepareLocalCluster({ dir, nodes: total, basePort })
  const admins: ClientIdentity[] = []
  for (let i = 0; i < identities; i++) {
    const { privateKey } = await loadOrCreateIdentity(join(dir, `client${i}`))
    admins.push({ privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() })
    KEYS.set(admins[admins.length - 1].peerId, privateKey)
  }
  const start = (n: LocalNode): void => { startNode(c, n, { admins: admins.map((a) => a.peerId), logToFiles: true, env, ...(nodeFlags != null ? { nodeFlags } : {}) }) }
  const kill = (n: LocalNode): void => { n.proc?.kill('SIGKILL'); n.proc = null }
  const voters = c.nodes.slice(0, 3)
  for (const n of voters) start(n)
  return { keyFile: c.keyFile, nodes: c.nodes, voters, admins, start, kill, stop: () => { for (const n of c.nodes) n.proc?.kill('SIGKILL') } }
}

/** A libp2p host of the bench, holding the cluster key and one admin identity: one connection per node it dials. */
export async function clientHost (keyFile: string, id: ClientIdentity): Promise<BlixardHost> {
  return await createBlixardHost({ privateKey: id.privateKey, clusterKey: await readClusterKey(keyFile), listen: ['/ip4/127.0.0.1/tcp/0'] })
}

export async function rpcTo (host: BlixardHost, n: LocalNode, timeoutMs = 10_000): Promise<RpcClient> {
  // a level opens 32 streams per connection, the server's cap (RPC maxInboundStreams): one of the
  // previous level's streams not yet gone on the server's side gets a new one reset (seen once at
  // load 11); a few tries instead of a failed run
  for (let attempt = 1; ; attempt++) {
    try {
      return await RpcClient.connect(host, multiaddr(n.addr), { timeoutMs, maxInFlight: 256 })
    } catch (err) {
      if (attempt >= 5 || !/reset/i.test((err as Error).message)) throw err
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt))
    }
  }
}

export type Status = ResultOf<'cluster.status'>

/** Waits until `n` reports a leader and `voters` voters (stale read: no barrier, works without quorum). */
export async function waitForCluster (host: BlixardHost, n: LocalNode, want: (s: Status) => boolean, timeoutMs = 60_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs
  let last: Status | null = null
  let client: RpcClient | null = null
  while (Date.now() < deadline) {
    try {
      if (client?.usable !== true) client = await rpcTo(host, n, 2_000)
      last = await client.call('cluster.status', { stale: true }, { timeoutMs: 2_000 })
      if (want(last)) { void client.close(); return last }
    } catch { client = null }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`blixard cluster not ready in time; last status ${JSON.stringify(last)}`)
}

/**
 * The benchmark's write: `admin.add` of the calling admin itself with a new ~110-char name, a
 * ~256 B command. It goes through the whole Raft path (forwarded to the leader, appended,
 * replicated, fsynced on a quorum, committed, applied) and the state machine answers
 * AlreadyExists, which the caller gets only once the command is applied: that answer is the
 * commit acknowledgement. Re-adding the same admin keeps the admin table at a fixed size; a new
 * admin per write would make every later admin.add slower (node/api.ts lists all admins to
 * answer one), which measures that list and not Raft.
 */
export function adminWrite (client: RpcClient, self: string, tag: string): (timeoutMs?: number) => Promise<void> {
  let seq = 0
  let until = 0
  const key = KEYS.get(self)
  if (key == null) throw new Error(`no key for bench admin ${self}`)
  const signer = keySigner(self, key)
  return async (timeoutMs?: number) => {
    const name = `${tag}-${seq++}-`.padEnd(110, 'x')
    try {
      // signed here, in one RPC (cluster.submit with a command built by the client): the bench
      // measures Raft and the signature check, not a prepare round trip
      if (seq % UNTIL_REFRESH_WRITES === 1 || until === 0) until = (await client.call('cluster.status', { stale: true })).applied + SIGNATURE_VALIDITY
      const v = validateCommand({ type: 'AddAdmin', peerId: self, name })
      if (!v.ok) throw new Error(v.error.message)
      const auth = await signCommand(signer, v.cmd, randomUUID(), until)
      await client.call('cluster.submit', { method: 'admin.add', params: { peerId: self, name }, cmd: v.cmd, auth }, timeoutMs != null ? { timeoutMs } : {})
    } catch (err) {
      if (err instanceof BlixardError && err.kind === 'AlreadyExists') return
      throw err
    }
  }
}

/** Resident set size of a process, in MiB, from /proc; NaN once it is gone. */
export function rssMiB (pid: number): number {
  let status: string
  try { status = readFileSync(`/proc/${pid}/status`, 'utf8') } catch { return NaN }
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m == null ? NaN : Number(m[1]) / 1024
}
