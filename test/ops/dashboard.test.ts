// The dashboard of a live 3-node cluster, opened in headless Chromium (Debian
// chromium driven by playwright-core): it shows the nodes with their roles and
// the VMs with phase and host as /api/state and the CLI's --json view have
// them, refreshes live, shows a silent node amber `unreachable`, stays read-only and on localhost,
// and leaves screenshots in test/out/dashboard.png (and dashboard-unreachable.png).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdirSync, statSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { connect as tcpConnect } from 'node:net'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { OpsCluster, ROOT, until } from './cluster.ts'

const CHROMIUM = '/usr/bin/chromium'
// as root in a sandbox with no internet: no sandbox, no GPU, no background calls home
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const VIEW = 1 // a follower or the leader: any node serves the dashboard

// a 60 s lease (the default is 9 s): a stopped node stays `unreachable` (reports stale, lease not
// yet expired) long enough to be seen on a loaded host before it is marked down (the nodes inherit it)
process.env.BLIXARD_LEASE_MS = '60000'

let c: OpsCluster
let browser: Browser
let page: Page
const pageErrors: string[] = []

interface NodeRow { name: string, role: string, state: string }
interface VmRow { name: string, phase: string, host: string }

async function nodeRows (): Promise<NodeRow[]> {
  return await page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('.name')?.textContent ?? '', role: tr.querySelector('.role')?.textContent ?? '', state: tr.querySelector('.state')?.textContent ?? ''
  })))
}

async function vmRows (): Promise<VmRow[]> {
  return await page.$$eval('#vms tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('.name')?.textContent ?? '', phase: tr.querySelector('.phase')?.textContent ?? '', host: tr.querySelector('.host')?.textContent ?? ''
  })))
}

test.before(async () => {
  c = await OpsCluster.start('dashboard', 17411)
  const r = await c.cli(['vm', 'create', 'dash-first', '--json'])
  assert.is(r.code, 0, r.stderr)
  await until('dash-first placed', 30_000, async () => (await c.state(VIEW)).vms.find((v) => v.name === 'dash-first')?.node != null)
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS })
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } })
  page.on('pageerror', (e) => { pageErrors.push(e.message) })
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()) })
  await page.goto(c.url(VIEW, '/'))
  await page.waitForSelector('#nodes tbody tr', { timeout: 15_000 })
})

test.after(async () => {
  await browser?.close()
  await c?.stop()
})

test('the page shows every node with its role, and the one leader, as /api/state and `blixard nodes --json` do', async () => {
  const cli = await c.cli(['nodes', '--json'])
  assert.is(cli.code, 0, cli.stderr)
  const cliNodes = cli.json as Array<{ name: string, state: string, role: string, leader: boolean }>
  await until('the page and the CLI to agree on the nodes', 15_000, async () => {
    const rows = await nodeRows()
    const st = await c.state(VIEW)
    const want = cliNodes.map((n) => ({ name: n.name, role: n.leader ? 'leader' : n.role, state: n.state })).sort((a, b) => a.name.localeCompare(b.name))
    const apiWant = st.nodes.map((n) => ({ name: n.name, role: n.leader ? 'leader' : n.role, state: n.state })).sort((a, b) => a.name.localeCompare(b.name))
    const got = rows.slice().sort((a, b) => a.name.localeCompare(b.name))
    return JSON.stringify(got) === JSON.stringify(want) && JSON.stringify(got) === JSON.stringify(apiWant)
  })
  const rows = await nodeRows()
  assert.equal(rows.map((r) => r.name).sort(), ['node1', 'node2', 'node3'])
  assert.is(rows.filter((r) => r.role === 'leader').length, 1)
  assert.is(rows.filter((r) => r.role === 'voter').length, 2)
  const leaderName = c.nodes[await c.leaderIndex()].name
  assert.is(rows.find((r) => r.role === 'leader')?.name, leaderName)
  assert.match(await page.textContent('#summary') ?? '', `leader ${leaderName}`)
})

test('the page shows every VM with its phase and host, as /api/state and `blixard vm list --json` do', async () => {
  await until('the page, /api/state and the CLI to agree on the VMs', 20_000, async () => {
    const cli = await c.cli(['vm', 'list', '--json'])
    const names = new Map(c.nodes.map((n) => [n.peerId, n.name]))
    const fromCli = (cli.json as Array<{ spec: { name: string }, status: { phase: string }, assignedNode: string | null }>)
      .map((v) => ({ name: v.spec.name, phase: v.status.phase, host: v.assignedNode == null ? '-' : names.get(v.assignedNode) ?? v.assignedNode }))
    const fromApi = (await c.state(VIEW)).vms.map((v) => ({ name: v.name, phase: v.phase, host: v.nodeName ?? '-' }))
    const rows = await vmRows()
    return rows.length === 1 && JSON.stringify(rows) === JSON.stringify(fromApi) && JSON.stringify(rows) === JSON.stringify(fromCli)
  }, 500)
  const [row] = await vmRows()
  assert.is(row.name, 'dash-first')
  assert.ok(['node1', 'node2', 'node3'].includes(row.host), row.host)
  assert.ok(['scheduled', 'starting', 'running', 'failed'].includes(row.phase), row.phase)
})

test('the page refreshes live: a VM created after it loaded appears, with its events, without a reload', async () => {
  const loadedAt = await page.evaluate(() => performance.timeOrigin)
  const r = await c.cli(['vm', 'create', 'dash-live', '--json'])
  assert.is(r.code, 0, r.stderr)
  await page.waitForSelector('#vms tr[data-vm="dash-live"]', { timeout: 15_000 })
  // (predicates as strings: they run in the page, and this project's typecheck has no DOM types)
  await page.waitForFunction('[...document.querySelectorAll(\'#vms tr[data-vm="dash-live"] .host\')].some((td) => /^node\\d$/.test(td.textContent))', undefined, { timeout: 20_000 })
  await page.waitForFunction('[...document.querySelectorAll("#events .text")].some((td) => td.textContent === "VM dash-live created")', undefined, { timeout: 10_000 })
  assert.is(await page.evaluate(() => performance.timeOrigin), loadedAt, 'the page was not reloaded')
  assert.match(await page.textContent('#summary') ?? '', /3 nodes, 2 VMs/)
  assert.match(await page.textContent('#live') ?? '', /^live, updated /)
  // load bars: every node has a gossiped report, so every row has three meters
  assert.is(await page.locator('#nodes tbody tr .meter').count(), 9)
})

test('read-only and on localhost: no forms or buttons, writes refused, not reachable from outside', async () => {
  assert.is(await page.locator('form, button, input, select, textarea').count(), 0)
  const post = await fetch(c.url(VIEW, '/api/state'), { method: 'POST', body: '{}' })
  assert.is(post.status, 405)
  const outside = Object.values(networkInterfaces()).flat().find((a) => a != null && a.family === 'IPv4' && !a.internal)
  const target = outside?.address ?? '127.0.0.2' // 127.0.0.2 is loopback but not the bound address
  const reachable = await new Promise<boolean>((resolve) => {
    const s = tcpConnect({ host: target, port: c.nodes[VIEW].metricsPort }, () => { s.destroy(); resolve(true) })
    s.on('error', () => { resolve(false) })
  })
  assert.is(reachable, false, `dashboard reachable on ${target}`)
  assert.equal(pageErrors, [])
})

test('a silent node turns amber `unreachable` with since when (not a green ready), and ready again once it speaks', async () => {
  const silent = c.nodes[2] // not VIEW: the page's own node keeps answering
  const pid = silent.proc?.pid
  assert.ok(pid != null)
  const state = `[...document.querySelectorAll('#nodes tr[data-node="${silent.name}"] .state')]`
  process.kill(pid, 'SIGSTOP')
  try {
    await page.waitForFunction(`${state}.some((td) => /^unreachable since \\d\\d:\\d\\d:\\d\\dZ \\(\\d+ s\\)$/.test(td.textContent) && td.querySelector('.pill.unreachable') != null)`, undefined, { timeout: 30_000 })
    await page.screenshot({ path: join(ROOT, 'test', 'out', 'dashboard-unreachable.png'), fullPage: true })
  } finally { process.kill(pid, 'SIGCONT') }
  await page.waitForFunction(`${state}.some((td) => td.textContent === 'ready')`, undefined, { timeout: 60_000 })
})

test('screenshot of the cluster in test/out/dashboard.png', async () => {
  const out = join(ROOT, 'test', 'out')
  mkdirSync(out, { recursive: true })
  const file = join(out, 'dashboard.png')
  await page.screenshot({ path: file, fullPage: true })
  assert.ok(statSync(file).size > 10_000, 'a real picture, not an empty page')
})

test.run()
