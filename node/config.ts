// Node configuration: defaults < TOML file < BLIXARD_* environment < command-line flags, for the
// same keys. Every value is checked; a bad one is a ConfigError naming the key, where it came
// from and what was wrong. Capacity not given anywhere is detected from the host.
import { readFile, statfs } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { dirname } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { multiaddr } from '@multiformats/multiaddr'
import type { Resources } from '../protocols/model.ts'
import { DEFAULT_LEASE, leaseSettingsProblems } from './core/lease-rules.ts'
import { LOG_LEVEL_ENV, LOG_LEVELS, type Level } from './log.ts'

export class ConfigError extends Error {
  constructor (readonly key: string, readonly source: string, message: string) {
    super(`config ${key} (${source}): ${message}`)
    this.name = 'ConfigError'
  }
}

/** What each kind of key holds once checked: NodeConfig is derived from CONFIG_KEYS through it. */
interface KindTypes {
  string: string
  /** a string whose default is null (off, or "decided elsewhere") */
  'string?': string | null
  int: number
  bool: boolean
  strings: string[]
  multiaddrs: string[]
  labels: Record<string, string>
  /** a port, or null: disabled */
  port: number | null
  level: Level
}
type Kind = keyof KindTypes

interface KeySpec<Key extends string = string, Kd extends Kind = Kind> {
  key: Key // dotted path in NodeConfig and in the TOML file
  flag: string // --flag
  env: string // BLIXARD_...
  kind: Kd
  min?: number
  max?: number
  help: string
}

const K = <const Key extends string, const Kd extends Kind>(key: Key, flag: string, env: string, kind: Kd, help: string, min?: number, max?: number): KeySpec<Key, Kd> => ({ key, flag, env, kind, help, min, max })

/** The TCP ports migration targets listen on by default (nixos/module.nix opens the same range). */
export const MIGRATION_PORTS = { low: 7400, high: 7499 } as const

// One entry per key: its flag, its variable, its kind (hence its type in NodeConfig), its bounds.
export const CONFIG_KEYS = [
  // where the identity, the Raft log and the state machine live
  K('dataDir', 'data-dir', 'BLIXARD_DATA_DIR', 'string', 'data directory'),
  K('name', 'name', 'BLIXARD_NAME', 'string', 'node name'),
  K('listen', 'listen', 'BLIXARD_LISTEN', 'multiaddrs', 'listen multiaddrs (repeat or comma-separate)'),
  K('clusterKeyFile', 'cluster-key-file', 'BLIXARD_CLUSTER_KEY_FILE', 'string', 'cluster key file'),
  K('bootstrap', 'bootstrap', 'BLIXARD_BOOTSTRAP', 'multiaddrs', 'bootstrap peer multiaddrs'),
  // multicast discovery on the LAN (off for local clusters on one host)
  K('mdns', 'mdns', 'BLIXARD_MDNS', 'bool', 'mDNS discovery (--no-mdns to disable)'),
  K('labels', 'label', 'BLIXARD_LABELS', 'labels', 'node labels k=v (repeat or comma-separate)'),
  // what this node offers to VMs; detected when not configured
  K('capacity.cpu', 'capacity-cpu', 'BLIXARD_CAPACITY_CPU', 'int', 'vCPUs offered (default: detected)', 1, 65536),
  K('capacity.memoryMiB', 'capacity-memory-mib', 'BLIXARD_CAPACITY_MEMORY_MIB', 'int', 'memory offered, MiB (default: detected)', 64, 1 << 30),
  K('capacity.diskGiB', 'capacity-disk-gib', 'BLIXARD_CAPACITY_DISK_GIB', 'int', 'disk offered, GiB (default: detected)', 0, 1 << 30),
  K('metricsPort', 'metrics-port', 'BLIXARD_METRICS_PORT', 'port', 'HTTP port of /metrics, the dashboard and /api/state'),
  // besides the listen address and localhost names: a DNS-rebinding page comes with a foreign
  // Host: and gets nothing (node/http.ts)
  // off: the dashboard is read-only. On: it offers start/stop/migrate/drain, each command signed in
  // the browser by a key an admin added with `blixard admin add` (node/dashboard-actions.ts)
  K('dashboardActions', 'dashboard-actions', 'BLIXARD_DASHBOARD_ACTIONS', 'bool', 'let the dashboard offer admin actions, signed in the browser by an admin\'s key'),
  K('httpAllowedHosts', 'http-allowed-host', 'BLIXARD_HTTP_ALLOWED_HOSTS', 'strings', 'extra Host: names the HTTP endpoints answer to'),
  // a live migration's memory goes from the source QEMU to the target QEMU over QEMU's own TLS, to a
  // port the target's QEMU listens on for that one migration: one of these (open them between nodes)
  K('migration.portLow', 'migration-port-low', 'BLIXARD_MIGRATION_PORT_LOW', 'int', 'lowest TCP port a migration target listens on', 1024, 65535),
  K('migration.portHigh', 'migration-port-high', 'BLIXARD_MIGRATION_PORT_HIGH', 'int', 'highest TCP port a migration target listens on', 1024, 65535),
  K('raft.tickMs', 'raft-tick-ms', 'BLIXARD_RAFT_TICK_MS', 'int', 'Raft tick, ms', 1, 60_000),
  K('raft.electionTick', 'raft-election-tick', 'BLIXARD_RAFT_ELECTION_TICK', 'int', 'election timeout, ticks', 2, 10_000),
  K('raft.heartbeatTick', 'raft-heartbeat-tick', 'BLIXARD_RAFT_HEARTBEAT_TICK', 'int', 'heartbeat period, ticks', 1, 10_000),
  K('raft.snapshotEvery', 'raft-snapshot-every', 'BLIXARD_RAFT_SNAPSHOT_EVERY', 'int', 'compact the log every N applied entries', 100, 10_000_000),
  // kept behind a snapshot, so a follower a little behind catches up without one
  K('raft.snapshotKeep', 'raft-snapshot-keep', 'BLIXARD_RAFT_SNAPSHOT_KEEP', 'int', 'entries kept behind a snapshot', 0, 10_000_000),
  // replaced once a caught-up learner exists (node/autopilot.ts)
  K('autopilot.deadAfterMs', 'autopilot-dead-after-ms', 'BLIXARD_AUTOPILOT_DEAD_AFTER_MS', 'int', 'a voter silent this long is replaced, ms', 500, 86_400_000),
  K('autopilot.intervalMs', 'autopilot-interval-ms', 'BLIXARD_AUTOPILOT_INTERVAL_MS', 'int', 'how often the leader runs autopilot, ms', 100, 600_000),
  K('logLevel', 'log-level', LOG_LEVEL_ENV, 'level', 'debug|info|warn|error'),
  // the NixOS module gives a Ceph-enabled QEMU from the store, since nixpkgs' own lacks librbd
  K('qemuBinary', 'qemu-binary', 'BLIXARD_QEMU_BINARY', 'string', 'QEMU to run guests with (name in PATH or absolute path)'),
  // a fresh cluster forms once this many nodes see each other (node/bootstrap.ts)
  K('bootstrapExpect', 'bootstrap-expect', 'BLIXARD_BOOTSTRAP_EXPECT', 'int', 'nodes a fresh cluster waits for before forming', 1, 7),
  K('admins', 'admin', 'BLIXARD_ADMINS', 'strings', 'CLI peer ids that become admins of a new cluster'),
  // this host's Ceph client: RBD volumes need ceph.conf (null: volumes are metadata only here);
  // ceph.id null: client.admin; ceph.keyring null: what the conf says
  K('ceph.conf', 'ceph-conf', 'BLIXARD_CEPH_CONF', 'string?', 'ceph.conf of this host (enables RBD volumes)'),
  K('ceph.pool', 'ceph-pool', 'BLIXARD_CEPH_POOL', 'string', 'RBD pool'),
  K('ceph.id', 'ceph-id', 'BLIXARD_CEPH_ID', 'string?', 'cephx user (default admin)'),
  K('ceph.keyring', 'ceph-keyring', 'BLIXARD_CEPH_KEYRING', 'string?', 'cephx keyring file'),
  // node liveness lease (node/core/lease-rules.ts; README "When a node dies"); drift stays at its default
  K('lease.leaseMs', 'lease-ms', 'BLIXARD_LEASE_MS', 'int', 'liveness lease, ms (every node of a cluster must agree)', 100, 3_600_000),
  K('lease.renewEveryMs', 'lease-renew-every-ms', 'BLIXARD_LEASE_RENEW_EVERY_MS', 'int', 'how often a node renews its lease, ms', 10, 600_000),
  K('lease.fenceMarginMs', 'lease-fence-margin-ms', 'BLIXARD_LEASE_FENCE_MARGIN_MS', 'int', 'a host stops its guests this long before its lease could end, ms', 0, 600_000),
  K('lease.downMarginMs', 'lease-down-margin-ms', 'BLIXARD_LEASE_DOWN_MARGIN_MS', 'int', 'the leader waits this long past a lease before marking the node down, ms', 0, 600_000),
  // network.uplink null: none (VLAN guests then only reach this host); network.underlayIp null:
  // from this node's own registered addresses
  K('network.uplink', 'uplink', 'BLIXARD_UPLINK', 'string?', 'interface VLAN networks tag onto'),
  K('network.underlayIp', 'underlay-ip', 'BLIXARD_UNDERLAY_IP', 'string?', 'local address of VXLAN tunnels')
] as const

type Spec = typeof CONFIG_KEYS[number]
type Flat = { [S in Spec as S['key']]: KindTypes[S['kind']] }
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
  raft: { tickMs: 50, electionTick: 20, heartbeatTick: 2, snapshotEvery: 100_000, snapshotKeep: 5_000 },
  logLevel: 'info',
  qemuBinary: 'qemu-system-x86_64',
  autopilot: { deadAfterMs: 10_000, intervalMs: 2_000 },
  migration: { portLow: MIGRATION_PORTS.low, portHigh: MIGRATION_PORTS.high },
  bootstrapExpect: 3,
  admins: [],
  ceph: { conf: null, pool: 'rbd', id: null, keyring: null },
  lease: { leaseMs: DEFAULT_LEASE.leaseMs, renewEveryMs: DEFAULT_LEASE.renewEveryMs, fenceMarginMs: DEFAULT_LEASE.fenceMarginMs, downMarginMs: DEFAULT_LEASE.downMarginMs },
  network: { uplink: null, underlayIp: null }
}

const SPEC_BY_KEY = new Map<string, KeySpec>(CONFIG_KEYS.map(k => [k.key, k]))
const SPEC_BY_FLAG = new Map<string, KeySpec>(CONFIG_KEYS.map(k => [k.flag, k]))
const RETIRED_BY_KEY = new Map(RETIRED_KEYS.map(k => [k.key, k]))
const RETIRED_BY_FLAG = new Map(RETIRED_KEYS.map(k => [k.flag, k]))
const SECTIONS = new Set(CONFIG_KEYS.filter(k => k.key.includes('.')).map(k => k.key.split('.')[0]))

type Raw = Map<string, { value: unknown, source: string }>

// ---- checking one value ----

function check (spec: KeySpec, v: unknown, source: string, fromText: boolean): unknown {
  const fail = (what: string): never => { throw new ConfigError(spec.key, source, what) }
  const show = (x: unknown): string => JSON.stringify(x)?.slice(0, 80) ?? String(x)
  const list = (x: unknown): string[] => {
    if (fromText && typeof x === 'string') return x.split(',').map(s => s.trim()).filter(s => s !== '')
    if (Array.isArray(x)) return x.map((s, i) => typeof s === 'string' ? s : fail(`item ${i} must be a string, got ${show(s)}`))
    return fail(`expected a list of strings, got ${show(x)}`)
  }
  const integer = (x: unknown): number => {
    const n = fromText && typeof x === 'string' && /^-?\d+$/.test(x.trim()) ? Number(x) : x
    if (typeof n === 'bigint') return integer(Number(n))
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) return fail(`expected an integer, got ${show(x)}`)
    return n
  }
  switch (spec.kind) {
    case 'string': case 'string?':
      if (typeof v !== 'string' || v === '') fail(`expected a non-empty string, got ${show(v)}`)
      return v
    case 'bool':
      if (typeof v === 'boolean') return v
      if (fromText && typeof v === 'string') {
        if (/^(true|1|yes|on)$/i.test(v)) return true
        if (/^(false|0|no|off)$/i.test(v)) return false
      }
      return fail(`expected true or false, got ${show(v)}`)
    case 'int': {
      const n = integer(v)
      if (n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) fail(`${n} is outside [${spec.min}, ${spec.max}]`)
      return n
    }
    case 'port': {
      if (v === null || v === false || (fromText && typeof v === 'string' && /^(none|off)$/i.test(v))) return null
      const n = integer(v)
      if (n < 0 || n > 65535) fail(`port ${n} is outside [0, 65535]`)
      return n
    }
    case 'level':
      if (!(LOG_LEVELS as readonly unknown[]).includes(v)) fail(`expected ${LOG_LEVELS.join('|')}, got ${show(v)}`)
      return v
    case 'strings':
      return list(v)
    case 'multiaddrs':
      return list(v).map((a, i) => {
        try { multiaddr(a) } catch (err) { fail(`item ${i} '${a}' is not a multiaddr (${(err as Error).message})`) }
        if (spec.key === 'bootstrap' && !a.includes('/p2p/')) fail(`item ${i} '${a}' needs a /p2p/<peer id> suffix`)
        return a
      })
    case 'labels': {
      let pairs: Array<[string, unknown]>
      if (fromText && typeof v === 'string') {
        pairs = list(v).map(kv => {
          const i = kv.indexOf('=')
          return i > 0 ? [kv.slice(0, i), kv.slice(i + 1)] : fail(`'${kv}' is not key=value`)
        })
      } else if (v != null && typeof v === 'object' && !Array.isArray(v)) {
        pairs = Object.entries(v)
      } else {
        return fail(`expected a table of strings, got ${show(v)}`)
      }
      const out: Record<string, string> = {}
      for (const [k, x] of pairs) {
        if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/.test(k)) fail(`label name '${k}' must be 1-128 letters, digits, . _ / -`)
        if (typeof x !== 'string' || x.length > 128) return fail(`label ${k} must be a string of at most 128 characters`)
        out[k] = x
      }
      return out
    }
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
    if (name.startsWith('no-') && SPEC_BY_FLAG.get(name.slice(3))?.kind === 'bool' && value === undefined) { name = name.slice(3); value = 'false' }
    const old = RETIRED_BY_FLAG.get(name)
    if (old !== undefined) {
      if (value === undefined && argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) i++
      retired(old.key, `flag --${name}`, warn)
      continue
    }
    const spec = name === 'config' ? null : SPEC_BY_FLAG.get(name)
    if (spec === undefined) throw new ConfigError(`--${name}`, 'command line', 'unknown flag')
    if (value === undefined) {
      if (spec?.kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1].startsWith('--'))) value = 'true'
      else if (argv[i + 1] === undefined) throw new ConfigError(spec?.key ?? 'config', `flag --${name}`, 'needs a value')
      else value = argv[++i]
    }
    if (spec == null) { configPath = value; continue }
    const source = `flag --${name}`
    const prev = out.get(spec.key)
    const repeatable = spec.kind === 'multiaddrs' || spec.kind === 'strings' || spec.kind === 'labels'
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
