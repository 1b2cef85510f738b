// The daemon's HTTP side, bound to localhost by default: Prometheus metrics on
// /metrics, the read-only dashboard on / with its JSON feed on /api/state.
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Daemon } from './daemon.ts'
import { dashboardHtml } from './dashboard.ts'

export interface HttpServer {
  port: number
  close: () => Promise<void>
}

export interface ClusterView {
  node: { id: string, name: string }
  raft: { role: string, term: number, leader: string | null, commit: number, applied: number, voters: string[], learners: string[] }
  nodes: Array<{ id: string, name: string, state: string, role: 'voter' | 'learner' | 'none', leader: boolean, capacity: unknown, load: { cpuPct: number, memPct: number, diskPct: number, vmCount: number, ageMs: number } | null }>
  vms: Array<{ id: string, name: string, phase: string, desired: string, node: string | null, nodeName: string | null, reason: string, vcpus: number, memoryMiB: number }>
  events: Array<{ at: number, index: number, text: string }>
}

export function clusterView (d: Daemon): ClusterView {
  const st = d.driver?.status()
  const loads = new Map(d.host.services.load.reports().map((r) => [r.node, r]))
  const names = new Map(d.sm.listNodes().map((n) => [n.id, n.name]))
  return {
    node: { id: d.id, name: d.cfg.name },
    raft: { role: st?.role ?? 'none', term: st?.term ?? 0, leader: st?.lead ?? null, commit: st?.commit ?? 0, applied: d.sm.applied(), voters: st?.conf.voters ?? [], learners: st?.conf.learners ?? [] },
    nodes: d.sm.listNodes().map((n) => {
      const l = loads.get(n.id)
      return {
        id: n.id,
        name: n.name,
        state: n.state,
        role: st?.conf.voters.includes(n.id) === true ? 'voter' : st?.conf.learners.includes(n.id) === true ? 'learner' : 'none',
        leader: st?.lead === n.id,
        capacity: n.capacity,
        load: l == null ? null : { cpuPct: l.cpuPct, memPct: l.memPct, diskPct: l.diskPct, vmCount: l.vmCount, ageMs: l.ageMs }
      }
    }),
    vms: d.sm.listVms().map((v) => ({
      id: v.id, name: v.spec.name, phase: v.status.phase, desired: v.desired, node: v.assignedNode,
      nodeName: v.assignedNode == null ? null : names.get(v.assignedNode) ?? null, reason: v.status.reason, vcpus: v.spec.vcpus, memoryMiB: v.spec.memoryMiB
    })),
    events: d.recentEvents()
  }
}

export async function startHttp (d: Daemon, host = '127.0.0.1'): Promise<HttpServer | null> {
  const port = d.cfg.metricsPort
  if (port == null) return null
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]
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
