// The commands' shapes, declared once (protocols/schema.ts): each command's fields with their
// types, size limits and spec ranges. The Command type (protocols/commands.ts) and the model types
// a command carries (VmSpec, Resources, ...: protocols/model.ts) are derived from these
// declarations, and so are the checkers. Used by the state machine on every entry it applies and
// by the RPC layer on bytes from the network, so both reject the same things with the same named
// error. A valid command comes back as a fresh, normalized copy holding only known fields (extra
// fields never reach the replicated state).
import type { BlixError, Command, CommandEnvelope } from './commands.ts'
import { BlixardError } from './errors.ts'
import { JOIN_POLICIES, MIGRATION_REPORTS, VOLUME_REPORTS } from './commands.ts'
import { MIGRATION_PHASES } from './migration-phases.ts'
import { SNAPSHOT_REPORTS } from './snapshots.ts'
import { MAX_WARM_POOL_SIZE } from './pools.ts'
import type { CommandAuth } from './auth.ts'
import { AUTH_LIMITS } from './auth.ts'
import { QUOTA_LIMIT_MAX, VM_LIMITS } from './vm-limits.ts'
import type { VmSpec } from './model.ts'
import { HYPERVISORS, HYPERVISOR_CAPABILITIES, NODE_STATES, QUOTA_RESOURCES, RESTART_POLICIES, VM_DESIRED_STATES, VM_PHASES } from './model.ts'
import type { Infer, Problem, Schema } from './schema.ts'
import { compile, s } from './schema.ts'

/** Bounds on what one command may carry. */
export const COMMAND_LIMITS = {
  maxIdLength: 128,
  maxNameLength: 63,
  maxStringLength: 1024,
  maxLabels: 64,
  maxLabelLength: 128,
  maxAddrs: 32,
  maxListItems: 64,
  maxReports: 1024,
  /** renewals in one RenewLeases entry: more nodes than a cluster has */
  maxLeasesPerBatch: 4096,
  /** a lease longer than an hour is a mistake, not a setting */
  maxLeaseMs: 3_600_000,
  /** the nodes a drain counts on to take its VMs (UpdateNode.onto): at most one per VM it moves,
   * and more nodes than a cluster has */
  maxDrainTargets: 4096,
  maxIdempotencyKeyLength: 128,
  /** an encoded envelope larger than this is refused (TooLarge) */
  maxCommandBytes: 256 * 1024,
  ...VM_LIMITS,
  minVlan: 1,
  maxVlan: 4094,
  minVni: 1,
  maxVni: 16777215,
  /** a network needs room for at least 2 hosts */
  maxPrefixLength: 30
} as const

export type Validation<T> = { ok: true, cmd: T } | { ok: false, error: BlixError }

const L = COMMAND_LIMITS
const MAX_SAFE = Number.MAX_SAFE_INTEGER

// ---- the pieces ----

const text = (max: number = L.maxStringLength): Schema<string> => s.str(max)
/** Ids: non-empty, printable ASCII without spaces (peer ids, uuids, names). */
const id = s.str(L.maxIdLength, { re: /^[\x21-\x7e]+$/, kind: 'InvalidCommand', text: (p) => `${p} must be non-empty printable ASCII without spaces` })
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
/** Names users type: DNS-label-ish (lowercase letters, digits, inner dashes, at most 63). */
export const NAME = s.str(L.maxNameLength, { re: DNS_LABEL, kind: 'InvalidSpec', text: (p, v) => `${p} "${v}" must be a DNS label: a-z, 0-9 and inner '-', 1-63 chars` })
const name = NAME
/** a volume's size */
export const VOLUME_GIB = s.int(1, L.maxVolumeGiB, 'InvalidSpec')
/** a network's subnet (CIDR) or gateway, as written */
export const ADDRESS_TEXT = s.str(32)
const label = text(L.maxLabelLength)
const counter = s.int(0, MAX_SAFE)
/** the leader term a scheduling decision is signed with (protocols/auth.ts) */
const term = s.int(1, MAX_SAFE)
const BYTES_MAX = Number.MAX_SAFE_INTEGER

export const RESOURCES = s.obj({
  /** vCPUs (cores) */
  cpu: s.num(0, 1e6),
  /** MiB */
  memoryMiB: s.num(0, 1e12),
  /** GiB */
  diskGiB: s.num(0, 1e12)
})
const capabilities = s.list(HYPERVISOR_CAPABILITIES.length, s.oneOf(HYPERVISOR_CAPABILITIES))
const maxVms = s.nullable(s.int(0, 1e6))
const addrs = s.list(L.maxAddrs, text(256))
const labels = s.labels(L.maxLabels, L.maxLabelLength)

/** A placement constraint on node labels: `arch == x86_64`, `zone in [a, b]`, `gpu exists`. */
export const CONSTRAINT = s.union('op', [
  s.obj({ label, op: s.tag('=='), value: label }),
  s.obj({ label, op: s.tag('!='), value: label }),
  s.obj({ label, op: s.tag('in'), values: s.list(L.maxListItems, label) }),
  s.obj({ label, op: s.tag('not in'), values: s.list(L.maxListItems, label) }),
  s.obj({ label, op: s.tag('exists') }),
  s.obj({ label, op: s.tag('not exists') })
])

const IMAGE = s.union('kind', [
  s.obj({ kind: s.tag('tiny') }),
  s.obj({ kind: s.tag('flake'), ref: text() }),
  s.obj({ kind: s.tag('kernel'), kernel: text() }, { initrd: text(), cmdline: text() })
])

/** A list of names, none twice (a quadratic scan: at most maxListItems, and no allocation). */
function uniqueNames (what: string): Schema<string[]> {
  const twice: Problem = { kind: 'InvalidSpec', message: (p) => `${p} lists a ${what} twice` }
  return s.refine(s.list(L.maxListItems, name), (v) => {
    for (let i = 1; i < v.length; i++) for (let j = 0; j < i; j++) if (v[i] === v[j]) return twice
    return undefined
  })
}

/** A VM spec, with the ranges the state machine enforces (InvalidSpec). */
export const VM_SPEC = s.obj({
  name,
  vcpus: s.int(L.minVcpus, L.maxVcpus, 'InvalidSpec'),
  memoryMiB: s.int(L.minMemoryMiB, L.maxMemoryMiB, 'InvalidSpec'),
  diskGiB: s.int(0, L.maxDiskGiB, 'InvalidSpec'),
  hypervisor: s.oneOf(HYPERVISORS),
  image: IMAGE,
  /** volume names */
  volumes: uniqueNames('volume'),
  /** network names */
  networks: uniqueNames('network'),
  kernelParams: s.list(L.maxListItems, text(256)),
  constraints: s.list(L.maxListItems, CONSTRAINT),
  /** hard anti-affinity: no two VMs of one group on the same node */
  antiAffinityGroup: s.nullable(label),
  /** soft affinity/anti-affinity to labels or groups, weighted in placement */
  affinity: s.list(L.maxListItems, s.obj({ label, value: label, weight: s.num(-100, 100) })),
  spreadLabel: s.nullable(label),
  priority: s.int(-1000, 1000, 'InvalidSpec'),
  restartPolicy: s.oneOf(RESTART_POLICIES),
  requires: capabilities
}, {
  /** the project (tenant) it belongs to: its quota counts it (storage/apply-quotas.ts); absent in a
   * command: `default` on create, the VM's own on a spec change (apply records it) */
  project: s.nullAbsent(name),
  /** false: never evicted by a higher-priority VM (node/scheduler.ts preemption); absent: it may be.
   * Left out of a spec when absent, so a spec without it encodes (and is signed) as before it existed. */
  preemptible: s.nullAbsent(s.bool())
})

const NOT_IPV4: Problem = { kind: 'InvalidCommand', message: (p) => `${p} is not an IPv4 address` }

/** A VM's status as its host reports it (the state machine adds the node). */
export const VM_STATUS = s.obj({
  phase: s.oneOf(VM_PHASES),
  reason: text(),
  /** observed at (reporter's clock, ms) */
  at: s.num(0, MAX_SAFE)
}, {
  ip: s.refine(text(64), (v) => parseIpv4(v) === null ? NOT_IPV4 : undefined)
})

/** What `blixard vm migrate --wait` shows: QEMU's query-migrate, as the source last reported it
 * (non-negative numbers; ms or null). */
export const MIGRATION_FIGURES = s.obj({
  /** RAM bytes sent so far */
  transferredBytes: s.num(0, BYTES_MAX),
  remainingBytes: s.num(0, BYTES_MAX),
  totalBytes: s.num(0, BYTES_MAX),
  /** pages dirtied per second, as QEMU last measured it */
  dirtyPagesRate: s.num(0, BYTES_MAX),
  /** while transferring: the pause QEMU expects if it switched now (ms) */
  expectedDowntimeMs: s.nullable(s.num(0, BYTES_MAX), { absentIsNull: true }),
  /** once switched: the pause the guest saw (ms) */
  downtimeMs: s.nullable(s.num(0, BYTES_MAX), { absentIsNull: true }),
  /** from `migrate` to the end (ms): once completed, or so far while active */
  totalTimeMs: s.nullable(s.num(0, BYTES_MAX), { absentIsNull: true })
})

export const NETWORK_KIND = s.union('type', [
  s.obj({ type: s.tag('bridge') }),
  s.obj({ type: s.tag('vlan'), vlan: s.int(L.minVlan, L.maxVlan, 'InvalidSpec') }),
  s.obj({ type: s.tag('vxlan'), vni: s.int(L.minVni, L.maxVni, 'InvalidSpec') })
])

const EMPTY: Problem = { kind: 'InvalidSpec', message: (p) => `${p} must not be empty` }

/** A node as it registers itself (the state machine adds the times and, unless given, the state). */
export const NODE_REGISTRATION = s.obj({
  /** libp2p peer id */
  id,
  name: s.refine(text(L.maxIdLength), (v) => v === '' ? EMPTY : undefined),
  addrs,
  labels,
  capacity: RESOURCES,
  /** reservations may exceed capacity by this ratio (1 = none) */
  overcommit: s.obj({ cpu: s.num(1, 100), memory: s.num(1, 100), disk: s.num(1, 100) }),
  capabilities,
  maxVms
}, { state: s.oneOf(NODE_STATES) })

/** A network's subnet and gateway, checked together: the gateway must be a host of the subnet. */
export function networkProblem (c: { subnet: string, gateway?: string | null }): Problem | undefined {
  const cidr = parseCidr(c.subnet)
  if (cidr === null) return { kind: 'InvalidSpec', message: (_, pre) => `${pre}subnet "${c.subnet}" is not an IPv4 CIDR with zero host bits` }
  if (cidr.prefix > L.maxPrefixLength) return { kind: 'InvalidSpec', message: (_, pre) => `${pre}subnet /${cidr.prefix} is too small (at most /${L.maxPrefixLength})` }
  const gw = c.gateway
  if (gw == null) return undefined
  const g = parseIpv4(gw)
  if (g === null) return { kind: 'InvalidSpec', message: (_, pre) => `${pre}gateway "${gw}" is not an IPv4 address` }
  if (g <= cidr.network || g >= cidr.broadcast) return { kind: 'InvalidSpec', message: (_, pre) => `${pre}gateway ${gw} is not a host address of ${c.subnet}` }
  return undefined
}

/** The fields of a report a party makes, signed by its own key, on one step of something it
 * carries out (a volume's generation, a migration's attempt): who reports, and why it failed. */
const reporter = { node: id }
const reportReason = { reason: text() }

// ---- scheduler pieces ----

/** VMs one preemption may evict: a VM needs at most a node's worth of room. */
export const MAX_PREEMPTION_VICTIMS = 256

const quotaLimit = s.int(0, QUOTA_LIMIT_MAX, 'InvalidSpec')
const QUOTA_LIMITS_SHAPE = s.obj({}, { vcpus: quotaLimit, memoryMiB: quotaLimit, diskGiB: quotaLimit, vms: quotaLimit, ips: quotaLimit })
const checkQuotaShape = compile(QUOTA_LIMITS_SHAPE, 'limits')
/** What a project may hold at most (SetQuota's `limits`); a limit left out is unlimited, in
 * QUOTA_RESOURCES order. A resource it does not know is refused, not dropped: a typo in a limit
 * would otherwise leave that resource unlimited without a word. */
export const QUOTA_LIMITS = s.custom<Infer<typeof QUOTA_LIMITS_SHAPE>>((x) => {
  if (x != null && typeof x === 'object' && !Array.isArray(x)) {
    for (const k of Object.keys(x)) {
      if (!(QUOTA_RESOURCES as readonly string[]).includes(k)) throw BlixardError.quiet('InvalidCommand', `limits.${k.slice(0, 64)} is not a quota resource (${QUOTA_RESOURCES.join(', ')})`)
    }
  }
  return checkQuotaShape(x)
})

const victimsProblem = (v: string[]): Problem | undefined =>
  v.length === 0
    ? { kind: 'InvalidCommand', message: (p) => `${p} must name at least one VM (a placement without evictions is an AssignVm)` }
    : new Set(v).size !== v.length ? { kind: 'InvalidCommand', message: (p) => `${p} names a VM twice` } : undefined

// ---- VM memory snapshots: protocols/snapshots.ts holds the record and the rules' words ----

/** A snapshot name: a DNS label (it becomes a file name on the VM's host). */
export const SNAPSHOT_NAME = name
const snapshotName = SNAPSHOT_NAME
const snapshotCount = s.int(0, MAX_SAFE)
const DRAIN_ONLY: Problem = { kind: 'InvalidCommand', message: () => 'force and onto go only with state draining' }
const TAKEN_NEEDS: Problem = { kind: 'InvalidCommand', message: () => 'a taken report carries sizeBytes and where the state is: path (a local file) or pool and image (an RBD image), not both' }
const NOT_ABSOLUTE: Problem = { kind: 'InvalidCommand', message: (p) => `${p} must be absolute` }
export const SNAPSHOT_COMMANDS = [
  /** an admin asks the VM's host to save its memory and devices under `name` */
  s.obj({ type: s.tag('SnapshotVm'), vm: id, name: snapshotName }),
  /** an admin asks that host to roll the running guest back to a ready snapshot */
  s.obj({ type: s.tag('RestoreVm'), vm: id, name: snapshotName }),
  /** an admin deletes it: the host removes the file, then reports it gone */
  s.obj({ type: s.tag('DeleteVmSnapshot'), vm: id, name: snapshotName }),
  /** the holding host reports (signed by its own key, only on its own snapshots) */
  s.refine(s.obj({ type: s.tag('ReportVmSnapshot'), vm: id, name: snapshotName, node: id, event: s.oneOf(SNAPSHOT_REPORTS) }, {
    sizeBytes: snapshotCount,
    pausedMs: snapshotCount,
    ms: snapshotCount,
    path: s.refine(text(4096), (v) => v.startsWith('/') ? undefined : NOT_ABSOLUTE),
    /** the RBD image holding the state (a host with Ceph): checked on apply against the name it must have */
    pool: name,
    image: text(128),
    reason: text()
  }), (c) => c.event === 'taken' && (c.sizeBytes === undefined || (c.path === undefined) === (c.image === undefined || c.pool === undefined)) ? TAKEN_NEEDS : undefined)
] as const

// ---- warm pools: protocols/pools.ts holds the record and the hosts' decisions ----

/** a pool's fields, shared by its command and its RPC params (protocols/rpc-pools.ts) */
export const POOL_FIELDS = { name, vcpus: s.int(L.minVcpus, L.maxVcpus, 'InvalidSpec'), memoryMiB: s.int(L.minMemoryMiB, L.maxMemoryMiB, 'InvalidSpec'), size: s.int(0, MAX_WARM_POOL_SIZE, 'InvalidSpec') }
/** a pool's optional fields: the labels a node must meet to keep the pool; the image its guests
 * boot (absent: the tiny image) */
export const POOL_OPTIONAL = { constraints: s.list(L.maxListItems, CONSTRAINT), image: IMAGE }

export const POOL_COMMANDS = [
  /** an admin declares or resizes pool `name`: `size` pre-booted paused guests of this image and shape
   * per node (per node whose labels meet `constraints`, when given) */
  s.obj({ type: s.tag('SetWarmPool'), ...POOL_FIELDS }, POOL_OPTIONAL),
  /** an admin removes it: every host removes its guests of it */
  s.obj({ type: s.tag('DeleteWarmPool'), name })
] as const

// ---- the commands (protocols/commands.ts derives Command from this) ----

export const COMMAND = s.union('type', [
  s.obj({ type: s.tag('RegisterNode'), node: NODE_REGISTRATION }),
  /** state (drain, cordon, down) is an admin's. A drain without `force` carries `onto`: the nodes
   * the node that prepared it found its running VMs fit (an evacuation plan); apply refuses the
   * drain if the node holds running VMs and one of those is no longer ready, so of two drains
   * racing for the same room at most one lands (storage/apply-nodes.ts). `force`: drain anyway,
   * VMs that fit nowhere stop and wait pending. */
  s.refine(s.obj({ type: s.tag('UpdateNode'), id }, { labels, capacity: RESOURCES, addrs, capabilities, maxVms, state: s.oneOf(NODE_STATES), force: s.bool(), onto: s.list(L.maxDrainTargets, id) }),
    (c) => (c.force !== undefined || c.onto !== undefined) && c.state !== 'draining' ? DRAIN_ONLY : undefined),
  s.obj({ type: s.tag('RemoveNode'), id }),
  /** fromSnapshot: a clone of another VM's memory snapshot (storage/apply-vms.ts createVm): the
   * source's devices, its disks RBD clones of the snapshot's, its first start a resume */
  s.obj({ type: s.tag('CreateVm'), id, spec: VM_SPEC }, { desired: s.oneOf(VM_DESIRED_STATES), fromSnapshot: s.obj({ vm: id, name: snapshotName }) }),
  /** ifGeneration: apply only if the VM is still at this generation (GenerationMismatch otherwise), so a
   * read-modify-write never overwrites a change made in between */
  s.obj({ type: s.tag('UpdateVmSpec'), id, spec: VM_SPEC }, { ifGeneration: counter }),
  s.obj({ type: s.tag('SetVmDesiredState'), id, desired: s.oneOf(VM_DESIRED_STATES) }),
  // term: the term of the leader that decided it, signed with it (protocols/auth.ts: a scheduling
  // decision applies only in an entry of that term, and only one signer places per term)
  s.obj({ type: s.tag('AssignVm'), id, node: s.nullable(id) }, { reason: text(), term }),
  // released: the `releasing.since` the node saw on the record when it found the guest gone (a VM
  // taken off it: storage/release-rules.ts); only such a report ends the release
  s.obj({ type: s.tag('ReportVmStatus'), reports: s.list(L.maxReports, s.obj({ id, node: id, generation: counter, status: VM_STATUS }, { released: s.num(0, MAX_SAFE) })) }),
  s.obj({ type: s.tag('DeleteVm'), id }),
  s.obj({ type: s.tag('CreateVolume'), name, pool: name, sizeGiB: VOLUME_GIB }, { parent: s.nullable(s.obj({ volume: name, snapshot: name })) }),
  s.obj({ type: s.tag('ResizeVolume'), name, sizeGiB: VOLUME_GIB }),
  s.obj({ type: s.tag('SnapshotVolume'), name, snapshot: name }),
  s.obj({ type: s.tag('DeleteVolume'), name }),
  /** the volume reconciler (`node`, signed by its own key) carried out generation `generation` of
   * a volume: its image is ready, or the change failed (reason), or the image is gone (a delete) */
  s.obj({ type: s.tag('ReportVolume'), name, ...reporter, generation: counter, outcome: s.oneOf(VOLUME_REPORTS) }, reportReason),
  s.refine(s.obj({ type: s.tag('CreateNetwork'), name, kind: NETWORK_KIND, subnet: ADDRESS_TEXT }, { gateway: s.nullable(ADDRESS_TEXT) }), networkProblem),
  s.obj({ type: s.tag('DeleteNetwork'), name }),
  s.obj({ type: s.tag('AllocateIp'), network: name, vm: id }),
  s.obj({ type: s.tag('ReleaseIp'), network: name, vm: id }),
  s.obj({ type: s.tag('AddAdmin'), peerId: id, name: text(L.maxIdLength) }),
  s.obj({ type: s.tag('RemoveAdmin'), peerId: id }),
  /** which hosts may join: any holder of the cluster key, or only peer ids an admin approved */
  s.obj({ type: s.tag('SetJoinPolicy'), policy: s.oneOf(JOIN_POLICIES) }),
  s.obj({ type: s.tag('ApproveNode'), peerId: id }),
  /** offline admin recovery: one registered node's vote (signed by its key) to make peerId an
   * admin; applied once every registered node voted (storage/apply-admins.ts) */
  s.obj({ type: s.tag('RecoverAdmin'), peerId: id }),
  /** the leader's batch of liveness renewals it received (each over the renewing node's own
   * authenticated stream) in one interval: one entry for many nodes (storage/apply-ha.ts) */
  s.obj({ type: s.tag('RenewLeases'), leases: s.list(L.maxLeasesPerBatch, s.obj({ node: id, epoch: counter })), leaseMs: s.int(1, L.maxLeaseMs) }, { term }),
  /** the leader judged `node`'s lease (at this epoch and renewal seq) expired at `expiredAt`
   * (leader's wall clock, for the reason text): down, and its VMs rescheduled */
  s.obj({ type: s.tag('MarkNodeDown'), node: id, epoch: counter, seq: counter, expiredAt: counter, reason: text() }, { term }),
  /** an admin's move of a VM to `target`: live (a migration record) unless `cold`, which
   * reassigns it the way a drain moves a stopped VM (its guest stops here and boots there) */
  s.obj({ type: s.tag('StartMigration'), vm: id, target: id }, { cold: s.true() }),
  /** the leader's evacuation of a draining node (node/scheduler.ts): a live migration of one of its
   * running VMs, as StartMigration but only off a node an admin set draining */
  s.obj({ type: s.tag('EvacuateVm'), vm: id, target: id }, { term }),
  /** an admin's cancel: aborts to the source unless past switchover (then refused) */
  s.obj({ type: s.tag('CancelMigration'), vm: id }, reportReason),
  /** a migration's source or target reports on the attempt that started at `started` (signed by
   * `node`'s own key; only the parties of that attempt may report, each only its own events) */
  s.obj({ type: s.tag('ReportMigration'), vm: id, ...reporter, started: counter, event: s.oneOf(MIGRATION_REPORTS) }, { ...reportReason, figures: MIGRATION_FIGURES }),
  /** the leader saw the attempt that started at `started` make no step in `phase` for too long
   * (node/migration/service.ts): ends it by the switchover rule; a no-op if it moved on since */
  s.obj({ type: s.tag('ExpireMigration'), vm: id, started: counter, phase: s.oneOf(MIGRATION_PHASES), reason: text() }, { term }),
  // ---- scheduler commands (quotas, preemption, rebalancing) ----
  /** an admin sets a project's limits (a limit left out: unlimited), or clears them with null */
  s.obj({ type: s.tag('SetQuota'), project: name, limits: s.nullable(QUOTA_LIMITS) }),
  /** the leader's preemption (node/scheduler.ts): `victims`, all on `node` and each preemptible and
   * of strictly lower priority than `vm`, are unassigned (pending, the reason naming `vm`), and
   * `vm` is assigned to `node`, in one entry (storage/apply-sched.ts) */
  s.obj({ type: s.tag('PreemptVm'), vm: id, node: id, victims: s.refine(s.list(MAX_PREEMPTION_VICTIMS, id), victimsProblem) }, { term }),
  /** the leader's rebalancing move (node/rebalancer.ts): a live migration of a running VM to a
   * less loaded node, refused within REBALANCE_COOLDOWN_MS of the VM's last move */
  s.obj({ type: s.tag('RebalanceVm'), vm: id, target: id, reason: text() }, { term }),
  ...SNAPSHOT_COMMANDS,
  ...POOL_COMMANDS
], (t) => `unknown command type ${typeof t === 'string' ? t.slice(0, 64) : typeof t}`)

/** The `auth` field of an envelope: shape only (the signature is checked by protocols/auth.ts). */
export const COMMAND_AUTH = s.obj({
  /** the signer's peer id (an Ed25519 libp2p peer id) */
  signer: id,
  /** unique per signed command: a second entry with the same signer and nonce is refused */
  nonce: id,
  /** the last log index at which this command may apply */
  until: s.int(0, MAX_SAFE),
  /** Ed25519 signature over signingBytes(cmd, signer, nonce, until) */
  sig: s.bytes(AUTH_LIMITS.signatureBytes)
})

/** What goes into a Raft entry's data: the command, when it was proposed (proposer's clock,
 * so that apply stays deterministic), and an optional client idempotency key. */
export const ENVELOPE = s.obj({
  cmd: s.rooted(COMMAND, 'command', ''),
  at: s.num(0, MAX_SAFE)
}, {
  /** a retried command with the same key is applied once; the first result is returned again */
  key: s.nullAbsent(text(L.maxIdempotencyKeyLength)),
  /** the signed authority the command needs (protocols/auth.ts); checked on the leader and on apply */
  auth: s.nullAbsent(COMMAND_AUTH)
})

// ---- the checkers, compiled once ----

const checkCommand = compile(COMMAND, 'command', '')
const checkEnvelope = compile(ENVELOPE, 'envelope', '')

/** Checkers of a part compiled per root path (a spec is `spec` in a command, `params.spec` in RPC). */
function perPath<T> (schema: Schema<T>): (v: unknown, path: string) => T {
  const byPath = new Map<string, (x: unknown) => T>()
  return (v, path) => {
    let c = byPath.get(path)
    if (c === undefined) { c = compile(schema, path); byPath.set(path, c) }
    return c(v)
  }
}
const specAt = perPath(VM_SPEC)
const authAt = perPath(COMMAND_AUTH)

/** A VM spec, with the ranges the state machine enforces (InvalidSpec); throws a BlixardError. */
export function validateVmSpec (v: unknown, path = 'spec'): VmSpec {
  return specAt(v, path)
}

/** The `auth` field of an envelope: shape only (the signature is checked by protocols/auth.ts). */
export function commandAuth (v: unknown, path = 'auth'): CommandAuth {
  return authAt(v, path)
}

/** The error body of anything a checker threw: a named kind, or (a getter that throws, say)
 * still the sender's fault, never a crash. */
function refusal (e: unknown, what: string): { ok: false, error: BlixError } {
  if (e instanceof BlixardError) return { ok: false, error: e.toJSON() }
  return { ok: false, error: { kind: 'InvalidCommand', message: e instanceof Error ? e.message : `invalid ${what}` } }
}

export function validateCommand (x: unknown): Validation<Command> {
  try {
    return { ok: true, cmd: checkCommand(x) }
  } catch (e) {
    return refusal(e, 'command')
  }
}

export function validateEnvelope (x: unknown): Validation<CommandEnvelope> {
  try {
    return { ok: true, cmd: checkEnvelope(x) }
  } catch (e) {
    return refusal(e, 'envelope')
  }
}

/** IPv4 dotted quad → 32-bit unsigned number, or null. The one IPv4 rule of the tree: each part
 * 0-255 with no leading zero (`010` is octal to inet_aton and ten to others, so it is refused). */
export function parseIpv4 (s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (m === null) return null
  let n = 0
  for (let i = 1; i <= 4; i++) {
    const part = m[i]
    if (part.length > 1 && part[0] === '0') return null
    const b = Number(part)
    if (b > 255) return null
    n = n * 256 + b
  }
  return n
}

export function formatIpv4 (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

export interface Cidr { network: number, prefix: number, broadcast: number }

/** `a.b.c.d/p` with the host bits zero; null if malformed. */
export function parseCidr (s: string): Cidr | null {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s)
  if (m === null) return null
  const ip = parseIpv4(m[1])
  const prefix = Number(m[2])
  if (ip === null || prefix > 32) return null
  const size = 2 ** (32 - prefix)
  if (ip % size !== 0) return null
  return { network: ip, prefix, broadcast: ip + size - 1 }
}

