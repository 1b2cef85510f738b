// Node configuration: defaults < TOML file < BLIXARD_* environment < command-line flags, for the
// same keys. Every value is checked against its key's shape, declared in the schema vocabulary
// (protocols/schema.ts) that NodeConfig's types are derived from; a bad one is a ConfigError
// naming the key, where it came from and what was wrong. Capacity not given anywhere is detected from the host.
import { readFile, statfs } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { dirname } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { multiaddr } from '@multiformats/multiaddr'
import type { Resources } from '../protocols/model.ts'
import { DEFAULT_LEASE, leaseSettingsProblems } from './core/lease-rules.ts'
import { LOG_LEVEL_ENV, LOG_LEVELS } from './log.ts'
import { compile, s, type Infer, type Node, type Schema } from '../protocols/schema.ts'
import { BlixardError } from '../protocols/errors.ts'
import { parseIpv4 } from '../protocols/command-schema.ts'
import { DEFAULT_REBALANCE_MODE, REBALANCE_MODES } from '../placement/plans/rebalance-policy.ts'
import { DEFAULT_CONFIG } from '../placement/config.ts'

export class ConfigError extends Error {
  constructor (readonly key: string, readonly source: string, message: string) {
    super(`config ${key} (${source}): ${message}`)
    this.name = 'ConfigError'
  }
}

interface KeySpec<Key extends string = string, T = unknown> {
  key: Key // dotted path in NodeConfig and in the TOML file
  flag: string // --flag
  env: string // BLIXARD_...
  /** what the value must be (protocols/schema.ts): its type in NodeConfig is derived from it */
  shape: Schema<T>
  help: string
}

const K = <const Key extends string, T>(key: Key, flag: string, env: string, shape: Schema<T>, help: string): KeySpec<Key, T> => ({ key, flag, env, shape, help })

/** Bounds on what a config value may hold (a path, a list of addresses, the node's labels). */
const MAX_CONFIG_STRING = 4096
const MAX_CONFIG_LIST = 256
const MAX_CONFIG_LABELS = 64
const MAX_LABEL_LENGTH = 128
const LABEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/

// The shapes keys are made of.
const text = (): Schema<string> => s.str(MAX_CONFIG_STRING, { min: 1 })
/** a string whose default is null (off, or "decided elsewhere") */
const textOrNull = (): Schema<string | null> => s.nullable(text())
const int = (min: number, max: number): Schema<number> => s.int(min, max)
/** a port, or null: disabled ("none"/"off" in text, false in TOML) */
const port = (): Schema<number | null> => s.nullable(s.int(0, 65535))
const strings = (): Schema<string[]> => s.list(MAX_CONFIG_LIST, text())
const multiaddrs = (opts: { peer: boolean }): Schema<string[]> => s.list(MAX_CONFIG_LIST, s.refine(text(), (a) => {
  try { multiaddr(a) } catch (err) { return { kind: 'InvalidSpec', message: (p) => `${p} '${a}' is not a multiaddr (${(err as Error).message})` } }
  if (opts.peer && !a.includes('/p2p/')) return { kind: 'InvalidSpec', message: (p) => `${p} '${a}' needs a /p2p/<peer id> suffix` }
  return undefined
}))
/** an IPv4 address (the tree's one rule: protocols/command-schema.ts parseIpv4), or null */
const ipv4OrNull = (): Schema<string | null> => s.nullable(s.refine(text(), (a) =>
  parseIpv4(a) === null ? { kind: 'InvalidSpec', message: (p) => `${p}: '${a.slice(0, 64)}' is not an IPv4 address` } : undefined))
const labels = (): Schema<Record<string, string>> => s.refine(s.labels(MAX_CONFIG_LABELS, MAX_LABEL_LENGTH), (v) => {
  const k = Object.keys(v).find((name) => !LABEL_NAME.test(name))
  return k === undefined ? undefined : { kind: 'InvalidSpec', message: () => `label name '${k}' must be 1-128 letters, digits, . _ / -` }
})

/** How QEMU runs guests: KVM, TCG (emulation), or whichever a test boot shows works. */
export const ACCELS = ['auto', 'kvm', 'tcg'] as const

/** The TCP ports migration targets listen on by default (nixos/module.nix opens the same range). */
export const MIGRATION_PORTS = { low: 7400, high: 7499 } as const

// One entry per key: its flag, its variable, its shape (hence its type in NodeConfig and its bounds).
export const CONFIG_KEYS = [
  // where the identity, the Raft log and the state machine live
  K('dataDir', 'data-dir', 'BLIXARD_DATA_DIR', text(), 'data directory'),
  K('name', 'name', 'BLIXARD_NAME', text(), 'node name'),
  K('listen', 'listen', 'BLIXARD_LISTEN', multiaddrs({ peer: false }), 'listen multiaddrs (repeat or comma-separate)'),
  K('clusterKeyFile', 'cluster-key-file', 'BLIXARD_CLUSTER_KEY_FILE', text(), 'cluster key file'),
  K('bootstrap', 'bootstrap', 'BLIXARD_BOOTSTRAP', multiaddrs({ peer: true }), 'bootstrap peer multiaddrs'),
  // multicast discovery on the LAN (off for local clusters on one host)
  K('mdns', 'mdns', 'BLIXARD_MDNS', s.bool(), 'mDNS discovery (--no-mdns to disable)'),
  K('labels', 'label', 'BLIXARD_LABELS', labels(), 'node labels k=v (repeat or comma-separate)'),
  // what this node offers to VMs; detected when not configured
  K('capacity.cpu', 'capacity-cpu', 'BLIXARD_CAPACITY_CPU', int(1, 65536), 'vCPUs offered (default: detected)'),
  K('capacity.memoryMiB', 'capacity-memory-mib', 'BLIXARD_CAPACITY_MEMORY_MIB', int(64, 1 << 30), 'memory offered, MiB (default: detected)'),
  K('capacity.diskGiB', 'capacity-disk-gib', 'BLIXARD_CAPACITY_DISK_GIB', int(0, 1 << 30), 'disk offered, GiB (default: detected)'),
  K('metricsPort', 'metrics-port', 'BLIXARD_METRICS_PORT', port(), 'HTTP port of /metrics, the dashboard and /api/state'),
  // besides the listen address and localhost names: a DNS-rebinding page comes with a foreign
  // Host: and gets nothing (node/http.ts)
  // off: the dashboard is read-only. On: it offers start/stop/migrate/drain, each command signed in
  // the browser by a key an admin added with `blixard admin add` (node/dashboard-actions.ts)
  K('dashboardActions', 'dashboard-actions', 'BLIXARD_DASHBOARD_ACTIONS', s.bool(), 'let the dashboard offer admin actions, signed in the browser by an admin\'s key'),
  K('httpAllowedHosts', 'http-allowed-host', 'BLIXARD_HTTP_ALLOWED_HOSTS', strings(), 'extra Host: names the HTTP endpoints answer to'),
  // a live migration's memory goes from the source QEMU to the target QEMU over QEMU's own TLS, to a
  // port the target's QEMU listens on for that one migration: one of these (open them between nodes)
  K('migration.portLow', 'migration-port-low', 'BLIXARD_MIGRATION_PORT_LOW', int(1024, 65535), 'lowest TCP port a migration target listens on'),
  K('migration.portHigh', 'migration-port-high', 'BLIXARD_MIGRATION_PORT_HIGH', int(1024, 65535), 'highest TCP port a migration target listens on'),
  K('raft.tickMs', 'raft-tick-ms', 'BLIXARD_RAFT_TICK_MS', int(1, 60_000), 'Raft tick, ms'),
  K('raft.electionTick', 'raft-election-tick', 'BLIXARD_RAFT_ELECTION_TICK', int(2, 10_000), 'election timeout, ticks'),
  K('raft.heartbeatTick', 'raft-heartbeat-tick', 'BLIXARD_RAFT_HEARTBEAT_TICK', int(1, 10_000), 'heartbeat period, ticks'),
  K('raft.snapshotEvery', 'raft-snapshot-every', 'BLIXARD_RAFT_SNAPSHOT_EVERY', int(100, 10_000_000), 'compact the log every N applied entries'),
  // kept behind a snapshot, so a follower a little behind catches up without one
  K('raft.snapshotKeep', 'raft-snapshot-keep', 'BLIXARD_RAFT_SNAPSHOT_KEEP', int(0, 10_000_000), 'entries kept behind a snapshot'),
  // learners (hosts beyond the voters) take the log from a follower, so the leader's cost per
  // write does not grow with the cluster (protocols/raft/relay.ts); off: the leader feeds them
  K('raft.relayLearners', 'raft-relay-learners', 'BLIXARD_RAFT_RELAY_LEARNERS', s.bool(), 'learners take the log from a follower (--no-raft-relay-learners: from the leader)'),
  // replaced once a caught-up learner exists (node/autopilot.ts)
  K('autopilot.deadAfterMs', 'autopilot-dead-after-ms', 'BLIXARD_AUTOPILOT_DEAD_AFTER_MS', int(500, 86_400_000), 'a voter silent this long is replaced, ms'),
  K('autopilot.intervalMs', 'autopilot-interval-ms', 'BLIXARD_AUTOPILOT_INTERVAL_MS', int(100, 600_000), 'how often the leader runs autopilot, ms'),
  K('logLevel', 'log-level', LOG_LEVEL_ENV, s.oneOf(LOG_LEVELS), 'debug|info|warn|error'),
  // the NixOS module gives a Ceph-enabled QEMU from the store, since nixpkgs' own lacks librbd
  K('qemuBinary', 'qemu-binary', 'BLIXARD_QEMU_BINARY', text(), 'QEMU to run guests with (name in PATH or absolute path)'),
  // auto: a test boot under KVM decides (node/qemu/kvm-probe.ts: up to 8 s of QEMU at start on a
  // host whose /dev/kvm cannot run the guest); kvm or tcg: no probe
  K('accel', 'accel', 'BLIXARD_ACCEL', s.oneOf(ACCELS), 'QEMU accelerator: auto (probe KVM with a test boot), kvm, tcg'),
  // a fresh cluster forms once this many nodes see each other (node/bootstrap.ts)
  K('bootstrapExpect', 'bootstrap-expect', 'BLIXARD_BOOTSTRAP_EXPECT', int(1, 7), 'nodes a fresh cluster waits for before forming'),
  K('admins', 'admin', 'BLIXARD_ADMINS', strings(), 'CLI peer ids that become admins of a new cluster'),
  // this host's Ceph client: RBD volumes need ceph.conf (null: volumes are metadata only here);
  // ceph.id null: client.admin; ceph.keyring null: what the conf says
  K('ceph.conf', 'ceph-conf', 'BLIXARD_CEPH_CONF', textOrNull(), 'ceph.conf of this host (enables RBD volumes)'),
  K('ceph.pool', 'ceph-pool', 'BLIXARD_CEPH_POOL', text(), 'RBD pool'),
  K('ceph.id', 'ceph-id', 'BLIXARD_CEPH_ID', textOrNull(), 'cephx user (default admin)'),
  K('ceph.keyring', 'ceph-keyring', 'BLIXARD_CEPH_KEYRING', textOrNull(), 'cephx keyring file'),
  // node liveness lease (node/core/lease-rules.ts; README "When a node dies"); drift stays at its default
  K('lease.leaseMs', 'lease-ms', 'BLIXARD_LEASE_MS', int(100, 3_600_000), 'liveness lease, ms (every node of a cluster must agree)'),
  K('lease.renewEveryMs', 'lease-renew-every-ms', 'BLIXARD_LEASE_RENEW_EVERY_MS', int(10, 600_000), 'how often a node renews its lease, ms'),
  K('lease.fenceMarginMs', 'lease-fence-margin-ms', 'BLIXARD_LEASE_FENCE_MARGIN_MS', int(0, 600_000), 'a host stops its guests this long before its lease could end, ms'),
  K('lease.downMarginMs', 'lease-down-margin-ms', 'BLIXARD_LEASE_DOWN_MARGIN_MS', int(0, 600_000), 'the leader waits this long past a lease before marking the node down, ms'),
  // network.uplink null: none (VLAN guests then only reach this host); network.underlayIp null:
  // from this node's own registered addresses
  // the leader's rebalancer (node/rebalancer.ts): join fills nodes that join or become ready empty,
  // skew evens out any imbalance, off moves nothing by itself. hotPct: a node whose gossiped cpu or
  // memory is above it takes no VM (nodes sharing one host all gossip that host's load: 100 there)
  K('rebalance.mode', 'rebalance', 'BLIXARD_REBALANCE', s.oneOf(REBALANCE_MODES), 'what the leader moves live by itself: join (fill new nodes), skew (even out), off'),
  K('rebalance.hotPct', 'rebalance-hot-pct', 'BLIXARD_REBALANCE_HOT_PCT', int(1, 100), 'a node whose gossiped cpu or memory is above this % takes no rebalanced VM'),
  K('network.uplink', 'uplink', 'BLIXARD_UPLINK', textOrNull(), 'interface VLAN networks tag onto'),
  K('network.underlayIp', 'underlay-ip', 'BLIXARD_UNDERLAY_IP', ipv4OrNull(), 'local address of VXLAN tunnels')
] as const

type Spec = typeof CONFIG_KEYS[number]
type Flat = { [S in Spec as S['key']]: Infer<S['shape']> }
type Section<K> = K extends `${infer A}.${string}` ? A : never
type Top<K> = K extends `${string}.${string}` ? never : K
/** The checked configuration, its shape derived from CONFIG_KEYS (a dotted key is a field of its
 * section). What each key means: its help text there, and README "Configuration". */
export type NodeConfig =
  { [K in Top<keyof Flat>]: Flat[K] } &
  { [A in Section<keyof Flat>]: { [K in keyof Flat as K extends `${A}.${infer B}` ? B : never]: Flat[K] } }

/** Keys an older config could set that nothing reads any more: accepted (an old file still
 * starts the node) with a warning naming the key, instead of being silently kept in NodeConfig. */
export const RETIRED_KEYS: ReadonlyArray<{ key: string, flag: string, env: string, why: string }> = [
  { key: 'rpcPort', flag: 'rpc-port', env: 'BLIXARD_RPC_PORT', why: 'the RPC runs over libp2p on the listen addresses; there is no HTTP RPC port' },
  { key: 'dashboardPort', flag: 'dashboard-port', env: 'BLIXARD_DASHBOARD_PORT', why: 'the dashboard is served on metricsPort' }
]

/** A key the node accepted but does not use (RETIRED_KEYS). */
export interface ConfigWarning { key: string, source: string, message: string }

/** Defaults for everything but capacity (detected) and name (host name). */
export const CONFIG_DEFAULTS: Omit<NodeConfig, 'name' | 'capacity'> = {
  dataDir: '/var/lib/blixard',
  listen: ['/ip4/0.0.0.0/tcp/7000'],
  clusterKeyFile: '/etc/blixard/cluster.key',
  bootstrap: [],
  mdns: true,
  labels: {},
  metricsPort: 9630,
  httpAllowedHosts: [],
  dashboardActions: false,
  // etcd's defaults for the log: a snapshot every 100 000 entries, 5 000 kept behind it (a
  // compaction blocks the node for ~0.4 s with a 2.4 MB state: measured in bench:raft)
  raft: { tickMs: 50, electionTick: 20, heartbeatTick: 2, snapshotEvery: 100_000, snapshotKeep: 5_000, relayLearners: true },
  logLevel: 'info',
  qemuBinary: 'qemu-system-x86_64',
  accel: 'auto',
  autopilot: { deadAfterMs: 10_000, intervalMs: 2_000 },
  migration: { portLow: MIGRATION_PORTS.low, portHigh: MIGRATION_PORTS.high },
  bootstrapExpect: 3,
  admins: [],
  ceph: { conf: null, pool: 'rbd', id: null, keyring: null },
  lease: { leaseMs: DEFAULT_LEASE.leaseMs, renewEveryMs: DEFAULT_LEASE.renewEveryMs, fenceMarginMs: DEFAULT_LEASE.fenceMarginMs, downMarginMs: DEFAULT_LEASE.downMarginMs },
  network: { uplink: null, underlayIp: null },
  rebalance: { mode: DEFAULT_REBALANCE_MODE, hotPct: DEFAULT_CONFIG.hotPct }
}

const SPEC_BY_KEY = new Map<string, KeySpec>(CONFIG_KEYS.map(k => [k.key, k]))
const SPEC_BY_FLAG = new Map<string, KeySpec>(CONFIG_KEYS.map(k => [k.flag, k]))
const RETIRED_BY_KEY = new Map(RETIRED_KEYS.map(k => [k.key, k]))
const RETIRED_BY_FLAG = new Map(RETIRED_KEYS.map(k => [k.flag, k]))
const SECTIONS = new Set(CONFIG_KEYS.filter(k => k.key.includes('.')).map(k => k.key.split('.')[0]))

type Raw = Map<string, { value: unknown, source: string }>

// ---- checking one value ----

/** Each key's checker, compiled once from its shape. */
const CHECKERS = new Map<string, (x: unknown) => unknown>(CONFIG_KEYS.map(k => [k.key, compile(k.shape as Schema<unknown>, k.key, `${k.key}.`, 'config')]))

/** The schema node a shape stands on, past its refinements (what its text form is read as). */
function base (n: Node): Node {
  return n.k === 'refine' ? base(n.inner) : n
}

/** A key's value as its shape reads it. Environment variables and flags are text: "4" for an
 * integer, "yes" for a boolean, "a,b" for a list, "k=v,k2=v2" for labels, "none" for a port that
 * is off. TOML has its own types: an integer may come as a bigint, an off port as false. */
function typed (n: Node, v: unknown, fromText: boolean, fail: (what: string) => never): unknown {
  const b = base(n)
  if (typeof v === 'bigint') return Number(v)
  if (b.k === 'nullable') {
    if (v === false || (fromText && typeof v === 'string' && /^(none|off)$/i.test(v))) return null
    return typed(b.inner, v, fromText, fail)
  }
  if (!fromText || typeof v !== 'string') return v
  switch (b.k) {
    case 'int': return /^-?\d+$/.test(v.trim()) ? Number(v) : v
    case 'bool':
      if (/^(true|1|yes|on)$/i.test(v)) return true
      if (/^(false|0|no|off)$/i.test(v)) return false
      return v
    case 'list': return splitList(v)
    case 'labels':
      return Object.fromEntries(splitList(v).map(kv => {
        const i = kv.indexOf('=')
        return i > 0 ? [kv.slice(0, i), kv.slice(i + 1)] : fail(`'${kv}' is not key=value`)
      }))
    default: return v
  }
}

const splitList = (v: string): string[] => v.split(',').map(x => x.trim()).filter(x => x !== '')

function check (spec: KeySpec, v: unknown, source: string, fromText: boolean): unknown {
  const fail = (what: string): never => { throw new ConfigError(spec.key, source, what) }
  try {
    return CHECKERS.get(spec.key)!(typed(spec.shape, v, fromText, fail))
  } catch (err) {
    if (!(err instanceof BlixardError)) throw err
    // the message leads with the key when the key itself is wrong; ConfigError names it already
    return fail(err.message.startsWith(`${spec.key}: `) ? err.message.slice(spec.key.length + 2) : err.message)
  }
}

// ---- layers ----

type Warn = (w: ConfigWarning) => void

function retired (key: string, source: string, warn: Warn): void {
  const r = RETIRED_BY_KEY.get(key)
  if (r !== undefined) warn({ key, source, message: `ignored: ${r.why}; remove it` })
}

function fromToml (text: string, path: string, warn: Warn): Raw {
  const source = `file ${path}`
  let doc: Record<string, unknown>
  try {
    doc = parseToml(text) as Record<string, unknown>
  } catch (err) {
    throw new ConfigError('(file)', source, `not valid TOML: ${(err as Error).message.split('\n')[0]}`)
  }
  const out: Raw = new Map()
  for (const [k, v] of Object.entries(doc)) {
    if (SECTIONS.has(k) && v != null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) {
        if (!SPEC_BY_KEY.has(`${k}.${k2}`)) throw new ConfigError(`${k}.${k2}`, source, 'unknown key')
        out.set(`${k}.${k2}`, { value: v2, source })
      }
    } else if (SPEC_BY_KEY.has(k)) {
      out.set(k, { value: v, source })
    } else if (RETIRED_BY_KEY.has(k)) {
      retired(k, source, warn)
    } else {
      throw new ConfigError(k, source, SECTIONS.has(k) ? `[${k}] must be a table` : 'unknown key')
    }
  }
  return out
}

function fromEnv (env: Record<string, string | undefined>, warn: Warn): Raw {
  const out: Raw = new Map()
  for (const r of RETIRED_KEYS) if (env[r.env] !== undefined) retired(r.key, `env ${r.env}`, warn)
  for (const spec of CONFIG_KEYS) {
    const v = env[spec.env]
    if (v !== undefined) out.set(spec.key, { value: v, source: `env ${spec.env}` })
  }
  return out
}

const isBool = (spec: KeySpec | null | undefined): boolean => spec != null && base(spec.shape).k === 'bool'

/** Flags: --key value, --key=value, repeatable list flags, --mdns / --no-mdns; --config PATH. */
function fromArgv (argv: string[], warn: Warn = () => {}): { raw: Raw, configPath: string | null } {
  const out: Raw = new Map()
  let configPath: string | null = null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--')) throw new ConfigError(arg, 'command line', 'unexpected argument')
    const eq = arg.indexOf('=')
    let name = eq > 0 ? arg.slice(2, eq) : arg.slice(2)
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : undefined
    if (name.startsWith('no-') && isBool(SPEC_BY_FLAG.get(name.slice(3))) && value === undefined) { name = name.slice(3); value = 'false' }
    const old = RETIRED_BY_FLAG.get(name)
    if (old !== undefined) {
      if (value === undefined && argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) i++
      retired(old.key, `flag --${name}`, warn)
      continue
    }
    const spec = name === 'config' ? null : SPEC_BY_FLAG.get(name)
    if (spec === undefined) throw new ConfigError(`--${name}`, 'command line', 'unknown flag')
    if (value === undefined) {
      if (isBool(spec) && (argv[i + 1] === undefined || argv[i + 1].startsWith('--'))) value = 'true'
      else if (argv[i + 1] === undefined) throw new ConfigError(spec?.key ?? 'config', `flag --${name}`, 'needs a value')
      else value = argv[++i]
    }
    if (spec == null) { configPath = value; continue }
    const source = `flag --${name}`
    const prev = out.get(spec.key)
    const k = base(spec.shape).k
    const repeatable = k === 'list' || k === 'labels'
    out.set(spec.key, { value: repeatable && prev != null ? `${String(prev.value)},${value}` : value, source })
  }
  return { raw: out, configPath }
}

export interface ResolveInput {
  /** TOML text of the config file and its path (for messages) */
  file?: { text: string, path: string } | null
  env?: Record<string, string | undefined>
  argv?: string[]
  /** told about each accepted key that nothing reads (RETIRED_KEYS) */
  warn?: (w: ConfigWarning) => void
}

/** The configured values, checked, without detection: capacity fields and name may be missing. */
export type ResolvedConfig = Omit<NodeConfig, 'capacity' | 'name'> & { name?: string, capacity: Partial<Resources> }

/** Merges the layers (pure: no file or host access) and checks every value. */
export function resolveConfig (input: ResolveInput): ResolvedConfig {
  const warn = input.warn ?? (() => {})
  const layers: Array<[Raw, boolean]> = []
  if (input.file != null) layers.push([fromToml(input.file.text, input.file.path, warn), false])
  layers.push([fromEnv(input.env ?? {}, warn), true])
  layers.push([fromArgv(input.argv ?? [], warn).raw, true])
  const cfg: ResolvedConfig = structuredClone({ ...CONFIG_DEFAULTS, capacity: {} })
  const target = cfg as unknown as Record<string, Record<string, unknown>>
  for (const [raw, fromText] of layers) {
    for (const [key, { value, source }] of raw) {
      const spec = SPEC_BY_KEY.get(key)!
      const v = check(spec, value, source, fromText)
      const [a, b] = key.split('.')
      if (b === undefined) (target as unknown as Record<string, unknown>)[a] = v
      else target[a][b] = v
    }
  }
  if (cfg.raft.heartbeatTick >= cfg.raft.electionTick) {
    throw new ConfigError('raft.heartbeatTick', 'merged', `must be below raft.electionTick (${cfg.raft.electionTick})`)
  }
  const leaseProblem = leaseSettingsProblems({ ...DEFAULT_LEASE, ...cfg.lease })[0]
  if (leaseProblem !== undefined) throw new ConfigError('lease', 'merged', leaseProblem)
  return cfg
}

/** The --config path given on the command line or in BLIXARD_CONFIG, if any. */
export function configPathFrom (argv: string[], env: Record<string, string | undefined>): string | null {
  return fromArgv(argv).configPath ?? env.BLIXARD_CONFIG ?? null
}

/** What this host offers when the config does not say: all CPUs, all memory, the data dir's filesystem. */
export async function detectCapacity (dataDir: string): Promise<Resources> {
  let dir = dataDir
  let diskGiB = 0
  for (;;) {
    try {
      const s = await statfs(dir)
      diskGiB = Math.floor((s.blocks * s.bsize) / 2 ** 30)
      break
    } catch {
      const up = dirname(dir)
      if (up === dir) break
      dir = up // the data dir may not exist yet: measure the filesystem it will be on
    }
  }
  return { cpu: Math.max(1, cpus().length), memoryMiB: Math.floor(totalmem() / 2 ** 20), diskGiB }
}

/** Reads the config file (from --config or BLIXARD_CONFIG), merges env and flags, detects capacity. */
export async function loadConfig (argv: string[] = process.argv.slice(2), env: Record<string, string | undefined> = process.env, warn?: (w: ConfigWarning) => void): Promise<NodeConfig> {
  const path = configPathFrom(argv, env)
  let file: ResolveInput['file'] = null
  if (path != null) {
    try {
      file = { text: await readFile(path, 'utf8'), path }
    } catch (err) {
      throw new ConfigError('config', path, `cannot read: ${(err as Error).message}`)
    }
  }
  const cfg = resolveConfig({ file, env, argv, warn })
  const needDetect = cfg.capacity.cpu === undefined || cfg.capacity.memoryMiB === undefined || cfg.capacity.diskGiB === undefined
  const detected = needDetect ? await detectCapacity(cfg.dataDir) : { cpu: 0, memoryMiB: 0, diskGiB: 0 }
  return {
    ...cfg,
    name: cfg.name ?? hostname(),
    capacity: {
      cpu: cfg.capacity.cpu ?? detected.cpu,
      memoryMiB: cfg.capacity.memoryMiB ?? detected.memoryMiB,
      diskGiB: cfg.capacity.diskGiB ?? detected.diskGiB
    }
  }
}

/** One line per key: flag, environment variable, meaning. */
export function configHelp (): string {
  return CONFIG_KEYS.map(k => `  --${k.flag.padEnd(22)} ${k.env.padEnd(30)} ${k.help}`).join('\n') + '\n  --config PATH            BLIXARD_CONFIG                 TOML config file'
}
