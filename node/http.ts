// The daemon's HTTP side, bound to localhost by default: Prometheus metrics on
// /metrics, the read-only dashboard on / with its JSON feed on /api/state.
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Daemon } from './daemon.ts'
import { dashboardHtml } from './dashboard.ts'
import { namesForIds } from './events.ts'

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
    events: d.recentEvents()
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

export async function startHttp (d: Daemon, host = '127.0.0.1'): Promise<HttpServer | null> {
  const port = d.cfg.metricsPort
  if (port == null) return null
  const extraHosts = d.cfg.httpAllowedHosts ?? []
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]
    // before anything else, so a foreign host learns nothing of the state (not even a 404 list)
    const refused = checkRequestHost({ host: req.headers.host, origin: req.headers.origin }, host, extraHosts)
    if (refused != null) { res.writeHead(refused.status, { 'content-type': 'text/plain' }).end(refused.why); return }
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
    if (url === '/' || url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(dashboardHtml())
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
