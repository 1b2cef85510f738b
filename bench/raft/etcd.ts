// The anchor of bench/raft.ts: a 3-member etcd cluster on 127.0.0.1 (Debian etcd-server, default
// heartbeat and election settings, fsync on), and a minimal gRPC client for KV.Put over
// node:http2 (h2c, as etcd's own Go client speaks it), so the anchor is etcd's native write path
// and not the JSON gateway. No npm dependency: the two protobuf messages are encoded by hand.
//
// With TLS (`bench:raft --etcd-tls`): peer and client traffic over TLS with client certificates
// required on both (--peer-client-cert-auth, --client-cert-auth), from a CA the bench makes with
// openssl (etcdCerts): one certificate per member for 127.0.0.1 (server and client use, as peers
// dial each other), and one client certificate for the bench. The gRPC client then speaks h2 over
// TLS with that CA and certificate: the anchor with transport encryption, as Blixard always has.
import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { connect } from 'node:http2'
import type { ClientHttp2Session } from 'node:http2'
import { mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'

export interface EtcdMember {
  name: string
  clientPort: number
  peerPort: number
  dataDir: string
  proc: ChildProcess | null
  /** the client-side TLS material when the cluster runs with TLS, else null (plaintext) */
  tls: EtcdClientTls | null
}

/** PEM files of the bench's CA and its certificates (etcdCerts). */
export interface EtcdCerts {
  caFile: string
  /** per member name: certificate and key, for its client and peer listeners and as a peer client */
  members: Record<string, { certFile: string, keyFile: string }>
  clientCertFile: string
  clientKeyFile: string
}

/** What a client presents and trusts: PEM contents, as node:tls takes them. */
export interface EtcdClientTls { ca: Buffer, cert: Buffer, key: Buffer }

/** How long the bench's certificates are valid: a bench run, with margin. */
const CERT_DAYS = '2'

/**
 * Makes a CA, a certificate per member (CN = name, SAN IP:127.0.0.1, server and client use), and a
 * client certificate, all ECDSA P-256, with openssl into `dir`.
 */
export function etcdCerts (dir: string, names: string[]): EtcdCerts {
  mkdirSync(dir, { recursive: true })
  const f = (x: string): string => join(dir, x)
  const ossl = (args: string[]): void => {
    try { execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] }) } catch (err) {
      throw new Error(`openssl ${args[0]} failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`)
    }
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  ossl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', CERT_DAYS, '-subj', '/CN=blixard-bench-etcd-ca'])
  const issue = (name: string, ext: string): { certFile: string, keyFile: string } => {
    writeFileSync(f(`${name}.ext`), ext)
    ossl(['req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`])
    ossl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.crt`), '-days', CERT_DAYS, '-extfile', f(`${name}.ext`)])
    return { certFile: f(`${name}.crt`), keyFile: f(`${name}.key`) }
  }
  const members: EtcdCerts['members'] = {}
  for (const n of names) members[n] = issue(n, 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n')
  const client = issue('client', 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n')
  return { caFile: f('ca.crt'), members, clientCertFile: client.certFile, clientKeyFile: client.keyFile }
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

/** A 3-member cluster on `ports` (client, peer per member); with `certs`, all of it over TLS. */
export function etcdCluster (dir: string, ports: number[], certs?: EtcdCerts): EtcdCluster {
  etcdBinary()
  const tls: EtcdClientTls | null = certs == null ? null : { ca: readFileSync(certs.caFile), cert: readFileSync(certs.clientCertFile), key: readFileSync(certs.clientKeyFile) }
  const scheme = certs == null ? 'http' : 'https'
  const members: EtcdMember[] = [0, 1, 2].map((i) => ({
    name: `e${i + 1}`, clientPort: ports[2 * i], peerPort: ports[2 * i + 1], dataDir: join(dir, `e${i + 1}`), proc: null, tls
  }))
  const initial = members.map((m) => `${m.name}=${scheme}://127.0.0.1:${m.peerPort}`).join(',')
  const token = `blixard-bench-${process.pid}-${Date.now()}`
  const start = (m: EtcdMember): void => {
    mkdirSync(m.dataDir, { recursive: true })
    const out = openSync(join(dir, `${m.name}.log`), 'a')
    const mine = certs?.members[m.name]
    const tlsArgs = certs == null || mine == null
      ? []
      : [
          '--cert-file', mine.certFile, '--key-file', mine.keyFile, '--trusted-ca-file', certs.caFile, '--client-cert-auth',
          '--peer-cert-file', mine.certFile, '--peer-key-file', mine.keyFile, '--peer-trusted-ca-file', certs.caFile, '--peer-client-cert-auth'
        ]
    m.proc = spawn('etcd', [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `${scheme}://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `${scheme}://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `${scheme}://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `${scheme}://127.0.0.1:${m.peerPort}`,
      ...tlsArgs,
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
  const body = await gatewayPost(m, '/v3/maintenance/status', '{}', STATUS_TIMEOUT_MS)
  const j = JSON.parse(body) as { header?: { member_id?: string }, leader?: string, raftIndex?: string }
  return { memberId: j.header?.member_id ?? '', leader: j.leader ?? '0', raftIndex: Number(j.raftIndex ?? 0) }
}

const STATUS_TIMEOUT_MS = 1_000

/** POST to the member's JSON gateway (HTTP/1.1, over TLS with the client certificate when the
 * cluster has TLS); answers the body of a 200. */
async function gatewayPost (m: EtcdMember, path: string, body: string, timeoutMs: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const o = { host: '127.0.0.1', port: m.clientPort, path, method: 'POST', headers: { 'content-type': 'application/json' }, timeout: timeoutMs }
    const onRes = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`status ${res.statusCode ?? '?'}`)) })
      res.on('error', reject)
    }
    const req = m.tls == null ? httpRequest(o, onRes) : httpsRequest({ ...o, ca: m.tls.ca, cert: m.tls.cert, key: m.tls.key }, onRes)
    req.on('timeout', () => { req.destroy(new Error(`etcd ${m.name} status timed out`)) })
    req.on('error', reject)
    req.end(body)
  })
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

  /** h2c, or h2 over TLS with the bench's CA and client certificate when `tls` is given. */
  static async connect (port: number, tls?: EtcdClientTls | null): Promise<EtcdGrpc> {
    const s = tls == null ? connect(`http://127.0.0.1:${port}`) : connect(`https://127.0.0.1:${port}`, { ca: tls.ca, cert: tls.cert, key: tls.key })
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
