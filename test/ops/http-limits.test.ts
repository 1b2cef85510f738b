// The HTTP endpoints that do work per request are bounded (node/http-limits.ts): the limiter's
// arithmetic on an injected clock, then an attacker on loopback flooding a real blixard-node's
// dashboard (actions on) with VM views, prepares, submits and state reads: past the named bounds it
// gets 429 with why, the node keeps answering /healthz promptly, its memory stays bounded, and
// once the flood stops an ordinary request is served again.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Agent, request } from 'node:http'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { sleep, until } from './cluster.ts'
import { HTTP_LIMITS, RequestLimiter } from '../../node/http-limits.ts'

test('the limiter: a client\'s burst, then its rate; all clients together share one bound; clients kept are bounded', () => {
  let t = 0
  const lim = new RequestLimiter({ ...HTTP_LIMITS, maxClients: 3 }, () => t)
  const w = HTTP_LIMITS.work
  for (let i = 0; i < w.perClientBurst; i++) assert.is(lim.take('a', 'work'), null, `request ${i} of the burst`)
  const over = lim.take('a', 'work')
  assert.ok(over != null)
  assert.match(over.why, new RegExp(`^too many requests from a: at most ${w.perClientPerSec} a second \\(bursts of ${w.perClientBurst}\\) per client on /api/vm, /api/prepare and /api/submit$`))
  assert.is(over.retryAfterS, 1)
  // the view class has its own bucket
  assert.is(lim.take('a', 'view'), null)
  t += 1000
  for (let i = 0; i < w.perClientPerSec; i++) assert.is(lim.take('a', 'work'), null, 'refilled at the rate')
  assert.ok(lim.take('a', 'work') != null)
  // many clients: the shared bucket ends it (refilled to its burst over that second, then a took
  // its rate's worth)
  let served = 0
  for (let i = 0; i < 100; i++) if (lim.take(`c${i}`, 'work') === null) served++
  assert.is(served, w.allBurst - w.perClientPerSec)
  assert.match(lim.take('z', 'work')?.why ?? '', /from all clients together/)
  assert.is(lim.size().clients, 3, 'only maxClients are remembered')
  // in progress
  for (let i = 0; i < HTTP_LIMITS.workInFlight; i++) assert.ok(lim.begin())
  assert.not.ok(lim.begin())
  lim.end()
  assert.ok(lim.begin())
})

const P2P_PORT = 18380
const HTTP_PORT = 18390
const HOST = `127.0.0.1:${HTTP_PORT}`
/** the flood: this many requests, this many at once */
const FLOOD_REQUESTS = 3000
const FLOOD_CONCURRENCY = 64
/** what the node may grow by while flooded (an unbounded queue of views or actions would pass it) */
const MAX_RSS_GROWTH_MIB = 64
let dir = ''
let node: LocalNode

function call (path: string, o: { method?: string, body?: unknown, agent?: Agent } = {}): Promise<{ status: number, body: string, ms: number }> {
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    const data = o.body === undefined ? undefined : JSON.stringify(o.body)
    const req = request({
      host: '127.0.0.1', port: HTTP_PORT, path, method: o.method ?? 'GET', agent: o.agent,
      headers: { host: HOST, ...(data !== undefined ? { 'content-type': 'application/json', origin: `http://${HOST}`, 'content-length': Buffer.byteLength(data) } : {}) }
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - t0 }))
    })
    req.on('error', reject)
    req.end(data)
  })
}

function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) / 1024
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'blixard-http-limits-'))
  const c = await prepareLocalCluster({ nodes: 1, dir, basePort: P2P_PORT })
  node = c.nodes[0]
  node.metricsPort = HTTP_PORT
  node.proc = startNode(c, node, { logToFiles: true, extraArgs: ['--dashboard-actions'] })
  await until('node answers /api/state', 60_000, async () => (await call('/api/state').catch(() => ({ status: 0 }))).status === 200)
})

test.after(() => {
  node?.proc?.kill('SIGKILL')
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

test('a flood of VM views, prepares, submits and state reads: 429 past the bounds, /healthz stays prompt, memory bounded, served again after', async () => {
  const pid = node.proc!.pid!
  await sleep(1000) // the startup's own requests are not counted against the flood
  const rss0 = rssMiB(pid)
  const agent = new Agent({ keepAlive: true, maxSockets: FLOOD_CONCURRENCY })
  const kinds = [
    { path: '/api/vm?vm=nope', method: 'GET', cls: 'work' },
    { path: '/api/prepare', method: 'POST', body: { method: 'vm.stop', params: { vm: 'nope' } }, cls: 'work' },
    { path: '/api/submit', method: 'POST', body: { method: 'vm.stop', params: { vm: 'nope' }, cmd: {}, auth: { sig: 'AA==' } }, cls: 'work' },
    { path: '/api/state', method: 'GET', cls: 'view' }
  ] as const
  const counts = { work: { served: 0, limited: 0 }, view: { served: 0, limited: 0 } }
  let why = ''
  const healthz: number[] = []
  let flooding = true
  const probe = (async () => {
    while (flooding) { healthz.push((await call('/healthz')).ms); await sleep(100) }
  })()
  const t0 = Date.now()
  let next = 0
  await Promise.all(Array.from({ length: FLOOD_CONCURRENCY }, async () => {
    while (next < FLOOD_REQUESTS) {
      const k = kinds[next++ % kinds.length]!
      const r = await call(k.path, { method: k.method, body: 'body' in k ? k.body : undefined, agent })
      if (r.status === 429) { counts[k.cls].limited++; why = r.body } else counts[k.cls].served++
    }
  }))
  const seconds = (Date.now() - t0) / 1000
  flooding = false
  await probe
  agent.destroy()
  const rss1 = rssMiB(pid)
  const w = HTTP_LIMITS.work
  process.stdout.write(`  flood: ${FLOOD_REQUESTS} requests in ${seconds.toFixed(1)} s; work served ${counts.work.served}, limited ${counts.work.limited}; view served ${counts.view.served}, limited ${counts.view.limited}; /healthz max ${Math.max(...healthz)} ms over ${healthz.length} probes; RSS ${rss0.toFixed(0)} -> ${rss1.toFixed(0)} MiB\n`)
  // one client (127.0.0.1): at most its burst plus its rate over the flood's time
  assert.ok(counts.work.served <= w.perClientBurst + Math.ceil(w.perClientPerSec * seconds) + 1, `work served ${counts.work.served} in ${seconds} s`)
  assert.ok(counts.work.limited > 0 && counts.view.limited > 0, 'both classes were limited')
  assert.match(JSON.parse(why).error.message, /^too many requests( from 127\.0\.0\.1| in progress)?:.*; retry in \d+ s$/)
  assert.ok(Math.max(...healthz) < 2000, `/healthz took up to ${Math.max(...healthz)} ms while flooded`)
  assert.ok(rss1 - rss0 < MAX_RSS_GROWTH_MIB, `RSS grew ${(rss1 - rss0).toFixed(0)} MiB`)
  // after a pause the bucket has refilled: an ordinary view is served (404: no such VM), not 429
  await sleep(2000)
  assert.is((await call('/api/vm?vm=nope')).status, 404)
  assert.is((await call('/api/state')).status, 200)
})

test.run()
