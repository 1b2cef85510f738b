// The `blixard` CLI as an operator meets it before any cluster answers: help, errors that say
// what to do next with their documented exit codes (a JSON document on stdout with --json, for
// errors too), the VM limits, shell completion, keys, and `vm migrate`'s flag checks. Every
// command against a live cluster is in operator.test.ts (one cluster for all of them).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jsonError, runCli } from './cluster.ts'
import type { CliResult } from './cluster.ts'

const scratch = mkdtempSync(join(tmpdir(), 'blixard-ops-cli-'))
const OFFLINE = { BLIXARD_CONFIG_DIR: join(scratch, 'cli'), BLIXARD_PEER: '', BLIXARD_CLUSTER_KEY_FILE: join(scratch, 'none.key') }
const offline = async (args: string[]): Promise<CliResult> => await runCli(args, OFFLINE)

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

test('no key, or no node answering: exit 5 (cluster unreachable), saying nothing listens there, with a next step; global flags may come first', async () => {
  const nokey = jsonError(await offline(['status', '--json', '--peer', '/ip4/127.0.0.1/tcp/1']), 'Unavailable', 5)
  assert.match(nokey.message, /cannot read the cluster key/)
  assert.match(nokey.next, /--cluster-key FILE/)
  const key = join(scratch, 'k.key')
  const peer = '/ip4/127.0.0.1/tcp/17499/p2p/12D3KooWDGnnMG1CqUncAmxhTMrVgfVrW8sPzAEqo1ERpTmwGPe8' // nothing listens there
  const gone = await offline(['--peer', peer, '--cluster-key', key, 'status', '--json'])
  const e = jsonError(gone, 'Unavailable', 5)
  assert.match(e.message, /cannot reach the node .*: nothing listens there/)
  assert.match(e.next, /--peer/)
})

test.run()
