// mDNS discovery for real, but never in the host's network namespace: three namespaces joined by
// a bridge (veth pairs, 10.77.0.x/24, a multicast route in each), one Blixard host per namespace,
// no bootstrap address. Each must find and connect to the other two. Needs root and `ip netns`.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeClusterKey } from '../../node/keygen.ts'

const tag = `bx${process.pid % 100000}`
const BR = `${tag}br`
const NS = [1, 2, 3].map(i => `${tag}n${i}`)
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
const procs: ChildProcess[] = []
let dir = ''

function setup (): void {
  ip('netns', 'add', BR)
  ip('-n', BR, 'link', 'set', 'lo', 'up')
  ip('-n', BR, 'link', 'add', 'br0', 'type', 'bridge')
  ip('-n', BR, 'link', 'set', 'br0', 'up')
  NS.forEach((ns, i) => {
    ip('netns', 'add', ns)
    ip('-n', BR, 'link', 'add', `v${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    ip('-n', BR, 'link', 'set', `v${i + 1}`, 'master', 'br0')
    ip('-n', BR, 'link', 'set', `v${i + 1}`, 'up')
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    ip('-n', ns, 'addr', 'add', `10.77.0.${i + 1}/24`, 'dev', 'eth0')
    ip('-n', ns, 'link', 'set', 'eth0', 'up')
    // without a multicast route mDNS fails silently (recipe)
    ip('-n', ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0')
  })
}

function cleanup (): void {
  for (const ns of [...NS, BR]) { try { ip('netns', 'del', ns) } catch { /* not created */ } }
}

interface Line { ready?: string, connected?: string, ms?: number }

test.before(async () => {
  if (process.getuid?.() !== 0) throw new Error('the mDNS namespace test needs root (ip netns)')
  dir = await mkdtemp(join(tmpdir(), 'blixard-mdns-'))
  await writeClusterKey(join(dir, 'cluster.key'))
  cleanup()
  setup()
})

test.after(async () => {
  for (const p of procs) p.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 300))
  for (const p of procs) if (p.exitCode == null) p.kill('SIGKILL')
  cleanup()
  await rm(dir, { recursive: true, force: true })
  const left = ip('netns', 'list')
  assert.not.ok(left.includes(tag), `namespaces left behind: ${left}`)
})

test('three nodes in three namespaces discover each other by mDNS and connect, no bootstrap address', async () => {
  const lines: Line[][] = NS.map(() => [])
  NS.forEach((ns, i) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/net/mdns-node.ts', `/ip4/10.77.0.${i + 1}/tcp/4001`, join(dir, 'cluster.key')], {
      cwd: join(import.meta.dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit']
    })
    procs.push(p)
    let buf = ''
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) { lines[i].push(JSON.parse(buf.slice(0, nl)) as Line); buf = buf.slice(nl + 1) }
    })
  })
  const t0 = Date.now()
  const ids = (): Array<string | undefined> => lines.map(l => l.find(x => x.ready != null)?.ready)
  const peersOf = (i: number): Set<string> => new Set(lines[i].filter(x => x.connected != null).map(x => x.connected!))
  for (;;) {
    const all = ids()
    if (all.every(id => id != null) && NS.every((_, i) => all.every((id, j) => j === i || peersOf(i).has(id!)))) break
    if (Date.now() - t0 > 90_000) assert.unreachable(`not all connected: ${JSON.stringify(lines)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const lastMs = Math.max(...lines.flat().map(x => x.ms ?? 0))
  console.log(`  3 nodes in namespaces fully connected by mDNS: every connection within ${lastMs} ms of its host starting (${Date.now() - t0} ms after spawn, process start-up included)`)
})

test.run()
