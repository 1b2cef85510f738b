// The HTTP endpoints of a real blixard-node answer only to names they know: a DNS-rebinding page
// (Host: evil.example, pointed at 127.0.0.1) gets 421 and no state; a foreign Origin gets 403;
// Host: 127.0.0.1:PORT, localhost and a name from --http-allowed-host are served.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { request } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareLocalCluster, startNode } from '../../scripts/local-cluster.ts'
import type { LocalNode } from '../../scripts/local-cluster.ts'
import { until } from './cluster.ts'

const P2P_PORT = 18300
const HTTP_PORT = 18350
let dir = ''
let node: LocalNode

function get (path: string, headers: Record<string, string>): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: HTTP_PORT, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'blixard-http-host-'))
  const c = await prepareLocalCluster({ nodes: 1, dir, basePort: P2P_PORT })
  node = c.nodes[0]
  node.metricsPort = HTTP_PORT
  startNode(c, node, { logToFiles: true, extraArgs: ['--http-allowed-host', 'blixard.lan'] })
  await until('node answers /healthz', 30_000, async () => (await get('/healthz', { host: `127.0.0.1:${HTTP_PORT}` }).catch(() => ({ status: 0 }))).status === 200)
})

test.after(async () => {
  node?.proc?.kill('SIGTERM')
  await new Promise((resolve) => { if (node?.proc?.exitCode != null) resolve(null); else node?.proc?.on('exit', resolve) })
  rmSync(dir, { recursive: true, force: true })
})

test('Host: 127.0.0.1:PORT, localhost and an allowed name are served', async () => {
  for (const host of [`127.0.0.1:${HTTP_PORT}`, `localhost:${HTTP_PORT}`, 'blixard.lan', `blixard.lan:${HTTP_PORT}`]) {
    const r = await get('/api/state', { host })
    assert.is(r.status, 200, host)
    assert.ok(JSON.parse(r.body).node.name === 'node1', host)
  }
  const same = await get('/api/state', { host: `127.0.0.1:${HTTP_PORT}`, origin: `http://127.0.0.1:${HTTP_PORT}` })
  assert.is(same.status, 200, 'same-origin fetch from the dashboard')
})

test('DNS rebinding: Host: evil.example gets 421 and nothing of the state, on every path', async () => {
  for (const path of ['/api/state', '/', '/metrics', '/nope']) {
    for (const host of ['evil.example', `evil.example:${HTTP_PORT}`, '127.0.0.1.evil.example']) {
      const r = await get(path, { host })
      assert.is(r.status, 421, `${host}${path}`)
      assert.not.ok(r.body.includes('node1') || r.body.includes('raft') || r.body.includes('blixard_'), `${host}${path} leaks nothing`)
    }
  }
})

test('a foreign Origin gets 403 even through an allowed Host', async () => {
  const r = await get('/api/state', { host: `127.0.0.1:${HTTP_PORT}`, origin: 'http://evil.example' })
  assert.is(r.status, 403)
  assert.not.ok(r.body.includes('node1'))
  assert.is((await get('/api/state', { host: `127.0.0.1:${HTTP_PORT}`, origin: 'null' })).status, 403)
})

test.run()
