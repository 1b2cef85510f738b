import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir, cpus } from 'node:os'
import { join } from 'node:path'
import { resolveConfig, loadConfig, detectCapacity, ConfigError, CONFIG_DEFAULTS, configHelp, CONFIG_KEYS, type NodeConfig } from '../../node/config.ts'

const PEER = '/ip4/10.0.0.1/tcp/7000/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'

const file = (text: string): { text: string, path: string } => ({ text, path: '/etc/blixard.toml' })

function fails (f: () => unknown, key: string, needle: string): void {
  try {
    f()
    assert.unreachable(`accepted; expected an error on ${key}`)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    assert.is(err.key, key, err.message)
    assert.ok(err.message.includes(needle), `'${err.message}' should mention '${needle}'`)
  }
}

test('NodeConfig, derived from CONFIG_KEYS, nests dotted keys in their section with each kind\'s type', () => {
  // a compile-time check as much as a run-time one: these assignments fail to typecheck if the
  // derivation loses a key, a section or a nullable
  const ceph: NodeConfig['ceph'] = { conf: null, pool: 'rbd', id: null, keyring: null }
  const net: NodeConfig['network'] = { uplink: 'eth0', underlayIp: null }
  const ports: Pick<NodeConfig, 'metricsPort' | 'logLevel' | 'labels'> = { metricsPort: null, logLevel: 'debug', labels: { a: 'b' } }
  assert.equal({ ...CONFIG_DEFAULTS.ceph, pool: ceph.pool }, ceph)
  assert.equal(CONFIG_DEFAULTS.network, { uplink: null, underlayIp: null })
  assert.ok(net.uplink === 'eth0' && ports.logLevel === 'debug')
  const sections = new Set(CONFIG_KEYS.filter(k => k.key.includes('.')).map(k => k.key.split('.')[0]))
  assert.equal([...sections].sort(), ['autopilot', 'capacity', 'ceph', 'lease', 'migration', 'network', 'raft', 'rebalance'])
})

test('defaults apply with no file, env or flags', () => {
  const c = resolveConfig({})
  assert.is(c.dataDir, CONFIG_DEFAULTS.dataDir)
  assert.equal(c.listen, CONFIG_DEFAULTS.listen)
  assert.is(c.mdns, true)
  assert.equal(c.capacity, {})
  assert.equal(c.raft, { tickMs: 50, electionTick: 20, heartbeatTick: 2, snapshotEvery: 100_000, snapshotKeep: 5_000, relayLearners: true })
  assert.equal(c.migration, { portLow: 7400, portHigh: 7499 })
})

test('file < env < flags, for the same keys', () => {
  const c = resolveConfig({
    file: file(`
dataDir = "/data/file"
name = "n1"
listen = ["/ip4/127.0.0.1/tcp/7001"]
bootstrap = ["${PEER}"]
mdns = false
metricsPort = 9100
[labels]
zone = "a"
arch = "x86_64"
[capacity]
cpu = 8
memoryMiB = 16384
[raft]
tickMs = 50
`),
    env: { BLIXARD_DATA_DIR: '/data/env', BLIXARD_CAPACITY_CPU: '4', BLIXARD_MDNS: 'yes', BLIXARD_LABELS: 'zone=b,gpu=none', UNRELATED: 'x' },
    argv: ['--data-dir', '/data/flag', '--listen=/ip4/127.0.0.1/tcp/8001', '--listen', '/ip4/127.0.0.1/tcp/8002', '--no-mdns', '--raft-election-tick', '20']
  })
  assert.is(c.dataDir, '/data/flag')
  assert.is(c.name, 'n1')
  assert.equal(c.listen, ['/ip4/127.0.0.1/tcp/8001', '/ip4/127.0.0.1/tcp/8002'])
  assert.equal(c.bootstrap, [PEER])
  assert.is(c.mdns, false)
  assert.equal(c.labels, { zone: 'b', gpu: 'none' }) // env replaces the file's table
  assert.equal(c.capacity, { cpu: 4, memoryMiB: 16384 })
  assert.equal(c.raft, { tickMs: 50, electionTick: 20, heartbeatTick: 2, snapshotEvery: 100_000, snapshotKeep: 5_000, relayLearners: true })
  assert.is(c.metricsPort, 9100)
})

test('retired keys (rpcPort, dashboardPort) are accepted from file, env and flags with a warning naming each', () => {
  const warnings: Array<{ key: string, source: string, message: string }> = []
  const c = resolveConfig({
    file: file('rpcPort = 7100\ndashboardPort = 9631\nmetricsPort = 9100'),
    env: { BLIXARD_RPC_PORT: '7100' },
    argv: ['--dashboard-port', 'none', '--name', 'n2', '--rpc-port=1'],
    warn: (w) => warnings.push(w)
  })
  assert.is(c.name, 'n2', 'the value after a retired flag is consumed with it')
  assert.is(c.metricsPort, 9100)
  assert.not.ok('rpcPort' in c)
  assert.equal(warnings.map(w => `${w.key} ${w.source}`), [
    'rpcPort file /etc/blixard.toml', 'dashboardPort file /etc/blixard.toml', 'rpcPort env BLIXARD_RPC_PORT',
    'dashboardPort flag --dashboard-port', 'rpcPort flag --rpc-port'
  ])
  assert.ok(warnings.every(w => w.message.startsWith('ignored: ')))
  fails(() => resolveConfig({ file: file('dashbordPort = 1') }), 'dashbordPort', 'unknown key')
})

test('bad values name the key, the source and what was wrong', () => {
  fails(() => resolveConfig({ file: file('listen = ["not a multiaddr"]') }), 'listen', 'is not a multiaddr')
  fails(() => resolveConfig({ file: file('bootstrap = ["/ip4/1.2.3.4/tcp/1"]') }), 'bootstrap', 'needs a /p2p/')
  fails(() => resolveConfig({ file: file('mdns = "sometimes"') }), 'mdns', 'expected true or false')
  fails(() => resolveConfig({ file: file('listn = []') }), 'listn', 'unknown key')
  fails(() => resolveConfig({ file: file('[capacity]\ncpus = 4') }), 'capacity.cpus', 'unknown key')
  fails(() => resolveConfig({ file: file('[capacity]\ncpu = 0') }), 'capacity.cpu', 'outside')
  fails(() => resolveConfig({ file: file('[capacity]\ncpu = 1.5') }), 'capacity.cpu', 'expected an integer')
  fails(() => resolveConfig({ file: file('capacity = 3') }), 'capacity', 'must be a table')
  fails(() => resolveConfig({ file: file('[labels]\nzone = 3') }), 'labels', 'zone must be a string')
  fails(() => resolveConfig({ file: file('this is = = not toml') }), '(file)', 'not valid TOML')
  fails(() => resolveConfig({ env: { BLIXARD_METRICS_PORT: '70000' } }), 'metricsPort', 'env BLIXARD_METRICS_PORT')
  fails(() => resolveConfig({ env: { BLIXARD_RAFT_TICK_MS: 'fast' } }), 'raft.tickMs', 'expected an integer')
  fails(() => resolveConfig({ env: { BLIXARD_LABELS: 'novalue' } }), 'labels', "'novalue' is not key=value")
  fails(() => resolveConfig({ argv: ['--colour', 'red'] }), '--colour', 'unknown flag')
  fails(() => resolveConfig({ argv: ['--data-dir'] }), 'dataDir', 'needs a value')
  fails(() => resolveConfig({ argv: ['--log-level', 'loud'] }), 'logLevel', 'flag --log-level')
  fails(() => resolveConfig({ argv: ['--raft-heartbeat-tick', '20'] }), 'raft.heartbeatTick', 'below raft.electionTick')
  fails(() => resolveConfig({ argv: ['stray'] }), 'stray', 'unexpected argument')
})

test('each shape a key is made of refuses its bad values, naming the key and the item', () => {
  fails(() => resolveConfig({ file: file('dataDir = ""') }), 'dataDir', 'expected a non-empty string')
  fails(() => resolveConfig({ argv: ['--qemu-binary', 'q'.repeat(4097)] }), 'qemuBinary', 'longer than 4096')
  fails(() => resolveConfig({ file: file('[ceph]\nconf = 3') }), 'ceph.conf', 'expected a non-empty string, got 3')
  fails(() => resolveConfig({ file: file('metricsPort = "9100"') }), 'metricsPort', 'expected an integer, got "9100"')
  assert.is(resolveConfig({ env: { BLIXARD_METRICS_PORT: 'none' } }).metricsPort, null)
  assert.is(resolveConfig({ file: file('metricsPort = false') }).metricsPort, null)
  fails(() => resolveConfig({ file: file('admins = ["a", 4]') }), 'admins', 'admins[1]: expected a non-empty string, got 4')
  fails(() => resolveConfig({ env: { BLIXARD_ADMINS: Array.from({ length: 257 }, (_, i) => `p${i}`).join(',') } }), 'admins', 'more than 256 items')
  fails(() => resolveConfig({ file: file(`listen = ["/ip4/1.2.3.4/tcp/1", "nope"]`) }), 'listen', "listen[1] 'nope' is not a multiaddr")
  fails(() => resolveConfig({ env: { BLIXARD_LABELS: '-zone=a' } }), 'labels', "label name '-zone'")
  fails(() => resolveConfig({ env: { BLIXARD_LABELS: Array.from({ length: 65 }, (_, i) => `k${i}=v`).join(',') } }), 'labels', 'more than 64 labels')
  fails(() => resolveConfig({ file: file('logLevel = "loud"') }), 'logLevel', 'expected debug|info|warn|error, got "loud"')
  fails(() => resolveConfig({ file: file('mdns = 1') }), 'mdns', 'expected true or false, got 1')
  fails(() => resolveConfig({ argv: ['--underlay-ip', '10.1.0.05'] }), 'network.underlayIp', "'10.1.0.05' is not an IPv4 address")
})

test('loadConfig reads --config, detects missing capacity, keeps configured parts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'blixard-cfg-'))
  try {
    const p = join(dir, 'node.toml')
    await writeFile(p, `dataDir = "${join(dir, 'not-yet-created')}"\n[capacity]\nmemoryMiB = 1024\n`)
    const c = await loadConfig(['--config', p, '--name', 'x'], {})
    assert.is(c.name, 'x')
    assert.is(c.capacity.memoryMiB, 1024)
    assert.is(c.capacity.cpu, cpus().length)
    assert.ok(c.capacity.diskGiB > 0, `disk ${c.capacity.diskGiB}`)
    const viaEnv = await loadConfig([], { BLIXARD_CONFIG: p, BLIXARD_NAME: 'y' })
    assert.is(viaEnv.name, 'y')
    try { await loadConfig(['--config', join(dir, 'missing.toml')], {}); assert.unreachable() } catch (err) {
      assert.instance(err, ConfigError)
      assert.is((err as ConfigError).key, 'config')
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('capacity detection and help cover every key', async () => {
  const cap = await detectCapacity('/definitely/not/here')
  assert.ok(cap.cpu >= 1 && cap.memoryMiB > 0 && cap.diskGiB > 0)
  const help = configHelp()
  for (const k of CONFIG_KEYS) assert.ok(help.includes(`--${k.flag}`) && help.includes(k.env))
})

test('[ceph] and [network]: file < env < flags; unset means off', () => {
  const none = resolveConfig({})
  assert.equal(none.ceph, { conf: null, pool: 'rbd', id: null, keyring: null })
  assert.equal(none.network, { uplink: null, underlayIp: null })
  const c = resolveConfig({
    file: { path: 'c.toml', text: '[ceph]\nconf = "/etc/ceph/ceph.conf"\npool = "vms"\n[network]\nuplink = "eth1"\n' },
    env: { BLIXARD_CEPH_ID: 'blixard', BLIXARD_UPLINK: 'bond0' },
    argv: ['--underlay-ip', '10.1.0.5', '--ceph-keyring', '/run/keys/ceph']
  })
  assert.equal(c.ceph, { conf: '/etc/ceph/ceph.conf', pool: 'vms', id: 'blixard', keyring: '/run/keys/ceph' })
  assert.equal(c.network, { uplink: 'bond0', underlayIp: '10.1.0.5' })
  fails(() => resolveConfig({ file: { path: 'c.toml', text: '[ceph]\nmonitors = ["a"]\n' } }), 'ceph.monitors', 'unknown key')
  fails(() => resolveConfig({ env: { BLIXARD_CEPH_POOL: '' } }), 'ceph.pool', 'non-empty')
})

test('qemuBinary: qemu-system-x86_64 from PATH by default; file < env < flags', () => {
  assert.is(resolveConfig({}).qemuBinary, 'qemu-system-x86_64')
  const file = { path: 'c.toml', text: 'qemuBinary = "/nix/store/x-qemu/bin/qemu-system-x86_64"\n' }
  assert.is(resolveConfig({ file }).qemuBinary, '/nix/store/x-qemu/bin/qemu-system-x86_64')
  assert.is(resolveConfig({ file, env: { BLIXARD_QEMU_BINARY: '/opt/q' } }).qemuBinary, '/opt/q')
  assert.is(resolveConfig({ file, env: { BLIXARD_QEMU_BINARY: '/opt/q' }, argv: ['--qemu-binary', '/usr/bin/qemu-kvm'] }).qemuBinary, '/usr/bin/qemu-kvm')
  fails(() => resolveConfig({ file: { path: 'c.toml', text: 'qemuBinary = 3\n' } }), 'qemuBinary', 'non-empty string')
})

test('accel: auto by default; kvm or tcg skip the probe; anything else is refused naming the key', () => {
  assert.is(resolveConfig({}).accel, 'auto')
  assert.is(resolveConfig({ file: { path: 'c.toml', text: 'accel = "kvm"\n' } }).accel, 'kvm')
  assert.is(resolveConfig({ env: { BLIXARD_ACCEL: 'tcg' } }).accel, 'tcg')
  assert.is(resolveConfig({ env: { BLIXARD_ACCEL: 'tcg' }, argv: ['--accel', 'kvm'] }).accel, 'kvm')
  fails(() => resolveConfig({ env: { BLIXARD_ACCEL: 'hvf' } }), 'accel', 'auto')
})

test('[lease]: defaults, file < env < flags, and settings under which one late renewal fences are refused', () => {
  assert.equal(resolveConfig({}).lease, { leaseMs: 9_000, renewEveryMs: 3_000, fenceMarginMs: 1_000, downMarginMs: 1_000 })
  const c = resolveConfig({ file: file('[lease]\nleaseMs = 6000\nrenewEveryMs = 1000\n'), env: { BLIXARD_LEASE_FENCE_MARGIN_MS: '500' }, argv: ['--lease-down-margin-ms', '700'] })
  assert.equal(c.lease, { leaseMs: 6_000, renewEveryMs: 1_000, fenceMarginMs: 500, downMarginMs: 700 })
  fails(() => resolveConfig({ argv: ['--lease-ms', '3000'] }), 'lease', 'one late renewal would fence a healthy host')
  fails(() => resolveConfig({ file: file('[lease]\nttl = 3\n') }), 'lease.ttl', 'unknown key')
})

test.run()
