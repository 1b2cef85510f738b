// The hand-written command validators the schema (protocols/command-schema.ts) replaced, as they
// were, kept only as bench:schema's baseline (parseIpv4/parseCidr now come from the tree).
//
// Validation of commands: shape, size limits and spec ranges. Used by the state machine on every
// entry it applies and by the RPC layer on bytes from the network, so both reject the same things
// with the same named error. A valid command comes back as a fresh, normalized copy holding only
// known fields (extra fields never reach the replicated state).
import type { BlixError, Command, CommandEnvelope, ErrorKind } from '../../protocols/commands.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { COMMAND_LIMITS, parseCidr, parseIpv4 } from '../../protocols/command-schema.ts'
import { JOIN_POLICIES, MIGRATION_REPORTS, VOLUME_REPORTS } from '../../protocols/commands.ts'
import type { MigrationFigures } from '../../protocols/migration-phases.ts'
import { MIGRATION_PHASES } from '../../protocols/migration-phases.ts'
import type { CommandAuth } from '../../protocols/auth.ts'
import { AUTH_LIMITS } from '../../protocols/auth.ts'
import type { Constraint, HypervisorCapability, NetworkKind, Resources, VmSpec, VmStatus } from '../../protocols/model.ts'
import { HYPERVISORS, HYPERVISOR_CAPABILITIES, NODE_STATES, RESTART_POLICIES, VM_DESIRED_STATES, VM_PHASES } from '../../protocols/model.ts'

export type Validation<T> = { ok: true, cmd: T } | { ok: false, error: BlixError }

/** Thrown inside validation and caught at its top; stackless (BlixardError.quiet), since
 * capturing a stack for every rejected field showed up in profiles. */
function fail (kind: ErrorKind, message: string): never {
  throw BlixardError.quiet(kind, message)
}

function obj (v: unknown, path: string): Record<string, unknown> {
  if (v == null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail('InvalidCommand', `${path} must be a map`)
  return v as Record<string, unknown>
}

function str (v: unknown, path: string, max: number = COMMAND_LIMITS.maxStringLength): string {
  if (typeof v !== 'string') fail('InvalidCommand', `${path} must be a string`)
  if (v.length > max) fail('TooLarge', `${path} is longer than ${max}`)
  return v
}

/** Ids: non-empty, printable ASCII without spaces (peer ids, uuids, names). */
function id (v: unknown, path: string): string {
  const s = str(v, path, COMMAND_LIMITS.maxIdLength)
  if (!/^[\x21-\x7e]+$/.test(s)) fail('InvalidCommand', `${path} must be non-empty printable ASCII without spaces`)
  return s
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** Names users type: DNS-label-ish (lowercase letters, digits, inner dashes, at most 63). */
function name (v: unknown, path: string): string {
  const s = str(v, path, COMMAND_LIMITS.maxNameLength)
  if (!DNS_LABEL.test(s)) fail('InvalidSpec', `${path} "${s}" must be a DNS label: a-z, 0-9 and inner '-', 1-63 chars`)
  return s
}

function int (v: unknown, path: string, min: number, max: number, kind: ErrorKind = 'InvalidCommand'): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail('InvalidCommand', `${path} must be an integer`)
  if (v < min || v > max) fail(kind, `${path} must be in ${min}..${max}`)
  return v
}

function num (v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail('InvalidCommand', `${path} must be a finite number`)
  if (v < min || v > max) fail('InvalidSpec', `${path} must be in ${min}..${max}`)
  return v
}

function list<T> (v: unknown, path: string, max: number, item: (x: unknown, p: string) => T): T[] {
  if (!Array.isArray(v)) fail('InvalidCommand', `${path} must be a list`)
  if (v.length > max) fail('TooLarge', `${path} has more than ${max} items`)
  return v.map((x, i) => item(x, `${path}[${i}]`))
}

function oneOf<T extends string> (v: unknown, path: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) fail('InvalidCommand', `${path} must be one of ${values.join(', ')}`)
  return v as T
}

function labels (v: unknown, path: string): Record<string, string> {
  const o = obj(v, path)
  const keys = Object.keys(o)
  if (keys.length > COMMAND_LIMITS.maxLabels) fail('TooLarge', `${path} has more than ${COMMAND_LIMITS.maxLabels} labels`)
  const out: Record<string, string> = {}
  // Sorted so that the same labels always encode (and hash) the same.
  for (const k of keys.sort()) {
    str(k, `${path} key`, COMMAND_LIMITS.maxLabelLength)
    if (k.length === 0) fail('InvalidCommand', `${path} has an empty key`)
    out[k] = str(o[k], `${path}.${k}`, COMMAND_LIMITS.maxLabelLength)
  }
  return out
}

const BYTES_MAX = Number.MAX_SAFE_INTEGER

/** query-migrate figures as a source reports them: non-negative numbers, ms or null. */
function migrationFigures (v: unknown, path: string): MigrationFigures {
  const o = obj(v, path)
  const ms = (x: unknown, p: string): number | null => x === null ? null : num(x, p, 0, BYTES_MAX)
  return {
    transferredBytes: num(o.transferredBytes, `${path}.transferredBytes`, 0, BYTES_MAX),
    remainingBytes: num(o.remainingBytes, `${path}.remainingBytes`, 0, BYTES_MAX),
    totalBytes: num(o.totalBytes, `${path}.totalBytes`, 0, BYTES_MAX),
    dirtyPagesRate: num(o.dirtyPagesRate, `${path}.dirtyPagesRate`, 0, BYTES_MAX),
    expectedDowntimeMs: ms(o.expectedDowntimeMs ?? null, `${path}.expectedDowntimeMs`),
    downtimeMs: ms(o.downtimeMs ?? null, `${path}.downtimeMs`),
    totalTimeMs: ms(o.totalTimeMs ?? null, `${path}.totalTimeMs`)
  }
}

function optional<T> (o: Record<string, unknown>, k: string, f: (v: unknown, p: string) => T): T | undefined {
  return o[k] === undefined ? undefined : f(o[k], k)
}


function resources (v: unknown, path: string): Resources {
  const o = obj(v, path)
  return {
    cpu: num(o.cpu, `${path}.cpu`, 0, 1e6),
    memoryMiB: num(o.memoryMiB, `${path}.memoryMiB`, 0, 1e12),
    diskGiB: num(o.diskGiB, `${path}.diskGiB`, 0, 1e12)
  }
}

function capabilities (v: unknown, path: string): HypervisorCapability[] {
  return list(v, path, HYPERVISOR_CAPABILITIES.length, (x, p) => oneOf(x, p, HYPERVISOR_CAPABILITIES))
}

function maxVms (v: unknown, path: string): number | null {
  return v === null ? null : int(v, path, 0, 1e6)
}

function addrs (v: unknown, path: string): string[] {
  return list(v, path, COMMAND_LIMITS.maxAddrs, (x, p) => str(x, p, 256))
}

function constraint (v: unknown, path: string): Constraint {
  const o = obj(v, path)
  const label = str(o.label, `${path}.label`, COMMAND_LIMITS.maxLabelLength)
  const op = oneOf(o.op, `${path}.op`, ['==', '!=', 'in', 'not in', 'exists', 'not exists'] as const)
  switch (op) {
    case '==': case '!=': return { label, op, value: str(o.value, `${path}.value`, COMMAND_LIMITS.maxLabelLength) }
    case 'in': case 'not in': return { label, op, values: list(o.values, `${path}.values`, COMMAND_LIMITS.maxListItems, (x, p) => str(x, p, COMMAND_LIMITS.maxLabelLength)) }
    default: return { label, op }
  }
}

function image (v: unknown, path: string): VmSpec['image'] {
  const o = obj(v, path)
  const kind = oneOf(o.kind, `${path}.kind`, ['tiny', 'flake', 'kernel'] as const)
  if (kind === 'tiny') return { kind }
  if (kind === 'flake') return { kind, ref: str(o.ref, `${path}.ref`) }
  const out: VmSpec['image'] = { kind, kernel: str(o.kernel, `${path}.kernel`) }
  if (o.initrd !== undefined) out.initrd = str(o.initrd, `${path}.initrd`)
  if (o.cmdline !== undefined) out.cmdline = str(o.cmdline, `${path}.cmdline`)
  return out
}

/** A VM spec, with the ranges the state machine enforces (InvalidSpec). */
export function validateVmSpec (v: unknown, path = 'spec'): VmSpec {
  const o = obj(v, path)
  const L = COMMAND_LIMITS
  const volumes = list(o.volumes, `${path}.volumes`, L.maxListItems, name)
  const networks = list(o.networks, `${path}.networks`, L.maxListItems, name)
  if (new Set(volumes).size !== volumes.length) fail('InvalidSpec', `${path}.volumes lists a volume twice`)
  if (new Set(networks).size !== networks.length) fail('InvalidSpec', `${path}.networks lists a network twice`)
  return {
    name: name(o.name, `${path}.name`),
    vcpus: int(o.vcpus, `${path}.vcpus`, L.minVcpus, L.maxVcpus, 'InvalidSpec'),
    memoryMiB: int(o.memoryMiB, `${path}.memoryMiB`, L.minMemoryMiB, L.maxMemoryMiB, 'InvalidSpec'),
    diskGiB: int(o.diskGiB, `${path}.diskGiB`, 0, L.maxDiskGiB, 'InvalidSpec'),
    hypervisor: oneOf(o.hypervisor, `${path}.hypervisor`, HYPERVISORS),
    image: image(o.image, `${path}.image`),
    volumes,
    networks,
    kernelParams: list(o.kernelParams, `${path}.kernelParams`, L.maxListItems, (x, p) => str(x, p, 256)),
    constraints: list(o.constraints, `${path}.constraints`, L.maxListItems, constraint),
    antiAffinityGroup: o.antiAffinityGroup === null ? null : str(o.antiAffinityGroup, `${path}.antiAffinityGroup`, L.maxLabelLength),
    affinity: list(o.affinity, `${path}.affinity`, L.maxListItems, (x, p) => {
      const a = obj(x, p)
      return { label: str(a.label, `${p}.label`, L.maxLabelLength), value: str(a.value, `${p}.value`, L.maxLabelLength), weight: num(a.weight, `${p}.weight`, -100, 100) }
    }),
    spreadLabel: o.spreadLabel === null ? null : str(o.spreadLabel, `${path}.spreadLabel`, L.maxLabelLength),
    priority: int(o.priority, `${path}.priority`, -1000, 1000, 'InvalidSpec'),
    restartPolicy: oneOf(o.restartPolicy, `${path}.restartPolicy`, RESTART_POLICIES),
    requires: capabilities(o.requires, `${path}.requires`)
  }
}

function networkKind (v: unknown, path: string): NetworkKind {
  const o = obj(v, path)
  const type = oneOf(o.type, `${path}.type`, ['bridge', 'vlan', 'vxlan'] as const)
  const L = COMMAND_LIMITS
  if (type === 'bridge') return { type }
  if (type === 'vlan') return { type, vlan: int(o.vlan, `${path}.vlan`, L.minVlan, L.maxVlan, 'InvalidSpec') }
  return { type, vni: int(o.vni, `${path}.vni`, L.minVni, L.maxVni, 'InvalidSpec') }
}

function status (v: unknown, path: string): Omit<VmStatus, 'node'> {
  const o = obj(v, path)
  const out: Omit<VmStatus, 'node'> = {
    phase: oneOf(o.phase, `${path}.phase`, VM_PHASES),
    reason: str(o.reason, `${path}.reason`),
    at: num(o.at, `${path}.at`, 0, Number.MAX_SAFE_INTEGER)
  }
  if (o.ip !== undefined) {
    const ip = str(o.ip, `${path}.ip`, 64)
    if (parseIpv4(ip) === null) fail('InvalidCommand', `${path}.ip is not an IPv4 address`)
    out.ip = ip
  }
  return out
}

function validateOne (v: unknown): Command {
  const o = obj(v, 'command')
  const L = COMMAND_LIMITS
  switch (o.type) {
    case 'RegisterNode': {
      const n = obj(o.node, 'node')
      const ov = obj(n.overcommit, 'node.overcommit')
      const node: Extract<Command, { type: 'RegisterNode' }>['node'] = {
        id: id(n.id, 'node.id'),
        name: str(n.name, 'node.name', L.maxIdLength),
        addrs: addrs(n.addrs, 'node.addrs'),
        labels: labels(n.labels, 'node.labels'),
        capacity: resources(n.capacity, 'node.capacity'),
        overcommit: {
          cpu: num(ov.cpu, 'node.overcommit.cpu', 1, 100),
          memory: num(ov.memory, 'node.overcommit.memory', 1, 100),
          disk: num(ov.disk, 'node.overcommit.disk', 1, 100)
        },
        capabilities: capabilities(n.capabilities, 'node.capabilities'),
        maxVms: maxVms(n.maxVms, 'node.maxVms')
      }
      if (n.name === '') fail('InvalidSpec', 'node.name must not be empty')
      if (n.state !== undefined) node.state = oneOf(n.state, 'node.state', NODE_STATES)
      return { type: 'RegisterNode', node }
    }
    case 'UpdateNode': {
      const c: Extract<Command, { type: 'UpdateNode' }> = { type: 'UpdateNode', id: id(o.id, 'id') }
      const lb = optional(o, 'labels', labels); if (lb !== undefined) c.labels = lb
      const cap = optional(o, 'capacity', resources); if (cap !== undefined) c.capacity = cap
      const ad = optional(o, 'addrs', addrs); if (ad !== undefined) c.addrs = ad
      const cs = optional(o, 'capabilities', capabilities); if (cs !== undefined) c.capabilities = cs
      if (o.maxVms !== undefined) c.maxVms = maxVms(o.maxVms, 'maxVms')
      if (o.state !== undefined) c.state = oneOf(o.state, 'state', NODE_STATES)
      return c
    }
    case 'RemoveNode': return { type: 'RemoveNode', id: id(o.id, 'id') }
    case 'CreateVm': {
      const c: Extract<Command, { type: 'CreateVm' }> = { type: 'CreateVm', id: id(o.id, 'id'), spec: validateVmSpec(o.spec) }
      if (o.desired !== undefined) c.desired = oneOf(o.desired, 'desired', VM_DESIRED_STATES)
      return c
    }
    case 'UpdateVmSpec': {
      const c: Extract<Command, { type: 'UpdateVmSpec' }> = { type: 'UpdateVmSpec', id: id(o.id, 'id'), spec: validateVmSpec(o.spec) }
      if (o.ifGeneration !== undefined) c.ifGeneration = int(o.ifGeneration, 'ifGeneration', 0, Number.MAX_SAFE_INTEGER)
      return c
    }
    case 'SetVmDesiredState': return { type: 'SetVmDesiredState', id: id(o.id, 'id'), desired: oneOf(o.desired, 'desired', VM_DESIRED_STATES) }
    case 'AssignVm': {
      const c: Extract<Command, { type: 'AssignVm' }> = { type: 'AssignVm', id: id(o.id, 'id'), node: o.node === null ? null : id(o.node, 'node') }
      if (o.reason !== undefined) c.reason = str(o.reason, 'reason')
      if (o.term !== undefined) c.term = int(o.term, 'term', 1, Number.MAX_SAFE_INTEGER)
      return c
    }
    case 'ReportVmStatus':
      return {
        type: 'ReportVmStatus',
        reports: list(o.reports, 'reports', L.maxReports, (x, p) => {
          const r = obj(x, p)
          return { id: id(r.id, `${p}.id`), node: id(r.node, `${p}.node`), generation: int(r.generation, `${p}.generation`, 0, Number.MAX_SAFE_INTEGER), status: status(r.status, `${p}.status`) }
        })
      }
    case 'DeleteVm': return { type: 'DeleteVm', id: id(o.id, 'id') }
    case 'CreateVolume': {
      const c: Extract<Command, { type: 'CreateVolume' }> = {
        type: 'CreateVolume', name: name(o.name, 'name'), pool: name(o.pool, 'pool'), sizeGiB: int(o.sizeGiB, 'sizeGiB', 1, L.maxVolumeGiB, 'InvalidSpec')
      }
      if (o.parent != null) {
        const p = obj(o.parent, 'parent')
        c.parent = { volume: name(p.volume, 'parent.volume'), snapshot: name(p.snapshot, 'parent.snapshot') }
      } else if (o.parent === null) c.parent = null
      return c
    }
    case 'ResizeVolume': return { type: 'ResizeVolume', name: name(o.name, 'name'), sizeGiB: int(o.sizeGiB, 'sizeGiB', 1, L.maxVolumeGiB, 'InvalidSpec') }
    case 'SnapshotVolume': return { type: 'SnapshotVolume', name: name(o.name, 'name'), snapshot: name(o.snapshot, 'snapshot') }
    case 'DeleteVolume': return { type: 'DeleteVolume', name: name(o.name, 'name') }
    case 'ReportVolume': {
      const c: Extract<Command, { type: 'ReportVolume' }> = {
        type: 'ReportVolume',
        name: name(o.name, 'name'),
        node: id(o.node, 'node'),
        generation: int(o.generation, 'generation', 0, Number.MAX_SAFE_INTEGER),
        outcome: oneOf(o.outcome, 'outcome', VOLUME_REPORTS)
      }
      if (o.reason !== undefined) c.reason = str(o.reason, 'reason')
      return c
    }
    case 'CreateNetwork': {
      const subnet = str(o.subnet, 'subnet', 32)
      const cidr = parseCidr(subnet)
      if (cidr === null) fail('InvalidSpec', `subnet "${subnet}" is not an IPv4 CIDR with zero host bits`)
      if (cidr.prefix > L.maxPrefixLength) fail('InvalidSpec', `subnet /${cidr.prefix} is too small (at most /${L.maxPrefixLength})`)
      const c: Extract<Command, { type: 'CreateNetwork' }> = { type: 'CreateNetwork', name: name(o.name, 'name'), kind: networkKind(o.kind, 'kind'), subnet }
      if (o.gateway != null) {
        const gw = str(o.gateway, 'gateway', 32)
        const g = parseIpv4(gw)
        if (g === null) fail('InvalidSpec', `gateway "${gw}" is not an IPv4 address`)
        if (g <= cidr.network || g >= cidr.broadcast) fail('InvalidSpec', `gateway ${gw} is not a host address of ${subnet}`)
        c.gateway = gw
      } else if (o.gateway === null) c.gateway = null
      return c
    }
    case 'DeleteNetwork': return { type: 'DeleteNetwork', name: name(o.name, 'name') }
    case 'AllocateIp': return { type: 'AllocateIp', network: name(o.network, 'network'), vm: id(o.vm, 'vm') }
    case 'ReleaseIp': return { type: 'ReleaseIp', network: name(o.network, 'network'), vm: id(o.vm, 'vm') }
    case 'AddAdmin': return { type: 'AddAdmin', peerId: id(o.peerId, 'peerId'), name: str(o.name, 'name', L.maxIdLength) }
    case 'RemoveAdmin': return { type: 'RemoveAdmin', peerId: id(o.peerId, 'peerId') }
    case 'SetJoinPolicy': return { type: 'SetJoinPolicy', policy: oneOf(o.policy, 'policy', JOIN_POLICIES) }
    case 'ApproveNode': return { type: 'ApproveNode', peerId: id(o.peerId, 'peerId') }
    case 'RecoverAdmin': return { type: 'RecoverAdmin', peerId: id(o.peerId, 'peerId') }
    case 'RenewLeases': {
      const c: Extract<Command, { type: 'RenewLeases' }> = {
        type: 'RenewLeases',
        leases: list(o.leases, 'leases', L.maxLeasesPerBatch, (x, p) => {
          const r = obj(x, p)
          return { node: id(r.node, `${p}.node`), epoch: int(r.epoch, `${p}.epoch`, 0, Number.MAX_SAFE_INTEGER) }
        }),
        leaseMs: int(o.leaseMs, 'leaseMs', 1, L.maxLeaseMs)
      }
      if (o.term !== undefined) c.term = int(o.term, 'term', 1, Number.MAX_SAFE_INTEGER)
      return c
    }
    case 'MarkNodeDown': {
      const c: Extract<Command, { type: 'MarkNodeDown' }> = {
        type: 'MarkNodeDown',
        node: id(o.node, 'node'),
        epoch: int(o.epoch, 'epoch', 0, Number.MAX_SAFE_INTEGER),
        seq: int(o.seq, 'seq', 0, Number.MAX_SAFE_INTEGER),
        expiredAt: int(o.expiredAt, 'expiredAt', 0, Number.MAX_SAFE_INTEGER),
        reason: str(o.reason, 'reason')
      }
      if (o.term !== undefined) c.term = int(o.term, 'term', 1, Number.MAX_SAFE_INTEGER)
      return c
    }
    case 'StartMigration': {
      const c: Extract<Command, { type: 'StartMigration' }> = { type: 'StartMigration', vm: id(o.vm, 'vm'), target: id(o.target, 'target') }
      if (o.cold !== undefined) {
        if (o.cold !== true) fail('InvalidCommand', `cold must be true or absent, got ${JSON.stringify(o.cold)}`)
        c.cold = true
      }
      return c
    }
    case 'EvacuateVm': {
      const c: Extract<Command, { type: 'EvacuateVm' }> = { type: 'EvacuateVm', vm: id(o.vm, 'vm'), target: id(o.target, 'target') }
      if (o.term !== undefined) c.term = int(o.term, 'term', 1, Number.MAX_SAFE_INTEGER)
      return c
    }
    case 'CancelMigration': {
      const c: Extract<Command, { type: 'CancelMigration' }> = { type: 'CancelMigration', vm: id(o.vm, 'vm') }
      if (o.reason !== undefined) c.reason = str(o.reason, 'reason')
      return c
    }
    case 'ReportMigration': {
      const c: Extract<Command, { type: 'ReportMigration' }> = {
        type: 'ReportMigration',
        vm: id(o.vm, 'vm'),
        node: id(o.node, 'node'),
        started: int(o.started, 'started', 0, Number.MAX_SAFE_INTEGER),
        event: oneOf(o.event, 'event', MIGRATION_REPORTS)
      }
      if (o.reason !== undefined) c.reason = str(o.reason, 'reason')
      if (o.figures !== undefined) c.figures = migrationFigures(o.figures, 'figures')
      return c
    }
    case 'ExpireMigration': {
      const c: Extract<Command, { type: 'ExpireMigration' }> = {
        type: 'ExpireMigration',
        vm: id(o.vm, 'vm'),
        started: int(o.started, 'started', 0, Number.MAX_SAFE_INTEGER),
        phase: oneOf(o.phase, 'phase', MIGRATION_PHASES),
        reason: str(o.reason, 'reason')
      }
      if (o.term !== undefined) c.term = int(o.term, 'term', 1, Number.MAX_SAFE_INTEGER)
      return c
    }
    default: return fail('InvalidCommand', `unknown command type ${typeof o.type === 'string' ? o.type.slice(0, 64) : typeof o.type}`)
  }
}

export function validateCommand (x: unknown): Validation<Command> {
  try {
    return { ok: true, cmd: validateOne(x) }
  } catch (e) {
    if (e instanceof BlixardError) return { ok: false, error: e.toJSON() }
    // Anything odd (e.g. a getter that throws) is still the sender's fault, never a crash.
    return { ok: false, error: { kind: 'InvalidCommand', message: e instanceof Error ? e.message : 'invalid command' } }
  }
}

/** The `auth` field of an envelope: shape only (the signature is checked by protocols/auth.ts). */
export function commandAuth (v: unknown, path = 'auth'): CommandAuth {
  const o = obj(v, path)
  const sig = o.sig
  if (!(sig instanceof Uint8Array)) fail('InvalidCommand', `${path}.sig must be bytes`)
  if (sig.byteLength !== AUTH_LIMITS.signatureBytes) fail('InvalidCommand', `${path}.sig must be ${AUTH_LIMITS.signatureBytes} bytes`)
  return {
    signer: id(o.signer, `${path}.signer`),
    nonce: id(o.nonce, `${path}.nonce`),
    until: int(o.until, `${path}.until`, 0, Number.MAX_SAFE_INTEGER),
    sig: new Uint8Array(sig)
  }
}

export function validateEnvelope (x: unknown): Validation<CommandEnvelope> {
  try {
    const o = obj(x, 'envelope')
    const at = num(o.at, 'at', 0, Number.MAX_SAFE_INTEGER)
    const key = o.key === undefined || o.key === null ? undefined : str(o.key, 'key', COMMAND_LIMITS.maxIdempotencyKeyLength)
    const auth = o.auth === undefined || o.auth === null ? undefined : commandAuth(o.auth)
    const v = validateCommand(o.cmd)
    if (!v.ok) return v
    const env: CommandEnvelope = { cmd: v.cmd, at }
    if (key !== undefined) env.key = key
    if (auth !== undefined) env.auth = auth
    return { ok: true, cmd: env }
  } catch (e) {
    if (e instanceof BlixardError) return { ok: false, error: e.toJSON() }
    return { ok: false, error: { kind: 'InvalidCommand', message: e instanceof Error ? e.message : 'invalid envelope' } }
  }
}
