// The operator's day, every check against one live 3-node cluster through the real `blixard` CLI
// (one cluster for all: each start costs three daemons and a leader election): names where people
// read (ids only with -o wide or --json), admission that fails fast, quotas, a JSON document (or
// NDJSON for streams) from every command with --json and the exit code its error kind documents,
// events that say what happened by name, node health that does not show a silent node as ready, a
// clear error from an address that is not a Blixard node, a console, and a drain that warns before
// stranding a VM. One guest boots (the console's, pinned to node3, which the drain test then
// strands) and one more for the two-drains race; every other VM is a record that never boots.
// Ports 17461-17463 (HTTP 17561-17563). The CLI checks that need no cluster are in cli.test.ts.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { CLI_TIMEOUT_MS, OpsCluster, ROOT, jsonError, runCli, until } from './cluster.ts'
import { readClusterKey, writeClusterKey } from '../../node/keygen.ts'
import { loadTinyGuest } from '../../node/qemu/tiny-guest.ts'
import type { CliResult } from './cluster.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { createBlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { signingClient } from '../../node/cli/signing.ts'
import { keySigner } from '../../protocols/auth.ts'
import { BlixardError } from '../../protocols/errors.ts'

const PEER_ID = /12D3KooW[1-9A-HJ-NP-Za-km-z]{44}/
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/

// A 120 s lease (the default is 9 s): a stopped node stays `unreachable` (reports stale, lease not
// yet expired) long enough for a CLI that takes seconds to start on a loaded host to see it. The
// nodes inherit this environment.
process.env.BLIXARD_LEASE_MS = '120000'

let c: OpsCluster | null = null
// the start is slow on a loaded host (three daemons compiling their TypeScript at once)
// node3 carries a label no other node has: a VM pinned to it fits nowhere else (the drain test)
const cluster = async (): Promise<OpsCluster> => { c ??= await OpsCluster.start('operator', 17461, 3, 240_000, (i) => i === 2 ? ['--label', 'pin=here'] : []); return c }
test.after(async () => { await c?.stop() })

async function cli (args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  return await (await cluster()).cli(args, {}, timeoutMs)
}

/** Human output of a command that must succeed. */
async function human (args: string[]): Promise<string> {
  const r = await cli(args)
  assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** Runs a command with --json and returns the parsed document (exit 0 required). */
async function json<T> (args: string[]): Promise<T> {
  const r = await cli([...args, '--json'])
  assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  assert.ok(r.json != null, `${args.join(' ')} --json printed: ${r.stdout.slice(0, 200)}`)
  return r.json as T
}

/** Runs a command that streams until `re` shows on its stdout (or CLI_TIMEOUT_MS passed), then
 * stops it: a fixed window is either too short on a loaded host or wasted on a quiet one. */
async function streamUntil (args: string[], re: RegExp): Promise<{ stdout: string, stderr: string }> {
  const cl = await cluster()
  const p = spawn(process.execPath, [join(ROOT, 'bin', 'blixard.js'), ...args], { cwd: ROOT, env: { ...process.env, ...cl.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const got = { stdout: '', stderr: '' }
  p.stdout.on('data', (d: Buffer) => { got.stdout += d.toString() })
  p.stderr.on('data', (d: Buffer) => { got.stderr += d.toString() })
  try {
    await until(`${args.join(' ')} to print ${String(re)}`, CLI_TIMEOUT_MS, () => re.test(got.stdout) || p.exitCode != null, 200)
  } finally { p.kill('SIGKILL') }
  return got
}

/** What a stream printed up to its last complete line. */
const completeLines = (stdout: string): string[] => stdout.slice(0, stdout.lastIndexOf('\n') + 1).split('\n').filter((l) => l !== '')

test('names where people read: status, nodes, vm list/show and events name nodes and VMs; ids only with -o wide or --json', async () => {
  const cl = await cluster()
  for (const args of [['status'], ['nodes'], ['node', 'show', 'node2']]) {
    // a node's addresses end in its id (/p2p/12D3…): what --peer takes, so they stay
    const text = (await human(args)).split('\n').filter((l) => !l.startsWith('Addresses:')).join('\n')
    assert.not.match(text, PEER_ID, `${args.join(' ')} shows a peer id: ${text}`)
  }
  const wideStatus = await human(['status', '-o', 'wide'])
  for (const n of cl.nodes) assert.ok(wideStatus.includes(n.peerId), `status -o wide has ${n.name}'s id: ${wideStatus}`)
  const wideNodes = await human(['nodes', '-o', 'wide'])
  for (const n of cl.nodes) assert.ok(wideNodes.includes(n.peerId), `nodes -o wide has ${n.name}'s id`)
  assert.is((await cli(['nodes', '-o', 'json'])).json != null, true, '-o json is --json')
  jsonError(await cli(['nodes', '-o', 'yaml', '--json']), 'Usage', 2)
  const vm = await json<{ id: string }>(['vm', 'create', 'names-probe', '--no-start'])
  assert.not.match(await human(['vm', 'list']), UUID)
  assert.ok((await human(['vm', 'list', '-o', 'wide'])).includes(vm.id))
  assert.not.match(await human(['vm', 'show', 'names-probe']), UUID)
  await human(['network', 'create', 'names-net', '--subnet', '10.77.0.0/24'])
  // vm watch: a timestamp and the VM's name on every line (a stream: stopped once it printed the VM)
  const watch = await streamUntil(['vm', 'watch', 'names-probe'], /names-probe pending/)
  assert.match(watch.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}names-probe pending/m, watch.stdout + watch.stderr)
  await human(['vm', 'delete', 'names-probe', '--force'])
  const ev = await human(['events', '--no-follow', '--since', '30m'])
  assert.match(ev, / {2}VM names-probe deleted$/m, 'a deleted VM by name')
  assert.not.match(ev, UUID, 'no VM uuid in events')
  assert.match(ev, / {2}network names-net created \(10\.77\.0\.0\/24\)$/m, 'a network by name')
  // membership changes applied from the log, on whichever node answers; the autopilot's reasons
  // (leader only) name nodes too: no peer id but the admin's own (admins are not nodes)
  assert.match(ev, / {2}membership: (node\d|…\w{12}) becomes a voter$/m, ev)
  for (const line of ev.split('\n').filter((l) => !l.includes(' admin '))) assert.not.match(line, PEER_ID, line)
})

test('admission fails fast: a VM that fits no node is refused at once (exit 4, the reasons by node name); --queue accepts it pending, saying why', async () => {
  const cl = await cluster()
  const r = await cl.cli(['vm', 'create', 'too-big', '--vcpus', '200', '--json'])
  const e = jsonError(r, 'NoCapacity', 4)
  assert.match(e.message, /^no node fits VM too-big: node\d: cpu: \d/)
  // the reasons name each filter once ("cpu: …", not "cpu: cpu: …")
  assert.not.match(e.message, /cpu: cpu:/)
  assert.match(e.message, /--queue/)
  assert.not.ok((await cl.state(0)).vms.some((v) => v.name === 'too-big'), 'nothing recorded')
  // with --wait too: refused at once, not after waiting out --timeout and blaming the cluster (exit 5)
  const started = Date.now()
  const w = await cl.cli(['vm', 'create', 'too-big', '--vcpus', '64', '--wait', '--timeout', '60', '--json'], {}, 90_000)
  assert.match(jsonError(w, 'NoCapacity', 4).message, /^no node fits VM too-big: node\d: cpu: /)
  assert.ok(Date.now() - started < 60_000, `answered before --timeout ran out: ${Date.now() - started} ms`)
  const q = await cl.cli(['vm', 'create', 'too-big', '--vcpus', '200', '--queue'])
  assert.is(q.code, 0, q.stderr)
  assert.match(q.stdout, /^VM too-big created, pending: node\d: cpu: /)
  // pending but meant to run: a delete without --force is refused off a terminal, and nothing changes
  const refused = jsonError(await cl.cli(['vm', 'delete', 'too-big', '--json']), 'InvalidCommand', 2)
  assert.match(refused.message, /^VM too-big is pending: not deleting it without confirmation/)
  assert.match(refused.next, /--force/)
  assert.ok((await cl.state(0)).vms.some((v) => v.name === 'too-big'), 'still there')
  assert.is((await json<{ id: string }>(['vm', 'delete', 'too-big', '--force'])).id.length > 0, true)
})

test('volume create with no node that can reach Ceph: refused at once (exit 4, naming the config), nothing recorded', async () => {
  const cl = await cluster()
  const e = jsonError(await cl.cli(['volume', 'create', 'no-ceph', '--size', '1', '--json']), 'NoCapacity', 4)
  assert.match(e.message, /^cannot create volume no-ceph: no node in the cluster can reach Ceph to make its RBD image, so nothing was recorded/)
  assert.match(e.message, /ceph\.conf/)
  assert.equal(await json<unknown[]>(['volume', 'list']), [])
})

test('quotas: an admin sets one, the over-quota create is refused with the numbers (exit 4), quota show --json counts; a VM without --project is capped by the quota of default', async () => {
  const cl = await cluster()
  const set = await json<{ project: string, limits: Record<string, number> }>(['quota', 'set', 'team-q', '--vms', '1', '--vcpus', '2'])
  assert.equal(set.limits, { vcpus: 2, vms: 1 })
  const vm = await json<{ id: string, spec: { project?: string } }>(['vm', 'create', 'q-one', '--project', 'team-q', '--no-start'])
  assert.is(vm.spec.project, 'team-q')
  const e = jsonError(await cl.cli(['vm', 'create', 'q-two', '--project', 'team-q', '--no-start', '--json']), 'QuotaExceeded', 4)
  assert.match(e.message, /project team-q quota exceeded by VM q-two: vms: 1 used \+ 1 asked > 1 VMs allowed/)
  assert.not.ok((await cl.state(0)).vms.some((v) => v.name === 'q-two'), 'nothing recorded')
  const shown = await json<Array<{ project: string, usage: { vms: number, vcpus: number }, limits: { vms: number } | null }>>(['quota', 'show', 'team-q'])
  assert.equal(shown.map((q) => [q.project, q.usage.vms, q.usage.vcpus, q.limits?.vms]), [['team-q', 1, 1, 1]])
  assert.is((await json<{ limits: null }>(['quota', 'set', 'team-q', '--clear'])).limits, null)
  await json(['vm', 'delete', 'q-one', '--yes'])
  // no --project: the project default, which a quota caps like any other (leaving the flag out dodges nothing)
  const plain = await json<{ spec: { project?: string } }>(['vm', 'create', 'q-plain', '--no-start'])
  assert.is(plain.spec.project, 'default')
  const held = (await json<Array<{ project: string, usage: { vms: number } }>>(['quota', 'show', 'default']))[0].usage.vms
  assert.ok(held >= 1, 'q-plain counts in default')
  await json(['quota', 'set', 'default', '--vms', String(held)])
  const e2 = jsonError(await cl.cli(['vm', 'create', 'q-plain2', '--no-start', '--json']), 'QuotaExceeded', 4)
  assert.match(e2.message, `project default quota exceeded by VM q-plain2: vms: ${held} used + 1 asked > ${held} VMs allowed`)
  await json(['quota', 'set', 'default', '--clear'])
  await json(['vm', 'delete', 'q-plain', '--yes'])
  // the rebalancer's plan, read-only, and the mode the leader's rebalancer runs in (join by default)
  const plan = await json<{ before: number, after: number, moves: unknown[], mode: string }>(['rebalance', '--dry-run'])
  assert.ok(plan.after <= plan.before && Array.isArray(plan.moves) && plan.mode === 'join', JSON.stringify(plan))
})

test('every cluster command prints one JSON document with --json', async () => {
  const cl = await cluster()
  const st = await json<{ leader: string, term: number, voters: string[] }>(['status'])
  assert.is(st.voters.length, 3)
  const nodes = await json<Array<{ name: string, role: string, leader: boolean }>>(['nodes'])
  assert.equal(nodes.map((n) => n.name).sort(), ['node1', 'node2', 'node3'])
  assert.is(nodes.filter((n) => n.leader).length, 1)
  assert.is((await json<{ name: string }>(['node', 'show', 'node2'])).name, 'node2')
  assert.is((await json<{ state: string }>(['node', 'drain', 'node3'])).state, 'draining')
  assert.is((await json<{ state: string }>(['node', 'undrain', 'node3'])).state, 'ready')
  // a record only: created stopped, and no node has the label, so its start leaves it pending
  // rather than booting a guest (a boot is the console test's, below)
  const vm = await json<{ id: string, spec: { name: string } }>(['vm', 'create', 'cli-a', '--memory', '96M', '--no-start', '--constraint', 'cli-test-nowhere exists'])
  assert.is(vm.spec.name, 'cli-a')
  assert.ok((await json<Array<{ id: string }>>(['vm', 'list'])).some((v) => v.id === vm.id))
  assert.is((await json<{ id: string }>(['vm', 'show', 'cli-a'])).id, vm.id)
  const ex = await json<{ decision: { nodes: Array<{ feasible: boolean }> } }>(['vm', 'explain', 'cli-a'])
  assert.is(ex.decision.nodes.length, 3, 'a verdict per node')
  assert.is((await json<{ desired: string }>(['vm', 'stop', 'cli-a'])).desired, 'stopped')
  assert.is((await json<{ desired: string }>(['vm', 'start', 'cli-a'])).desired, 'running')
  const admins = await json<Array<{ peerId: string }>>(['admin', 'list'])
  assert.ok(admins.some((a) => a.peerId === cl.adminId))
  const other = (await runCli(['whoami', '--json'], { BLIXARD_CONFIG_DIR: join(cl.dir, 'second') })).json as { peerId: string }
  assert.is((await json<{ peerId: string }>(['admin', 'add', other.peerId, '--name', 'second'])).peerId, other.peerId)
  assert.is((await json<{ peerId: string }>(['admin', 'remove', other.peerId])).peerId, other.peerId)
  assert.equal(await json<{ id: string }>(['vm', 'delete', 'cli-a', '--yes']), { id: vm.id })
})

test('streams print NDJSON with --json: events and vm watch', async () => {
  const cl = await cluster()
  // events keep the last 100 lines: make one of our own instead of relying on the cluster's first
  await json(['vm', 'create', 'ev-probe', '--no-start'])
  // each streams until stopped: read until ev-probe's line is complete, then stopped
  const ev = await streamUntil(['events', '--json'], /"text":"VM ev-probe created[^\n]*\n/)
  const lines = completeLines(ev.stdout)
  assert.ok(lines.length >= 3, `events: ${ev.stdout.slice(0, 200)} ${ev.stderr}`)
  for (const l of lines) JSON.parse(l)
  assert.ok(lines.some((l) => (JSON.parse(l) as { text: string }).text.startsWith('VM ev-probe created')), lines.slice(-5).join('\n'))
  const watch = await streamUntil(['vm', 'watch', '--json'], /"name":"ev-probe"[^\n]*\n/)
  const puts = completeLines(watch.stdout).map((l) => JSON.parse(l) as { type: string, vm?: { spec: { name: string } } })
  assert.ok(puts.some((e) => e.type === 'put' && e.vm?.spec.name === 'ev-probe'), watch.stdout.slice(0, 400) + watch.stderr)
  // shell completion's names come from the cluster
  const comp = await cl.cli(['__complete', 'vms'])
  assert.is(comp.code, 0, comp.stderr)
  assert.ok(comp.stdout.split('\n').includes('ev-probe'), comp.stdout)
  assert.equal((await cl.cli(['__complete', 'nodes'])).stdout.trim().split('\n').sort(), ['node1', 'node2', 'node3'])
  // --since: only what happened in that window; --no-follow: the backlog, then exit 0 on its own
  const recent = await cl.cli(['events', '--since', '2m', '--no-follow', '--json'], {}, 20_000)
  assert.is(recent.code, 0, recent.stderr)
  const evs = recent.stdout.trim().split('\n').map((l) => JSON.parse(l) as { at: number, text: string })
  assert.ok(evs.some((e) => e.text.startsWith('VM ev-probe created')), recent.stdout.slice(-400))
  assert.ok(evs.every((e) => e.at >= Date.now() - 3 * 60_000), 'nothing older than the window')
  const none = await cl.cli(['events', '--since', '1ms', '--no-follow', '--json'], {}, 20_000)
  assert.is(none.code, 0, none.stderr)
  assert.ok(none.stdout.trim().split('\n').filter((l) => l !== '').length <= 1, none.stdout)
  jsonError(await cl.cli(['events', '--since', 'yesterday', '--json']), 'Usage', 2)
  await json(['vm', 'delete', 'ev-probe'])
})

test('exit codes by kind against the cluster: not found 3, unauthorized 6, usage 2', async () => {
  const cl = await cluster()
  const nf = jsonError(await cl.cli(['vm', 'show', 'no-such-vm', '--json']), 'NotFound', 3)
  assert.match(nf.message, /no-such-vm/)
  assert.match(nf.next, /blixard vm list/)
  jsonError(await cl.cli(['node', 'show', 'node9', '--json']), 'NotFound', 3)
  const human = await cl.cli(['vm', 'delete', 'no-such-vm'])
  assert.is(human.code, 3)
  assert.is(human.stdout, '')
  assert.match(human.stderr, /^Error: no VM named or with id 'no-such-vm'\nCheck the name with `blixard vm list`/)
  const un = jsonError(await cl.cli(['vm', 'create', 'intruder', '--json'], { BLIXARD_CONFIG_DIR: join(cl.dir, 'not-admin') }), 'Unauthorized', 6)
  assert.match(un.next, /blixard admin add/)
  // reads need no admin rights
  assert.is((await cl.cli(['vm', 'list', '--json'], { BLIXARD_CONFIG_DIR: join(cl.dir, 'not-admin') })).code, 0)
  jsonError(await cl.cli(['vm', 'create', 'x', '--restart', 'sometimes', '--json']), 'Usage', 2)
})

test('fast honest failures: a missing --disk or --network names the flag and where to look; an overlapping subnet names the other network and what to do (a VM that fits no node: the admission test above)', async () => {
  const disk = jsonError(await cli(['vm', 'create', 'no-disk', '--disk', 'nosuchvol', '--json']), 'NotFound', 3)
  assert.is(disk.message, '--disk nosuchvol: no volume of that name; VM no-disk was not created')
  assert.match(disk.next, /blixard volume list/)
  const net = jsonError(await cli(['vm', 'create', 'no-net', '--network', 'nosuchnet', '--json']), 'NotFound', 3)
  assert.match(net.next, /blixard network list/)
  await human(['network', 'create', 'wide-net', '--subnet', '10.88.0.0/16'])
  const overlap = jsonError(await cli(['network', 'create', 'inner-net', '--subnet', '10.88.4.0/24', '--json']), 'Conflict', 4)
  assert.match(overlap.message, /^subnet 10\.88\.4\.0\/24 overlaps network wide-net \(10\.88\.0\.0\/16\)/)
  assert.match(overlap.next, /^Pick a subnet outside every other network/)
})

test('a silent node is not shown as ready: `unreachable since` (reports stale, lease not expired) in nodes, status and the dashboard; ready again once it speaks', async () => {
  const cl = await cluster()
  const n3 = cl.nodes[2]
  const pid = n3.proc?.pid
  assert.ok(pid != null, 'node3 runs')
  process.kill(pid, 'SIGSTOP')
  try {
    // the dashboard's feed: unreachable with since when, not the green ready it showed before
    const row = await until('node3 unreachable on the dashboard', 30_000, async () => {
      const r = (await cl.state(0)).nodes.find((n) => n.name === 'node3')
      return r?.state === 'unreachable' ? r : null
    }, 250)
    assert.ok(row.unreachableSince != null && row.unreachableSince <= Date.now(), 'since when')
    assert.is(row.downSince, null)
    const nodes = await human(['nodes'])
    assert.match(nodes, /^node3 .* unreachable since \d\d:\d\d:\d\dZ \(\d+s\)/m, nodes)
    assert.match(nodes, /^node1 .* ready /m, nodes)
    const health = await json<Array<{ name: string, health: string }>>(['nodes'])
    assert.is(health.find((n) => n.name === 'node3')?.health, 'unreachable')
    const status = await human(['status'])
    assert.match(status, /^Voters: .*node3 \(unreachable since \d\d:\d\d:\d\dZ/m, status)
  } finally { process.kill(pid, 'SIGCONT') }
  await until('node3 ready again on the dashboard', 60_000, async () => (await cl.state(0)).nodes.find((n) => n.name === 'node3')?.state === 'ready', 250)
  assert.match(await human(['nodes']), /^node3 .* ready /m)
})

test('an address that does not speak Blixard (or speaks it with another cluster key) gets an error that says so, not a wire-format message', async () => {
  const cl = await cluster()
  // a service that answers anything with an HTTP error page (2740 bytes: the length libp2p read as a frame)
  const server = createServer((sock) => {
    sock.on('error', () => {})
    sock.once('data', () => { sock.end(`HTTP/1.1 400 Bad Request\r\nContent-Length: 2740\r\n\r\n${'x'.repeat(2740)}`) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  try {
    const e = jsonError(await cli(['status', '--peer', `/ip4/127.0.0.1/tcp/${port}`, '--json']), 'Unavailable', 5)
    assert.match(e.message, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/${port} answered, but not as a Blixard node of this cluster: either another service listens there, or a Blixard node whose cluster key differs`), e.message)
    assert.match(e.next, /libp2p port/)
  } finally { server.close() }
  // a Blixard node of another cluster (another key): the same answer
  const otherKey = join(cl.dir, 'other.key')
  await writeClusterKey(otherKey)
  const e2 = jsonError(await cli(['status', '--cluster-key', otherKey, '--json']), 'Unavailable', 5)
  assert.match(e2.message, /answered, but not as a Blixard node of this cluster/, e2.message)
  assert.match(e2.next, /cluster-key|cluster's key/)
  // nothing listening: says so
  const e3 = jsonError(await cli(['status', '--peer', '/ip4/127.0.0.1/tcp/1', '--json']), 'Unavailable', 5)
  assert.match(e3.message, /nothing listens there/)
  // a reader that goes away early (events | head) ends the CLI quietly, not with an EPIPE trace
  const piped = spawnSync('sh', ['-c', `node ${join(ROOT, 'bin', 'blixard.js')} events --no-follow | head -c 1`], { env: { ...process.env, ...cl.env }, encoding: 'utf8', timeout: CLI_TIMEOUT_MS })
  assert.not.match(piped.stderr, /EPIPE|Unhandled/, piped.stderr)
})

/** The one guest the single-VM tests boot: con-probe, pinned to node3 (the only node labelled
 * pin=here) so that the drain test can strand it after the console test typed into it. Created
 * by whichever of them runs first, with `vm create --wait`. */
let pinned: Promise<CliResult> | null = null
async function pinnedGuest (): Promise<CliResult> {
  pinned ??= (async () => {
    await loadTinyGuest() // the nodes boot this guest: fail here, clearly, when it was never built
    return await cli(['vm', 'create', 'con-probe', '--memory', '96M', '--constraint', 'pin==here', '--wait', '--timeout', '300'], 320_000)
  })()
  return await pinned
}

test('vm console: what is typed reaches the guest\'s shell through any node, its answer comes back, Ctrl-] detaches and the guest runs on', async () => {
  const cl = await cluster()
  const created = await pinnedGuest()
  assert.is(created.code, 0, created.stderr)
  const host = (await cl.state(0)).vms.find((v) => v.name === 'con-probe')?.nodeName
  // create --wait ends by naming the host, not its peer id
  assert.match(created.stdout, new RegExp(`^VM con-probe is running on ${host ?? 'node\\d'}( \\(.*\\))?$`, 'm'), created.stdout)
  assert.not.match(created.stdout, PEER_ID)
  // ask a node that is not the VM's host: output is relayed, input goes to the host over the CLI's own connection
  const via = cl.nodes.find((n) => n.name !== host) ?? cl.nodes[0]
  const p = spawn(process.execPath, [join(ROOT, 'bin', 'blixard.js'), 'vm', 'console', 'con-probe', '--tail', '0'], {
    cwd: ROOT, env: { ...process.env, ...cl.env, BLIXARD_PEER: via.addr }, stdio: ['pipe', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number>((resolve) => p.on('exit', (code) => { resolve(code ?? 128) }))
  try {
    await until('the console attached', CLI_TIMEOUT_MS, () => stderr.includes('Detach with Ctrl-]'), 200)
    assert.match(stderr, new RegExp(`^Connected to the serial console of VM con-probe on ${host ?? 'node\\d'}\\. Detach with Ctrl-\\] \\(the guest keeps running\\)\\.`), stderr)
    // the tiny guest runs each console line in a shell; the sum proves the shell ran it (the
    // console echoes the typed line itself too, with $((...)) unexpanded)
    p.stdin.write('echo console-sum=$((40+2))\n')
    await until('the guest\'s answer on the console', 120_000, () => /^console-sum=42\r?$/m.test(stdout) && /BLIXARD-CMD-DONE rc=0/.test(stdout), 200)
    p.stdin.write(Buffer.from([0x1d]))
    assert.is(await exited, 0, stderr)
    assert.match(stderr, /Detached from VM con-probe \(it keeps running\)/)
  } finally { if (p.exitCode == null) p.kill('SIGKILL') }
  assert.is((await cl.state(0)).vms.find((v) => v.name === 'con-probe')?.phase, 'running', 'the guest runs on after the detach')
  // typing into a guest is an admin's (a root shell on most guests): another identity is refused
  const stranger = spawnSync(process.execPath, [join(ROOT, 'bin', 'blixard.js'), 'vm', 'console', 'con-probe', '--tail', '0'], {
    cwd: ROOT, env: { ...process.env, ...cl.env, BLIXARD_CONFIG_DIR: join(cl.dir, 'not-admin') }, input: 'echo intruder\n', encoding: 'utf8', timeout: CLI_TIMEOUT_MS
  })
  assert.is(stranger.status, 6, stranger.stderr)
  assert.match(stranger.stderr, /is not an admin; 'vm\.consoleInput' changes the cluster/)
})

test('node drain: refused (exit 4, naming the VM and why) when a VM would be stranded, unless --force; a node holding no VMs is drained at once and says so; --wait ends in one drained line with the node empty', async () => {
  const cl = await cluster()
  const created = await pinnedGuest()
  assert.is(created.code, 0, created.stderr)
  await until('con-probe placed on node3', 30_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'con-probe')?.nodeName === 'node3')
  // vm show names the VM's node (its id only with -o wide)
  const placed = await human(['vm', 'show', 'con-probe'])
  assert.match(placed, /^Node: +node3$/m, placed)
  assert.not.match(placed, PEER_ID, placed)
  const refused = jsonError(await cli(['node', 'drain', 'node3', '--json']), 'Conflict', 4)
  assert.match(refused.message, /^draining node node3 would strand 1 VM\(s\) that no other node can take now: con-probe \(node\d: constraint: pin == here fails/, refused.message)
  assert.match(refused.message, /; node node3 was not drained$/)
  assert.match(refused.next, /--force: they stop and stay pending/)
  assert.is((await cl.state(0)).nodes.find((n) => n.name === 'node3')?.state, 'ready', 'nothing changed')
  const forced = await cli(['node', 'drain', 'node3', '--force'])
  assert.is(forced.code, 0, forced.stderr)
  assert.match(forced.stderr, /^Node node3 is draining: its 1 VM\(s\) move/m)
  // the stranded VM's reason names the node it left, in vm show and vm list (the id only with -o wide)
  await until('con-probe evacuated', 60_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'con-probe')?.reason.startsWith('evacuated from draining'), 250)
  const shown = await human(['vm', 'show', 'con-probe'])
  assert.match(shown, /^Reason: +evacuated from draining node3; no other node fits$/m, shown)
  assert.not.match(shown, PEER_ID, shown)
  const listed = await human(['vm', 'list'])
  assert.match(listed, /evacuated from draining node3/, listed)
  assert.not.match(listed, PEER_ID, listed)
  // gone before node3 takes VMs again: undrained, it would boot there once more
  await human(['vm', 'delete', 'con-probe', '--force'])
  await human(['node', 'undrain', 'node3'])
  // nothing to move: not "its VMs are being moved"
  const hosts = new Set((await cl.state(0)).vms.map((v) => v.nodeName))
  const idle = ['node1', 'node2'].find((n) => !hosts.has(n)) ?? 'node1'
  const empty = await cli(['node', 'drain', idle])
  assert.is(empty.code, 0, empty.stderr)
  assert.match(empty.stderr, new RegExp(`^Node ${idle} is drained: it holds no VMs`, 'm'))
  assert.not.match(empty.stderr, /move/)
  await human(['node', 'undrain', idle])
  // drain --wait follows each VM out and ends in one `drained` line (a stopped VM moves cold: no boot)
  await json(['vm', 'create', 'parked', '--no-start'])
  await json(['vm', 'migrate', 'parked', '--to', 'node1', '--cold'])
  await until('parked on node1', 60_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'parked')?.nodeName === 'node1', 250)
  const waited = await cli(['node', 'drain', 'node1', '--wait', '--json'])
  assert.is(waited.code, 0, waited.stderr)
  const lines = completeLines(waited.stdout).map((l) => JSON.parse(l) as Record<string, unknown>)
  assert.equal(lines.at(-1), { node: 'node1', drained: true, live: 0, cold: 1 }, waited.stdout)
  assert.ok(lines.some((l) => l.vm === 'parked' && l.how === 'cold' && l.from === 'node1'), waited.stdout)
  const after = await cl.state(0)
  assert.equal(after.vms.filter((v) => v.nodeName === 'node1').map((v) => v.name), [], 'node1 holds nothing once drain --wait ended')
  assert.is(after.nodes.find((n) => n.name === 'node1')?.state, 'draining', 'and takes nothing new until undrained')
  await human(['node', 'undrain', 'node1'])
  await human(['vm', 'delete', 'parked', '--force'])
})

/** Two admin sessions each asking to drain a node, both prepared (the answering node ran its
 * stranding check on the same committed state) before either is submitted: the overlap two CLIs
 * started together only sometimes reach on a loaded host. Signed as the CLI signs (signingClient),
 * each through its own node. Resolves each to its record or its error. */
async function drainsPreparedTogether (cl: OpsCluster, targets: string[]): Promise<Array<{ node: string, result: { name: string, state: string } | BlixardError }>> {
  // the admin's own identity, as the CLI's: only an admin may ask a node to prepare a write
  const { privateKey } = await loadOrCreateIdentity(join(cl.dir, 'cli'))
  const host = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(cl.keyFile), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, dialTimeoutMs: 60_000 })
  let prepared = 0
  let allPrepared = (): void => {}
  const gate = new Promise<void>((resolve) => { allPrepared = resolve })
  try {
    return await Promise.all(targets.map(async (node, i) => {
      const plain = await RpcClient.connect(host, multiaddr(cl.nodes[i % cl.nodes.length].addr), { timeoutMs: CLI_TIMEOUT_MS, dialTimeoutMs: 60_000 })
      const held = new Proxy(plain, {
        get (target, prop) {
          if (prop !== 'call') { const v = Reflect.get(target, prop, target) as unknown; return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v }
          return async (method: string, params: unknown, opts?: unknown): Promise<unknown> => {
            if (method === 'cluster.submit') await gate
            const call = target.call.bind(target) as unknown as (m: string, p: unknown, o?: unknown) => Promise<unknown>
            try { return await call(method, params, opts) } finally { if (method === 'cluster.prepare' && ++prepared === targets.length) allPrepared() }
          }
        }
      })
      const admin = signingClient(held, keySigner(cl.adminId, privateKey))
      try {
        return { node, result: await admin.call('node.drain', { node }) as { name: string, state: string } }
      } catch (err) {
        if (err instanceof BlixardError) return { node, result: err }
        throw err
      } finally { await plain.close() }
    }))
  } finally { await host.stop() }
}

test('node drain, twice at once: of the only two nodes a VM fits (node1, node2), both drains prepared on one state, at most one lands without --force (the cluster decides, on apply)', async () => {
  const cl = await cluster()
  const pair = await cli(['vm', 'create', 'pair', '--memory', '96M', '--constraint', 'pin not exists', '--json'])
  assert.is(pair.code, 0, pair.stderr)
  const on = await until('pair placed', 30_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'pair')?.nodeName ?? null)
  assert.ok(on === 'node1' || on === 'node2', String(on))
  const results = await drainsPreparedTogether(cl, ['node1', 'node2'])
  const landed = results.filter((x) => !(x.result instanceof BlixardError))
  assert.is(landed.length, 1, `exactly one drain lands: ${results.map((x) => `${x.node}: ${x.result instanceof BlixardError ? `${x.result.kind} ${x.result.message}` : x.result.state}`).join(' | ')}`)
  const other = results.find((x) => x.result instanceof BlixardError)!
  const e = other.result as BlixardError
  assert.is(e.kind, 'Conflict', e.message)
  // refused where the write is decided, by the node that takes the submit (the other drain already
  // applied) or on apply (the plan it was prepared on no longer holds): either names the node that drains
  assert.match(e.message, new RegExp(`^draining node ${other.node} would strand `), e.message)
  // on apply: "node node1, which was to take them, is now draining"; at submit, the placer's reason
  // per node: "pair: node1: state: node is draining"; or, when the VM sat on the node whose drain
  // landed and that drain's evacuation moved it onto the other node before the other drain
  // applied, the other drain (prepared while it held nothing) "names no node to take them"
  assert.match(e.message, new RegExp(`(node ${landed[0]!.node}\\b|\\b${landed[0]!.node}: state: |would strand its 1 running VM\\(s\\) \\(pair\\): the drain names no node to take them).*; node ${other.node} was not drained`), e.message)
  const view = await cl.state(0)
  assert.equal(view.nodes.filter((n) => n.state === 'draining').map((n) => n.name), [landed[0]!.node])
  // the VM is not stranded: it ends on the node left ready (where it was, or moved there)
  await until(`pair on ${other.node}`, 120_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'pair')?.nodeName === other.node)
  await human(['node', 'undrain', landed[0]!.node])
  await human(['vm', 'delete', 'pair', '--force'])
})

test.run()
