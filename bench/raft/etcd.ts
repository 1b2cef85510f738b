// The anchor of bench/raft.ts: a 3-member etcd cluster on 127.0.0.1 (Debian etcd-server, default
// heartbeat and election settings, fsync on), and a minimal gRPC client for KV.Put over
// node:http2 (h2c, as etcd's own Go client speaks it), so the anchor is etcd's native write path
// and not the JSON gateway. No npm dependency: the two protobuf messages are encoded by hand.
import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { connect } from 'node:http2'
import type { ClientHttp2Session } from 'node:http2'
import { mkdirSync, openSync } from 'node:fs'
import { join } from 'node:path'

export interface EtcdMember {
  name: string
  clientPort: number
  peerPort: number
  dataDir: string
  proc: ChildProcess | null
}

export interface EtcdCluster {
  members: EtcdMember[]
  start: (m: EtcdMember) => void
  kill: (m: EtcdMember) => void
  stop: () => void
}

export function etcdBinary (): string {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' })
    return 'etcd'
  } catch {
    throw new Error('etcd not found: install Debian etcd-server (scripts/setup.sh)')
  }
}

export function etcdCluster (dir: string, ports: number[]): EtcdCluster {
  etcdBinary()
  const members: EtcdMember[] = [0, 1, 2].map((i) => ({
    name: `e${i + 1}`, clientPort: ports[2 * i], peerPort: ports[2 * i + 1], dataDir: join(dir, `e${i + 1}`), proc: null
  }))
  const initial = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',')
  const token = `blixard-bench-${process.pid}-${Date.now()}`
  const start = (m: EtcdMember): void => {
    mkdirSync(m.dataDir, { recursive: true })
    const out = openSync(join(dir, `${m.name}.log`), 'a')
    m.proc = spawn('etcd', [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initial,
      '--initial-cluster-token', token,
      '--initial-cluster-state', 'new', // ignored on a restart: the data dir already holds the member
      '--logger', 'zap',
      '--log-level', 'warn'
    ], { stdio: ['ignore', out, out] })
  }
  const kill = (m: EtcdMember): void => { m.proc?.kill('SIGKILL'); m.proc = null }
  return { members, start, kill, stop: () => { for (const m of members) kill(m) } }
}

/** Member status through the JSON gateway (control path only; writes use gRPC). */
export async function etcdStatus (m: EtcdMember): Promise<{ memberId: string, leader: string, raftIndex: number }> {
  const r = await fetch(`http://127.0.0.1:${m.clientPort}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) })
  if (!r.ok) throw new Error(`status ${r.status}`)
  const j = await r.json() as { header?: { member_id?: string }, leader?: string, raftIndex?: string }
  return { memberId: j.header?.member_id ?? '', leader: j.leader ?? '0', raftIndex: Number(j.raftIndex ?? 0) }
}

/** The current leader, once every running member agrees on one. */
export async function etcdLeader (c: EtcdCluster, timeoutMs = 30_000): Promise<EtcdMember> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const running = c.members.filter((m) => m.proc != null)
    const st = await Promise.all(running.map(async (m) => await etcdStatus(m).catch(() => null)))
    const leaders = new Set(st.map((s) => s?.leader))
    if (st.every((s) => s != null) && leaders.size === 1) {
      const id = st[0]?.leader
      const i = st.findIndex((s) => s?.memberId === id)
      if (id != null && id !== '0' && i >= 0) return running[i]
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error('etcd elected no leader in time')
}

// ---- gRPC KV.Put over h2c ----

function varint (n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}

/** etcdserverpb.PutRequest { key = 1; value = 2 }, in a gRPC length-prefixed message. */
export function putFrame (key: Uint8Array, value: Uint8Array): Buffer {
  const body = Buffer.from([0x0a, ...varint(key.length), ...key, 0x12, ...varint(value.length), ...value])
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

export class EtcdGrpc {
  private constructor (private readonly session: ClientHttp2Session) {}

  static async connect (port: number): Promise<EtcdGrpc> {
    const s = connect(`http://127.0.0.1:${port}`)
    await new Promise<void>((resolve, reject) => { s.once('connect', () => resolve()); s.once('error', reject) })
    s.on('error', () => {}) // a killed member: the calls in flight fail on their own
    return new EtcdGrpc(s)
  }

  /** KV.Put; resolves once etcd answers OK (committed and applied on the member's cluster). */
  async put (frame: Buffer, timeoutMs = 10_000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      let req
      try {
        req = this.session.request({
          ':method': 'POST', ':path': '/etcdserverpb.KV/Put', 'content-type': 'application/grpc', te: 'trailers'
        })
      } catch (err) { reject(err as Error); return }
      let status: string | undefined
      let message = ''
      const timer = setTimeout(() => { req.close(); reject(new Error(`etcd put timed out after ${timeoutMs} ms`)) }, timeoutMs)
      const take = (h: Record<string, unknown>): void => {
        if (h['grpc-status'] != null) { status = String(h['grpc-status']); message = decodeURIComponent(String(h['grpc-message'] ?? '')) }
      }
      req.on('response', take)
      req.on('trailers', take)
      req.on('data', () => {})
      req.on('error', (err) => { clearTimeout(timer); reject(err) })
      req.on('close', () => {
        clearTimeout(timer)
        if (status === '0') resolve()
        else reject(new Error(`etcd put failed: grpc-status ${status ?? 'none'} ${message}`))
      })
      req.end(frame)
    })
  }

  close (): void { this.session.close() }
}
