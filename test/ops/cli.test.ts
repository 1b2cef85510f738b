// The `blixard` CLI as an operator meets it: help, errors that say what to do
// next with their documented exit codes, --json on every command (a JSON
// document on stdout, for errors too; NDJSON for streams), shell completion,
// and `vm migrate`'s flag checks. The first part needs no cluster; the second
// runs every command against a live 3-node cluster.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OpsCluster, runCli, until } from './cluster.ts'
import type { CliResult } from './cluster.ts'

const scratch = mkdtempSync(join(tmpdir(), 'blixard-ops-cli-'))
const OFFLINE = { BLIXARD_CONFIG_DIR: join(scratch, 'cli'), BLIXARD_PEER: '', BLIXARD_CLUSTER_KEY_FILE: join(scratch, 'none.key') }
const offline = async (args: string[]): Promise<CliResult> => await runCli(args, OFFLINE)

interface JsonErr { error: { kind: string, message: string, next: string, exitCode: number } }

function jsonError (r: CliResult, kind: string, code: number): JsonErr['error'] {
  assert.is(r.code, code, `exit code of a ${kind} error: ${r.stderr}`)
  const e = (r.json as JsonErr | null)?.error
  assert.ok(e != null, `--json error on stdout, got: ${r.stdout}`)
  assert.is(e.kind, kind)
  assert.is(e.exitCode, code)
  assert.ok(e.next.length > 10, 'the error says what to do next')
  assert.ok(r.stderr.includes(e.next.split('\n')[0]), 'the next step is on stderr too')
  return e
}

test.after(() => { rmSync(scratch, { recursive: true, force: true }) })

// ---- without a cluster ----

test('help lists every command and the global flags; per-command help shows usage and flags', async () => {
  const h = await offline(['help'])
  assert.is(h.code, 0)
  for (const c of ['status', 'nodes', 'node drain', 'node undrain', 'vm create', 'vm list', 'vm logs', 'vm migrate', 'events', 'completion']) assert.ok(h.stdout.includes(`  ${c} `), c)
  assert.ok(h.stdout.includes('--json') && h.stdout.includes('--peer MULTIADDR'))
  assert.is((await offline([])).stdout, h.stdout)
  const hj = await offline(['help', '--json'])
  const cmds = (hj.json as { commands: Array<{ command: string, usage: string }> }).commands
  assert.ok(cmds.some((c) => c.command === 'vm create' && c.usage.startsWith('blixard vm create NAME')))
  const one = await offline(['vm', 'create', '--help'])
  assert.is(one.code, 0)
  assert.match(one.stdout, /Usage: blixard vm create NAME/)
  assert.match(one.stdout, /--memory SIZE +guest memory .*\(default 128M\)/)
  assert.match(one.stdout, /--restart POLICY +always, on-failure or never \(default always\)/)
  assert.is((await offline(['help', 'vm', 'create'])).stdout, one.stdout)
  const oj = (await offline(['vm', 'create', '--help', '--json'])).json as { flagDetails: Array<{ flag: string, arg?: string, help: string, default?: string }> }
  assert.equal(oj.flagDetails.find((f) => f.flag === '--vcpus'), { flag: '--vcpus', arg: 'N', repeatable: false, help: 'virtual CPUs', default: '1' })
})

test('every flag of every command says what it does in help', async () => {
  const all = (await offline(['help', '--json'])).json as { commands: Array<{ command: string, flags: Array<{ flag: string, help: string }> }> }
  const missing = all.commands.flatMap((c) => c.flags.filter((f) => f.help.trim() === '').map((f) => `${c.command} ${f.flag}`))
  assert.equal(missing, [], `flags without a description: ${missing.join(', ')}`)
  assert.ok(all.commands.find((c) => c.command === 'vm create')?.flags.some((f) => f.flag === '--memory'))
})

test('exit codes are documented, also as JSON', async () => {
  const r = await offline(['help', 'exit-codes'])
  assert.is(r.code, 0)
  for (const line of ['2  usage error', '3  not found', '5  cluster unavailable', '6  unauthorized', '7  indeterminate']) assert.ok(r.stdout.includes(line), line)
  const j = await offline(['help', 'exit-codes', '--json'])
  assert.equal((j.json as { exitCodes: Array<{ code: number }> }).exitCodes.map((c) => c.code), [0, 1, 2, 3, 4, 5, 6, 7])
})

test('unknown command, subcommand or flag: exit 2 with a next step, JSON with --json', async () => {
  const u = await offline(['frobnicate'])
  assert.is(u.code, 2)
  assert.match(u.stderr, /unknown command 'frobnicate'/)
  assert.match(u.stderr, /Run 'blixard help'/)
  assert.is(u.stdout, '')
  assert.match(jsonError(await offline(['frobnicate', '--json']), 'Usage', 2).message, /frobnicate/)
  const sub = await offline(['vm'])
  assert.is(sub.code, 2)
  assert.match(sub.stderr, /'vm' needs a subcommand: create, list/)
  const f = await offline(['vm', 'list', '--bogus'])
  assert.is(f.code, 2)
  assert.match(f.stderr, /unknown flag --bogus/)
  assert.match(f.stderr, /blixard vm list --help/)
  jsonError(await offline(['vm', 'list', '--bogus', '--json']), 'Usage', 2)
  jsonError(await offline(['vm', 'create', 'x', '--memory', 'lots', '--json']), 'Usage', 2)
})

test('VM limits: one set (protocols/vm-limits.ts) for the CLI, the state machine and QEMU; errors name the flag in its units', async () => {
  const mem = async (v: string): Promise<string> => jsonError(await offline(['vm', 'create', 'x', '--memory', v, '--json']), 'Usage', 2).message
  assert.match(await mem('64M'), /^--memory 64M is too small: at least 80M$/)
  assert.match(await mem('0'), /^--memory 0 is too small: at least 80M$/)
  // 1T is within bounds: the CLI goes on to connect (no cluster here), not a usage error
  const big = await offline(['vm', 'create', 'x', '--memory', '1T', '--json'])
  assert.is.not(big.code, 2, big.stderr)
  assert.match(await mem('17T'), /^--memory 17T is too large: at most 16T$/)
  assert.match(await mem('lots'), /^--memory "lots" is not a size/)
  assert.match(jsonError(await offline(['vm', 'create', 'x', '--vcpus', '256', '--json']), 'Usage', 2).message, /^--vcpus must be between 1 and 255, got 256$/)
})

test('completion: bash, zsh and fish scripts that parse and complete commands, flags and names; other shells refused', async () => {
  // each parsed by its own shell (fish and zsh come from Debian's packages: scripts/setup.sh)
  const parse: Record<string, string[]> = { bash: ['bash', '-n'], zsh: ['zsh', '-n'], fish: ['fish', '--no-execute'] }
  for (const shell of ['bash', 'zsh', 'fish']) {
    const r = await offline(['completion', shell])
    assert.is(r.code, 0)
    const file = join(scratch, `completion.${shell}`)
    writeFileSync(file, r.stdout)
    const check = spawnSync(parse[shell][0], [...parse[shell].slice(1), file], { encoding: 'utf8' })
    assert.is(check.status, 0, `${shell}: ${check.stderr}`)
  }
  assert.not.ok((await offline(['help'])).stdout.includes('__complete'), 'the names helper is not listed in help')
  // names come from `blixard __complete KIND` (a stub here: the live one is tested with the cluster)
  const names = `source ${join(scratch, 'completion.bash')}
blixard() { [ "$1" = __complete ] && case "$2" in vms) echo "web db";; nodes) echo "node1 node2";; volumes) echo "disk1";; esac; }
COMP_WORDS=(blixard vm show w); COMP_CWORD=3; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard node drain ''); COMP_CWORD=3; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard vm create x --disk ''); COMP_CWORD=5; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard vm delete web --fo); COMP_CWORD=4; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard vm create ''); COMP_CWORD=3; _blixard; echo "[\${COMPREPLY[*]}]"`
  const n = spawnSync('bash', ['-c', names], { encoding: 'utf8' })
  assert.is(n.status, 0, n.stderr)
  assert.equal(n.stdout.trim().split('\n'), ['web', 'node1 node2', 'disk1', '--force', '[]'])
  const fishNames = spawnSync('fish', ['-c', `source ${join(scratch, 'completion.fish')}
function blixard; test "$argv[1]" = __complete; and test "$argv[2]" = vms; and printf '%s\\n' web db; end
complete -C 'blixard vm start '; complete -C 'blixard vm'`], { encoding: 'utf8' })
  assert.is(fishNames.status, 0, fishNames.stderr)
  const fl = fishNames.stdout.trim().split('\n').map((l) => l.split('\t')[0])
  assert.ok(fl.includes('web') && fl.includes('db'), fishNames.stdout)
  // the bash function really completes: `blixard vm cr<TAB>` and `blixard no<TAB>`
  const probe = `source ${join(scratch, 'completion.bash')}
COMP_WORDS=(blixard vm cr); COMP_CWORD=2; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard no); COMP_CWORD=1; _blixard; echo "\${COMPREPLY[*]}"
COMP_WORDS=(blixard status --js); COMP_CWORD=2; _blixard; echo "\${COMPREPLY[*]}"`
  const out = spawnSync('bash', ['-c', probe], { encoding: 'utf8' })
  assert.is(out.status, 0, out.stderr)
  assert.equal(out.stdout.trim().split('\n'), ['create', 'node nodes', '--json'])
  const j = await offline(['completion', 'bash', '--json'])
  assert.is((j.json as { shell: string, script: string }).shell, 'bash')
  const ps = await offline(['completion', 'powershell'])
  assert.is(ps.code, 2)
  assert.match(ps.stderr, /use bash, zsh or fish/)
})

test('vm migrate: bad flags are refused before any node is asked, naming the flag', async () => {
  const r = await offline(['vm', 'migrate', 'web-1', '--to', 'node2', '--cancel'])
  assert.is(r.code, 2)
  assert.match(r.stderr, /--cancel cancels the migration in flight: give it no --to/)
  const e = jsonError(await offline(['vm', 'migrate', '--json']), 'Usage', 2)
  assert.match(e.message, /missing VM/)
})

test('keygen and whoami, with --json; an existing key is not overwritten (exit 4)', async () => {
  const key = join(scratch, 'k.key')
  const k = await offline(['keygen', key, '--json'])
  assert.is(k.code, 0, k.stderr)
  assert.equal(k.json, { path: key })
  jsonError(await offline(['keygen', key, '--json']), 'AlreadyExists', 4)
  const w = await offline(['whoami', '--json'])
  assert.match((w.json as { peerId: string }).peerId, /^12D3KooW/)
})

test('no key, or no node answering: exit 5 (cluster unreachable) with a next step; global flags may come first', async () => {
  const nokey = jsonError(await offline(['status', '--json', '--peer', '/ip4/127.0.0.1/tcp/1']), 'Unavailable', 5)
  assert.match(nokey.message, /cannot read the cluster key/)
  assert.match(nokey.next, /--cluster-key FILE/)
  const key = join(scratch, 'k.key')
  const peer = '/ip4/127.0.0.1/tcp/17499/p2p/12D3KooWDGnnMG1CqUncAmxhTMrVgfVrW8sPzAEqo1ERpTmwGPe8' // nothing listens there
  const gone = await offline(['--peer', peer, '--cluster-key', key, 'status', '--json'])
  const e = jsonError(gone, 'Unavailable', 5)
  assert.match(e.message, /cannot reach the node/)
  assert.match(e.next, /--peer/)
})

// ---- against a live cluster ----

let c: OpsCluster | null = null
const cluster = async (): Promise<OpsCluster> => { c ??= await OpsCluster.start('cli', 17421, 3, 240_000); return c }
test.after(async () => { await c?.stop() })

/** Runs a command with --json and returns the parsed document (exit 0 required). */
async function json<T> (args: string[]): Promise<T> {
  const r = await (await cluster()).cli([...args, '--json'])
  assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  assert.ok(r.json != null, `${args.join(' ')} --json printed: ${r.stdout.slice(0, 200)}`)
  return r.json as T
}

test('admission fails fast: a VM that fits no node is refused at once (exit 4, the reasons by node name); --queue accepts it pending, saying why', async () => {
  const cl = await cluster()
  const r = await cl.cli(['vm', 'create', 'too-big', '--vcpus', '200', '--json'])
  const e = jsonError(r, 'NoCapacity', 4)
  assert.match(e.message, /^no node fits VM too-big: node\d: cpu: /)
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

test('quotas: an admin sets one, the over-quota create is refused with the numbers (exit 4), quota show --json counts', async () => {
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
  const vm = await json<{ id: string, spec: { name: string } }>(['vm', 'create', 'cli-a', '--memory', '96M'])
  assert.is(vm.spec.name, 'cli-a')
  assert.ok((await json<Array<{ id: string }>>(['vm', 'list'])).some((v) => v.id === vm.id))
  assert.is((await json<{ id: string }>(['vm', 'show', 'cli-a'])).id, vm.id)
  await until('cli-a placed', 30_000, async () => (await cl.state(0)).vms.find((v) => v.name === 'cli-a')?.node != null)
  const ex = await json<{ decision: { nodes: unknown[] } }>(['vm', 'explain', 'cli-a'])
  assert.ok(Array.isArray(ex.decision.nodes))
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
  await cl.cli(['vm', 'create', 'ev-probe', '--no-start', '--json'])
  for (const args of [['events'], ['vm', 'watch']]) {
    const r = await cl.cli([...args, '--json'], {}, 6_000) // streams until stopped: killed after 6 s
    const lines = r.stdout.trim().split('\n').filter((l) => l !== '')
    assert.ok(args[0] === 'vm' || lines.length >= 3, `${args.join(' ')}: ${r.stdout.slice(0, 200)} ${r.stderr}`)
    for (const l of lines) JSON.parse(l)
    if (args[0] === 'events') assert.ok(lines.some((l) => (JSON.parse(l) as { text: string }).text.startsWith('VM ev-probe created')), lines.slice(-5).join('\n'))
  }
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
  await cl.cli(['vm', 'delete', 'ev-probe', '--json'])
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

test.run()
