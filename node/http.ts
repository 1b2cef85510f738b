// The daemon's HTTP side, bound to localhost by default: Prometheus metrics on
// /metrics, the dashboard on / with its JSON feed on /api/state and one VM's view on /api/vm, and
// (only when the config turns them on) the dashboard's signed actions on /api/prepare and
// /api/submit (node/dashboard-actions.ts).
import { createServer } from 'node:http'
import type { Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Daemon } from './daemon.ts'
import { dashboardHtml } from './dashboard.ts'
import { handleAction } from './dashboard-actions.ts'
import { HTTP_LIMITS, RequestLimiter } from './http-limits.ts'
import { namesForIds } from './events.ts'
import type { ClusterEvent } from './events.ts'
import type { VmSpec } from '../protocols/model.ts'
import type { RpcCallContext } from './net/rpc.ts'

/** The console tail the VM view shows, and how long fetching it (maybe from another node) may take. */
export const CONSOLE_TAIL_BYTES = 4096
const CONSOLE_TAIL_TIMEOUT_MS = 3_000

export interface HttpServer {
  port: number
  close: () => Promise<void>
}

export interface ClusterView {
  node: { id: string, name: string }
  raft: { role: string, term: number, leader: string | null, commit: number, applied: number, voters: string[], learners: string[] }
  /** state: the operator's (ready, draining…), or `unreachable` (its reports went stale: silent,
   * maybe dead, its lease not expired yet) or `down` (lease expired), each with since when */
  nodes: Array<{ id: string, name: string, state: string, downSince: number | null, unreachableSince: number | null, role: 'voter' | 'learner' | 'none', leader: boolean, capacity: unknown, load: { cpuPct: number, memPct: number, diskPct: number, vmCount: number, ageMs: number } | null }>
  vms: Array<{ id: string, name: string, phase: string, desired: string, node: string | null, nodeName: string | null, reason: string, vcpus: number, memoryMiB: number }>
  events: Array<{ at: number, index: number, text: string }>
  /** whether this node's dashboard offers actions (dashboardActions), and who may sign them */
  actions: { enabled: boolean, admins: string[] }
}

/** One VM as the dashboard's VM view shows it: spec, status, its recent events, why it is placed
 * where it is (vm explain, nodes by name), and the tail of its serial console. */
export interface VmDetail {
  id: string
  name: string
  spec: VmSpec
  generation: number
  desired: string
  phase: string
  reason: string
  node: string | null
  nodeName: string | null
  ip: string | null
  migration: { target: string, phase: string } | null
  history: ClusterEvent[]
  /** chosen: where the scheduler would place it afresh now (vm explain), node by node why */
  placement: { chosen: string | null, nodes: Array<{ node: string, feasible: boolean, why: string, score: number | null }> } | { error: string }
  console: { text: string } | { error: string }
}

export async function vmDetail (d: Daemon, ref: string): Promise<VmDetail | null> {
  const vm = d.sm.getVm(ref) ?? d.sm.getVmByName(ref)
  if (vm == null) return null
  const names = new Map(d.sm.listNodes().map((n) => [n.id, n.name]))
  const name = (id: string | null | undefined): string | null => id == null ? null : names.get(id) ?? id
  const signal = AbortSignal.timeout(CONSOLE_TAIL_TIMEOUT_MS)
  const ctx = { peer: '', method: 'vm.explain', signal } as unknown as RpcCallContext
  let placement: VmDetail['placement']
  try {
    const ex = await d.api['vm.explain']!({ vm: vm.id, stale: true }, ctx)
    placement = {
      chosen: name(ex.decision.nodeId),
      // a filter's reason starts with the filter's name already ("cpu: 1 reserved + …")
      nodes: (ex.decision.nodes ?? []).map((n) => {
        const reason = n.reason ?? ''
        const why = n.feasible ? '' : reason.startsWith(`${n.filter ?? ''}:`) ? reason : `${n.filter ?? ''}: ${reason}`
        return { node: name(n.nodeId) ?? n.nodeId, feasible: n.feasible, why: namesForIds(why, (id) => name(id) ?? id), score: n.total ?? null }
      })
    }
  } catch (e) { placement = { error: (e as Error).message } }
  let console: VmDetail['console']
  try {
    let text = ''
    for await (const t of d.vmLogs(vm, { follow: false, tailBytes: CONSOLE_TAIL_BYTES }, signal)) text += t
    console = { text: text.slice(-CONSOLE_TAIL_BYTES) }
  } catch (e) { console = { error: (e as Error).message } }
  return {
    id: vm.id,
    name: vm.spec.name,
    spec: vm.spec,
    generation: vm.generation,
    desired: vm.desired,
    phase: vm.status.phase,
    reason: namesForIds(vm.status.reason, (id) => name(id) ?? id),
    node: vm.assignedNode,
    nodeName: name(vm.assignedNode),
    ip: vm.status.ip ?? null,
    migration: vm.migration == null ? null : { target: name(vm.migration.target) ?? vm.migration.target, phase: vm.migration.phase },
    history: d.vmHistory(vm.id),
    placement,
    console
  }
}

export function clusterView (d: Daemon, now = Date.now()): ClusterView {
  const st = d.raft?.status()
  const loads = new Map(d.host.services.load.reports().map((r) => [r.node, r]))
  const names = new Map(d.sm.listNodes().map((n) => [n.id, n.name]))
  return {
    node: { id: d.id, name: d.cfg.name },
    raft: { role: st?.role ?? 'none', term: st?.term ?? 0, leader: st?.lead ?? null, commit: st?.commit ?? 0, applied: d.sm.applied(), voters: st?.conf.voters ?? [], learners: st?.conf.learners ?? [] },
    nodes: d.sm.listNodes().map((n) => {
      const l = loads.get(n.id)
      const down = n.liveness === 'down'
      // no report from it lately (or ever): not healthy, whatever its lease still says
      const silent = !down && (l == null || l.stale)
      return {
        id: n.id,
        name: n.name,
        // a node whose lease expired shows `down` (red), a silent one `unreachable` (amber),
        // whatever the operator's state
        state: down ? 'down' : silent ? 'unreachable' : n.state,
        downSince: down ? n.downSince ?? null : null,
        unreachableSince: silent && l != null ? now - l.ageMs : null,
        role: st?.conf.voters.includes(n.id) === true ? 'voter' : st?.conf.learners.includes(n.id) === true ? 'learner' : 'none',
        leader: st?.lead === n.id,
        capacity: n.capacity,
        load: l == null ? null : { cpuPct: l.cpuPct, memPct: l.memPct, diskPct: l.diskPct, vmCount: l.vmCount, ageMs: l.ageMs }
      }
    }),
    vms: d.sm.listVms().map((v) => ({
      id: v.id, name: v.spec.name, phase: v.status.phase, desired: v.desired, node: v.assignedNode,
      nodeName: v.assignedNode == null ? null : names.get(v.assignedNode) ?? null, reason: namesForIds(v.status.reason, (id) => names.get(id) ?? id), vcpus: v.spec.vcpus, memoryMiB: v.spec.memoryMiB
    })),
    events: d.recentEvents(),
    actions: { enabled: d.cfg.dashboardActions, admins: d.sm.listAdmins().map((a) => a.peerId) }
  }
}

/** Names a browser on this machine uses for the endpoints; always allowed. */
export const LOCAL_HOST_NAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]', '::1']

/** The host part of a Host: value or of an Origin's authority, lower-cased, without the port. */
function hostName (authority: string): string {
  const a = authority.trim().toLowerCase()
  if (a.startsWith('[')) return a.slice(0, a.indexOf(']') + 1)
  const colon = a.indexOf(':')
  return colon < 0 ? a : a.slice(0, colon)
}

/**
 * Whether a request may be answered. DNS rebinding: a page from evil.example re-points its name to
 * 127.0.0.1 and fetches /api/state; the browser sends `Host: evil.example[:port]`, so the Host must
 * be one we know (the listen address, localhost names, or `httpAllowedHosts` — either a bare name
 * or name:port). A cross-site fetch also carries `Origin:`; if present it must name an allowed host
 * too, so another site's page cannot read or poke even through a name we answer to.
 * Returns null when allowed, else the status and reason to answer with.
 */
export function checkRequestHost (headers: { host?: string, origin?: string }, listenHost: string, extra: readonly string[]): { status: number, why: string } | null {
  const allowed = new Set([...LOCAL_HOST_NAMES, listenHost.toLowerCase(), ...extra.map(e => e.trim().toLowerCase())])
  const ok = (authority: string): boolean => allowed.has(authority.trim().toLowerCase()) || allowed.has(hostName(authority))
  const host = headers.host
  if (host == null || host === '' || !ok(host)) return { status: 421, why: `host ${JSON.stringify(host ?? '')} is not one this node answers to (add it to httpAllowedHosts)\n` }
  const origin = headers.origin
  if (origin != null && origin !== 'null') {
    let authority: string
    try { authority = new URL(origin).host } catch { return { status: 403, why: 'malformed Origin\n' } }
    if (!ok(authority)) return { status: 403, why: `origin ${JSON.stringify(origin)} is not allowed\n` }
  } else if (origin === 'null') return { status: 403, why: 'opaque Origin is not allowed\n' }
  return null
}

/** 429 with why (JSON, as the page and the actions read errors) and when to retry. */
function tooMany (res: ServerResponse, why: string, retryAfterS: number): void {
  res.writeHead(429, { 'content-type': 'application/json', 'cache-control': 'no-store', 'retry-after': String(retryAfterS) })
    .end(JSON.stringify({ error: { kind: 'Unavailable', message: `${why}; retry in ${retryAfterS} s` } }))
}

export async function startHttp (d: Daemon, host = '127.0.0.1'): Promise<HttpServer | null> {
  const port = d.cfg.metricsPort
  if (port == null) return null
  const extraHosts = d.cfg.httpAllowedHosts ?? []
  const limiter = new RequestLimiter()
  const server: Server = createServer({ headersTimeout: HTTP_LIMITS.headersTimeoutMs, requestTimeout: HTTP_LIMITS.requestTimeoutMs }, (req, res) => {
    const url = (req.url ?? '/').split('?')[0]
    // before anything else, so a foreign host learns nothing of the state (not even a 404 list)
    const refused = checkRequestHost({ host: req.headers.host, origin: req.headers.origin }, host, extraHosts)
    if (refused != null) { res.writeHead(refused.status, { 'content-type': 'text/plain' }).end(refused.why); return }
    // the endpoints that do work per request are bounded per client and for all (node/http-limits.ts)
    const cls = url === '/api/state' || url === '/metrics' ? 'view' : url === '/api/vm' || (req.method === 'POST' && (url === '/api/prepare' || url === '/api/submit')) ? 'work' : null
    if (cls !== null) {
      const client = req.socket.remoteAddress ?? 'unknown'
      const over = limiter.take(client, cls)
      if (over != null) { tooMany(res, over.why, over.retryAfterS); return }
      if (cls === 'work') {
        if (!limiter.begin()) { tooMany(res, `too many requests in progress: at most ${HTTP_LIMITS.workInFlight} VM views and actions at once`, 1); return }
        res.once('close', () => { limiter.end() })
      }
    }
    if (req.method === 'POST' && (url === '/api/prepare' || url === '/api/submit')) {
      void handleAction(url === '/api/prepare' ? 'prepare' : 'submit', req, res, { enabled: d.cfg.dashboardActions, api: d.api, sm: d.sm })
      return
    }
    if (req.method !== 'GET') { res.writeHead(405, { allow: 'GET' }).end('method not allowed\n'); return }
    if (url === '/metrics') {
      try { d.refreshMetrics() } catch (err) { d.log.debug('metrics refresh failed', { err }) }
      d.metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': d.metrics.registry.contentType }).end(text)
      }).catch((err: Error) => { res.writeHead(500).end(`metrics failed: ${err.message}\n`) })
      return
    }
    if (url === '/api/state') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(clusterView(d)))
      return
    }
    if (url === '/api/vm') {
      const ref = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('vm') ?? ''
      vmDetail(d, ref).then((v) => {
        if (v == null) res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { kind: 'NotFound', message: `no VM named or with id '${ref}'` } }))
        else res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(v))
      }).catch((err: Error) => { res.writeHead(500).end(`vm view failed: ${err.message}\n`) })
      return
    }
    if (url === '/' || url === '/index.html') {
      // the page's one script runs by its nonce; nothing else may run, load, or frame the page
      // (an injected script or a framing page could otherwise click the actions with the admin's key)
      const nonce = randomBytes(16).toString('base64')
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer'
      }).end(dashboardHtml(nonce))
      return
    }
    if (url === '/healthz') { res.writeHead(200).end('ok\n'); return }
    if (url === '/favicon.ico') { res.writeHead(204).end(); return } // browsers ask; a 404 shows as a console error
    res.writeHead(404).end('not found: try /, /metrics or /api/state\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const actual = (server.address() as AddressInfo).port
  d.log.info('http listening', { url: `http://${host}:${actual}/`, metrics: `http://${host}:${actual}/metrics` })
  return {
    port: actual,
    close: async () => await new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
