// The dashboard of a live 3-node cluster, opened in headless Chromium (Debian
// chromium driven by playwright-core): it shows the nodes with their roles and
// the VMs with phase and host as /api/state and the CLI's --json view have
// them, refreshes live, shows a silent node amber `unreachable`, stays read-only where actions are
// off and on localhost, opens a VM's view (spec, history, placement, console), and — on the one
// node with dashboardActions, once an admin added the browser's own key — stops, migrates, starts
// a VM and drains a node by clicks, while requests without an admin's signature (or from another
// site) are refused and change nothing. Screenshots in test/out/dashboard.png,
// dashboard-unreachable.png, dashboard-vm.png (a VM's view after the clicks) and
// dashboard-actions.png (a node drained by a click).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdirSync, statSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { connect as tcpConnect } from 'node:net'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { generateKeyPairSync, sign as edSign } from 'node:crypto'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { OpsCluster, ROOT, until } from './cluster.ts'
import { keySigner, signCommand } from '../../protocols/auth.ts'
import type { Signer } from '../../protocols/auth.ts'
import type { Command } from '../../protocols/commands.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'

const CHROMIUM = '/usr/bin/chromium'
// as root in a sandbox with no internet: no sandbox, no GPU, no background calls home
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const VIEW = 1 // a follower or the leader: any node serves the dashboard; the only one with actions on
const READ_ONLY = 0 // dashboardActions off (the default)

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
  c = await OpsCluster.start('dashboard', 17411, 3, 90_000, (i) => i === VIEW ? ['--dashboard-actions'] : [])
  const r = await c.cli(['vm', 'create', 'dash-first', '--json'])
  assert.is(r.code, 0, r.stderr)
  await until('dash-first placed', 30_000, async () => (await c.state(VIEW)).vms.find((v) => v.name === 'dash-first')?.node != null)
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS })
  // the test's own predicates are strings evaluated in the page, which the page's CSP forbids
  // (as it should): this page bypasses it; the read-only test's page runs under it
  page = await browser.newPage({ viewport: { width: 1280, height: 720 }, bypassCSP: true })
  page.on('pageerror', (e) => { pageErrors.push(e.message) })
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()) })
  page.on('dialog', (d) => { void d.accept() }) // the page asks before a drain or a migration
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

test('read-only where actions are off (the default) and on localhost: no forms or buttons, writes refused, not reachable from outside', async () => {
  // the acting node too shows no control until an admin added this browser's key
  assert.is(await page.locator('form, button, input, select, textarea').count(), 0)
  // the page under its own CSP (its script runs by nonce, nothing else may run or frame it)
  const ro = await browser.newPage()
  const roErrors: string[] = []
  ro.on('pageerror', (e) => { roErrors.push(e.message) })
  ro.on('console', (m) => { if (m.type() === 'error') roErrors.push(m.text()) })
  const res = await ro.goto(c.url(READ_ONLY, '/#vm=dash-first'))
  const csp = (await res?.allHeaders())?.['content-security-policy'] ?? ''
  assert.match(csp, /script-src 'nonce-[^']+';/)
  assert.match(csp, /frame-ancestors 'none'/)
  await ro.locator('#vm-title', { hasText: 'VM dash-first' }).waitFor({ timeout: 15_000 })
  assert.match(await ro.textContent('#access') ?? '', /^Read-only: actions are off on this node/)
  assert.is(await ro.locator('form, button, input, select, textarea').count(), 0)
  await ro.close()
  assert.equal(roErrors, [])
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

/** A POST as the dashboard's own page sends it (JSON, its own Origin), with `headers` over that. */
/** A POST as the page makes it. Like the page, it waits out a 429 (the node's per-client bound on
 * work requests, node/http-limits.ts: the attack rows below send more in a second than a person
 * clicks) and tries again, so each row's status is the answer to the request itself. */
async function postAction (i: number, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, error: { kind: string, message: string } | null, json: Record<string, unknown> }> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(c.url(i, path), { method: 'POST', headers: { 'content-type': 'application/json', origin: `http://127.0.0.1:${c.nodes[i].metricsPort}`, ...headers }, body: JSON.stringify(body) })
    const json = await res.json().catch(() => ({})) as Record<string, unknown>
    if (res.status === 429 && attempt < 5) {
      await new Promise((resolve) => setTimeout(resolve, 1000 * Number(res.headers.get('retry-after') ?? '1')))
      continue
    }
    return { status: res.status, error: (json.error as { kind: string, message: string } | undefined) ?? null, json }
  }
}

/** prepare on the acting node, sign with `signer`, submit to node `to` as the page would. */
async function signedSubmit (to: number, method: string, params: Record<string, unknown>, signer: Signer): Promise<Awaited<ReturnType<typeof postAction>>> {
  const prep = await postAction(VIEW, '/api/prepare', { method, params })
  assert.is(prep.status, 200, JSON.stringify(prep.json))
  const cmd = prep.json.cmd as Command
  const auth = await signCommand(signer, cmd, `attack-${Math.random()}`, prep.json.until as number)
  return await postAction(to, '/api/submit', { method, params, cmd, auth: { ...auth, sig: Buffer.from(auth.sig).toString('base64') } })
}

async function vmState (name: string): Promise<{ desired: string, nodeName: string | null, phase: string }> {
  const v = (await c.state(VIEW)).vms.find((x) => x.name === name)
  assert.ok(v != null, name)
  return v
}

test('a VM\'s view: its spec, status history, placement explanation and console tail', async () => {
  await page.click('#vms tr[data-vm="dash-first"] .name a')
  await page.waitForFunction('document.getElementById("vm-title").textContent === "VM dash-first"', undefined, { timeout: 15_000 })
  const spec = await page.textContent('#vm-spec') ?? ''
  assert.match(spec, /vCPUs1Memory128 MiB/, spec)
  await page.waitForFunction('[...document.querySelectorAll("#vm-history .text")].some((td) => td.textContent === "VM dash-first created")', undefined, { timeout: 10_000 })
  const host = (await vmState('dash-first')).nodeName
  assert.match(await page.textContent('#vm-status') ?? '', `on ${host ?? '-'}`)
  // vm explain, node by node: all three judged, the pick named
  await page.waitForFunction('document.querySelectorAll("#vm-placement tbody tr").length === 3 && /would go to node\\d/.test(document.getElementById("vm-placement").textContent)', undefined, { timeout: 10_000 })
  assert.ok(((await page.textContent('#vm-console')) ?? '').length > 0, 'a console tail, or why there is none')
})

test('attacks on the actions change nothing: no signature, a non-admin\'s, another site\'s request, or any request where actions are off', async () => {
  const vm = await vmState('dash-first')
  const before = (await c.state(VIEW)).raft.applied
  const id = (await c.state(VIEW)).vms.find((v) => v.name === 'dash-first')?.id
  // a key that is no admin, signing a well-formed stop
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const raw = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32))
  const stranger: Signer = { peerId: peerIdFromPublicKey(publicKeyFromRaw(raw)).toString(), sign: (data) => new Uint8Array(edSign(null, data, privateKey)) }
  const bad = await signedSubmit(VIEW, 'vm.stop', { vm: 'dash-first' }, stranger)
  assert.is(bad.status, 403)
  assert.is(bad.error?.kind, 'Unauthorized')
  assert.match(bad.error?.message ?? '', /admin/)
  // no signature at all; a forged one in the admin's name
  const prep = await postAction(VIEW, '/api/prepare', { method: 'vm.stop', params: { vm: 'dash-first' } })
  const unsigned = await postAction(VIEW, '/api/submit', { method: 'vm.stop', params: { vm: 'dash-first' }, cmd: prep.json.cmd })
  assert.ok(unsigned.status >= 400 && unsigned.status < 500, `unsigned: ${unsigned.status}`)
  const forged = await postAction(VIEW, '/api/submit', { method: 'vm.stop', params: { vm: 'dash-first' }, cmd: prep.json.cmd, auth: { signer: c.adminId, nonce: 'forged-1', until: prep.json.until, sig: Buffer.alloc(64, 7).toString('base64') } })
  assert.is(forged.status, 403, JSON.stringify(forged.json))
  // the admin's real signature, but sent by another site's page (CSRF), or as a form post
  const { privateKey: adminKey } = await loadOrCreateIdentity(join(c.dir, 'cli'))
  const admin = keySigner(c.adminId, adminKey)
  const cross = await signedSubmitWith({ origin: 'http://evil.example' }, admin)
  assert.is(cross.status, 403)
  const sideways = await signedSubmitWith({ origin: `http://127.0.0.1:${c.nodes[VIEW].metricsPort}`, 'sec-fetch-site': 'cross-site' }, admin)
  assert.is(sideways.status, 403)
  const form = await signedSubmitWith({ 'content-type': 'application/x-www-form-urlencoded' }, admin)
  assert.is(form.status, 403)
  assert.match(form.error?.message ?? '', /JSON body/)
  // the admin's real signature on a node whose dashboard is read-only: refused there
  const ro = await signedSubmit(READ_ONLY, 'vm.stop', { vm: 'dash-first' }, admin)
  assert.is(ro.status, 403)
  assert.match(ro.error?.message ?? '', /^dashboard actions are off on this node/)
  // a method the dashboard does not offer
  const other = await postAction(VIEW, '/api/prepare', { method: 'admin.add', params: { peerId: stranger.peerId, name: 'x' } })
  assert.is(other.status, 400)
  // nothing changed: same desired state, and no command about the VM was even proposed
  assert.is((await vmState('dash-first')).desired, vm.desired)
  const events = (await c.state(VIEW)).events.filter((e) => e.index > before)
  assert.not.ok(events.some((e) => /dash-first desired|admin/.test(e.text)), JSON.stringify(events))
  assert.ok(id != null)

  async function signedSubmitWith (headers: Record<string, string>, signer: Signer): Promise<Awaited<ReturnType<typeof postAction>>> {
    const p = await postAction(VIEW, '/api/prepare', { method: 'vm.stop', params: { vm: 'dash-first' } })
    const cmd = p.json.cmd as Command
    const auth = await signCommand(signer, cmd, `csrf-${Math.random()}`, p.json.until as number)
    return await postAction(VIEW, '/api/submit', { method: 'vm.stop', params: { vm: 'dash-first' }, cmd, auth: { ...auth, sig: Buffer.from(auth.sig).toString('base64') } }, headers)
  }
})

test('actions by clicks once an admin added the browser\'s key: stop, migrate, start a VM; drain and undrain a node', async () => {
  await page.goto(c.url(VIEW, '/#vm=dash-first'))
  await page.waitForSelector('#browser-id', { timeout: 15_000 })
  assert.match(await page.textContent('#access') ?? '', /not an admin\. To act from here, run blixard admin add 12D3KooW\w+ --name dashboard/)
  const browserId = await page.textContent('#browser-id') ?? ''
  const added = await c.cli(['admin', 'add', browserId, '--name', 'dashboard'])
  assert.is(added.code, 0, added.stderr)
  await page.waitForSelector('#vm-stop', { timeout: 15_000 })
  assert.match(await page.textContent('#access') ?? '', /^Actions on: this browser signs as admin/)
  // the key survives a reload (IndexedDB), and no script can read it out (non-extractable)
  await page.reload()
  await page.waitForSelector('#vm-stop', { timeout: 15_000 })
  assert.is(await page.textContent('#browser-id'), browserId)
  assert.is(await page.evaluate('(async () => { const db = await new Promise((r) => { const q = indexedDB.open("blixard-dashboard", 1); q.onsuccess = () => r(q.result) }); const p = await new Promise((r) => { const q = db.transaction("keys").objectStore("keys").get("admin"); q.onsuccess = () => r(q.result) }); return p.privateKey.extractable })()'), false)

  await page.click('#vm-stop')
  await page.waitForFunction('document.getElementById("action-status").textContent === "stop dash-first: done"', undefined, { timeout: 30_000 })
  await until('dash-first desired stopped', 15_000, async () => (await vmState('dash-first')).desired === 'stopped')
  await page.waitForFunction('document.querySelector("#vm-status .desired")?.textContent === "stopped"', undefined, { timeout: 10_000 })
  // a stopped VM moves cold: to the first other node the page offers
  await until('dash-first stopped', 60_000, async () => (await vmState('dash-first')).phase === 'stopped')
  await page.waitForSelector('#vm-migrate:has-text("Migrate (cold)")', { timeout: 15_000 })
  const from = (await vmState('dash-first')).nodeName
  const to = await page.$eval('#vm-migrate-to option:nth-child(2)', (o) => o.textContent ?? '')
  assert.ok(to !== from && /^node\d$/.test(to), `${to} from ${from ?? '-'}`)
  await page.selectOption('#vm-migrate-to', to)
  await page.click('#vm-migrate')
  await page.waitForFunction('document.getElementById("action-status").textContent === "migrate dash-first: done"', undefined, { timeout: 30_000 })
  await until(`dash-first on ${to}`, 15_000, async () => (await vmState('dash-first')).nodeName === to)
  await page.click('#vm-start')
  await page.waitForFunction('document.getElementById("action-status").textContent === "start dash-first: done"', undefined, { timeout: 30_000 })
  await until('dash-first desired running', 15_000, async () => (await vmState('dash-first')).desired === 'running')
  // the VM's own history tells the story, by name, as signed by the browser's admin key
  await page.waitForFunction('["VM dash-first desired stopped", "VM dash-first desired running"].every((t) => [...document.querySelectorAll("#vm-history .text")].some((td) => td.textContent === t)) && [...document.querySelectorAll("#vm-history .text")].some((td) => /^VM dash-first moving cold to node\\d/.test(td.textContent))', undefined, { timeout: 15_000 })

  await page.screenshot({ path: join(ROOT, 'test', 'out', 'dashboard-vm.png'), fullPage: true })

  // a node without VMs, when there is one: its drain moves nothing (a live evacuation is migrate.test's)
  const hosts = new Set((await c.state(VIEW)).vms.map((v) => v.nodeName))
  const target = (c.nodes.find((n) => !hosts.has(n.name)) ?? c.nodes.find((n) => n.name !== to))?.name ?? 'node1'
  await page.click(`#nodes tr[data-node="${target}"] .name a`)
  await page.waitForSelector('#node-drain', { timeout: 10_000 })
  await page.click('#node-drain')
  await page.waitForFunction(`[...document.querySelectorAll('#nodes tr[data-node="${target}"] .state')].some((td) => td.textContent.startsWith('draining'))`, undefined, { timeout: 30_000 })
  assert.match(await page.textContent('#node-action-status') ?? '', new RegExp(`^drain ${target}: done$`))
  await page.screenshot({ path: join(ROOT, 'test', 'out', 'dashboard-actions.png'), fullPage: true })
  await page.click('#node-undrain')
  await page.waitForFunction(`[...document.querySelectorAll('#nodes tr[data-node="${target}"] .state')].some((td) => td.textContent === 'ready')`, undefined, { timeout: 30_000 })
  await page.goto(c.url(VIEW, '/'))
  await page.waitForSelector('#nodes tbody tr', { timeout: 15_000 })
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
