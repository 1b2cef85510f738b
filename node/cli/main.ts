// blixard: the command-line client. Talks to any node over libp2p RPC; every
// command has --json; every error says what to do next; exit codes are
// documented in `blixard help exit-codes`.
import { BlixardError } from '../../protocols/errors.ts'
import '../polyfill.ts'
import type { VmRecord, VmSpec, NodeRecord, Hypervisor, RestartPolicy } from '../../protocols/model.ts'
import { projectOf } from '../../protocols/model.ts'
import type { MigrationRecord } from '../../protocols/migration-phases.ts'
import { cannotMigrateLive } from '../../protocols/migration-phases.ts'
import type { VmWatchEvent } from '../../protocols/rpc.ts'
import type { BlixError } from '../../protocols/commands.ts'
import { parseArgs, flag, bool, int, sizeMiB, durationMs, imageFlags, UsageError } from './args.ts'
import { createInterface } from 'node:readline/promises'
import type { FlagSpec, Parsed } from './args.ts'
// the libp2p half (connect.ts, net/rpc.ts, keygen.ts) is imported where a command needs it: loading
// it is most of a CLI start, and help, usage errors and completion scripts need none of it
import type { Connection } from './connect.ts'
import type { RpcClient } from '../net/rpc.ts'
import { table, keyValues, mib, ago, shortId, pct, named } from './format.ts'
import { VM_LIMITS, formatMiB } from '../../protocols/vm-limits.ts'
import { MAX_CONSOLE_INPUT_BYTES } from '../../protocols/limits.ts'
import { describe, exitCodeFor, nextStep, CliError, EXIT } from './errors.ts'
import type { JsonError } from './errors.ts'
import { parseConstraint } from './constraints.ts'
import { completion, COMPLETION_SHELLS, NAME_KINDS } from './completion.ts'
import type { CompletionShell, NameKind } from './completion.ts'
import { resourceCommands } from './resources.ts'
import { schedCommands } from './sched.ts'
import { cloneRefusal, snapshotCommands } from './snapshots.ts'
import { poolCommands } from './pools.ts'
import { invocationKey, mutate } from './idempotent.ts'

const GLOBAL: Record<string, FlagSpec> = {
  json: {},
  // -o wide: ids next to names (people read names; ids only where asked); -o json: --json
  output: { value: true, short: 'o' },
  peer: { value: true },
  // a node reached through the one --peer (or mDNS) found: looked up in the cluster's DHT
  'peer-id': { value: true },
  'cluster-key': { value: true },
  stale: {},
  timeout: { value: true },
  // a write's key: reuse the one an Indeterminate answer named to apply it at most once
  'idempotency-key': { value: true },
  help: { short: 'h' }
}

interface Command {
  summary: string
  usage: string
  flags?: Record<string, FlagSpec>
  run: (p: Parsed, out: Output) => Promise<number>
  /** for the completion scripts only: not listed in help */
  hidden?: boolean
}

class Output {
  constructor (readonly json: boolean, readonly wide = false) {}
  data (value: unknown, human: () => string): void {
    process.stdout.write(this.json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n')
  }
  /** One item of a stream: with --json, one compact JSON object per line (NDJSON). */
  item (value: unknown, human: () => string): void {
    process.stdout.write(this.json ? JSON.stringify(value) + '\n' : human() + '\n')
  }
  progress (line: string): void { if (!this.json) process.stderr.write(line + '\n') }
}

async function withCluster<T> (p: Parsed, fn: (c: Connection) => Promise<T>): Promise<T> {
  const { connect } = await import('./connect.ts')
  const conn = await connect({ peer: flag(p, 'peer'), peerId: flag(p, 'peer-id'), clusterKey: flag(p, 'cluster-key'), timeoutMs: int(p, 'timeout', 15, 1, 3600) * 1000 })
  try { return await fn(conn) } finally { await conn.close() }
}

function need (p: Parsed, n: number, what: string): string[] {
  if (p.positionals.length < n) throw new UsageError(`missing ${what}`)
  return p.positionals
}

const stale = (p: Parsed): { stale?: boolean } => bool(p, 'stale') ? { stale: true } : {}

function vmRow (v: VmRecord, names: Map<string, string>, wide: boolean): Array<string | number | null> {
  const row = [v.spec.name, v.status.phase, v.desired, v.assignedNode == null ? null : (names.get(v.assignedNode) ?? shortId(v.assignedNode)), v.spec.vcpus, mib(v.spec.memoryMiB), wide ? v.status.reason : named(v.status.reason, names)]
  return wide ? [...row, v.id, v.assignedNode] : row
}

/** Why a VM waits unplaced, node by node and by name, or '' when some node would take it. */
/** Flags that shape a new VM's devices or placement: a clone takes its source's. */
const SPEC_FLAGS = ['vcpus', 'memory', 'disk-size', 'image', 'flake', 'constraint', 'anti-affinity', 'spread', 'priority', 'project', 'preemptible', 'restart', 'hypervisor', 'disk', 'network', 'kernel-param', 'queue']

/** `vm create NAME --from-snapshot VM/SNAPSHOT`: a clone of a ready memory snapshot. */
async function cloneVm (p: Parsed, out: Output, name: string, from: string): Promise<number> {
  const m = /^([^/]+)\/([^/]+)$/.exec(from)
  if (m == null) throw new UsageError(`--from-snapshot takes VM/SNAPSHOT (one '/'), got "${from}"`)
  const given = SPEC_FLAGS.filter((f) => p.flags.has(f))
  if (given.length > 0) throw new UsageError(`--from-snapshot: a clone has its source's spec; drop --${given.join(', --')}`)
  return await withCluster(p, async ({ client }) => {
    const vm = await mutate(client, invocationKey(p), 'vm.clone', { name, vm: m[1], snapshot: m[2], start: bool(p, 'start', true) }).catch((e: unknown) => { throw cloneRefusal(e, name) })
    if (!bool(p, 'wait')) {
      out.data(vm, () => `VM ${vm.spec.name} created from snapshot ${m[2]} of VM ${m[1]}${vm.spec.volumes.length > 0 ? ` (its disks: ${vm.spec.volumes.join(', ')}, cloned)` : ''}; follow it with: blixard vm show ${vm.spec.name}`)
      return EXIT.ok
    }
    return await waitRunning(client, vm, p, out)
  })
}

async function waitReason (client: Connection['client'], vm: string): Promise<string> {
  const [e, nodes] = await Promise.all([client.call('vm.explain', { vm }), client.call('node.list', { stale: true })])
  if (e.decision.nodeId != null) return ''
  const names = nodeNames(nodes)
  return (e.decision.nodes ?? []).flatMap((n) => n.feasible ? [] : [`${names.get(n.nodeId) ?? shortId(n.nodeId)}: ${filterReason(n.filter, n.reason)}`]).join('; ')
}

/** A placement filter's refusal, its name said once (the reasons start with it already). */
function filterReason (filter: string | undefined, reason: string | undefined): string {
  const r = reason ?? ''
  return filter == null || r.startsWith(`${filter}:`) ? r : `${filter}: ${r}`
}

/** What the answering node heard of a node lately: its gossiped load report's age, if any. */
interface Heard { ageMs: number, stale: boolean }

const clock = (t: number): string => `${new Date(t).toISOString().slice(11, 19)}Z`

/** `ready`; `unreachable since 12:04:01Z (9s)` when its reports went stale but its lease has not
 * expired yet (silent, maybe dead: not to be read as healthy); `down since 12:04:05Z (2m)` (the
 * leader's clock when it marked the node down). `heard` null: no report from it at all. */
export function liveness (n: NodeRecord, heard?: Heard | null, now = Date.now()): string {
  if (n.liveness === 'down') return n.downSince == null ? 'down' : `down since ${clock(n.downSince)} (${ago(now - n.downSince)})`
  if (heard === null) return 'unreachable (no report)'
  if (heard?.stale === true) return `unreachable since ${clock(now - heard.ageMs)} (${ago(heard.ageMs)})`
  return 'ready'
}

/** One word for a node's health: ready, unreachable or down (JSON and the status summary). */
function health (n: NodeRecord, heard?: Heard | null): 'ready' | 'unreachable' | 'down' {
  if (n.liveness === 'down') return 'down'
  return heard === null || heard?.stale === true ? 'unreachable' : 'ready'
}

/** A node's last report as the answering node heard it (null: none); every node `undefined`
 * when the load reports could not be read (then liveness says only what the lease says). */
function heardFrom (loads: Array<{ node: string, ageMs: number, stale: boolean }> | null): (id: string) => Heard | null | undefined {
  const by = new Map((loads ?? []).map((l) => [l.node, l]))
  return (id) => loads == null ? undefined : by.get(id) ?? null
}

function nodeNames (nodes: NodeRecord[]): Map<string, string> {
  return new Map(nodes.map((n) => [n.id, n.name]))
}

/** The detach key of `vm console`: Ctrl-] (0x1d), as telnet and virsh console. */
const DETACH_BYTE = 0x1d
const DETACH_KEY = 'Ctrl-]'
/** What `vm console` shows of the console's past before it attaches. */
const CONSOLE_TAIL_BYTES = 2048

const COMMANDS: Record<string, Command> = {
  ...resourceCommands({ withCluster, need, stale }),
  ...schedCommands({ withCluster, need, stale }),
  status: {
    summary: 'Show the Raft state of the cluster',
    usage: 'blixard status [--stale]',
    run: async (p, out) => await withCluster(p, async ({ client, peer }) => {
      const st = await client.call('cluster.status', stale(p))
      const [nodes, loads] = await Promise.all([client.call('node.list', { stale: true }), client.call('node.load', {}).catch(() => null)])
      const names = nodeNames(nodes)
      const heard = heardFrom(loads)
      const byId = new Map(nodes.map((n) => [n.id, n]))
      const nm = (id: string | null): string => id == null ? 'none' : out.wide ? `${names.get(id) ?? shortId(id)} (${id})` : names.get(id) ?? shortId(id)
      // a member that is not ready says so next to its name (the leader is the answering node's view)
      const member = (id: string): string => {
        const n = byId.get(id)
        const h = n == null ? 'ready' : health(n, heard(id))
        return h === 'ready' ? nm(id) : `${nm(id)} (${liveness(n!, heard(id))})`
      }
      const nodeHealth = Object.fromEntries(nodes.map((n) => [n.name, health(n, heard(n.id))]))
      out.data({ ...st, via: peer, health: nodeHealth }, () => keyValues([
        ['Leader', nm(st.leader)], ['Term', st.term], ['Commit index', st.commit], ['Applied index', st.applied],
        ['Voters', st.voters.map(member).join(', ')], ['Learners', st.learners.map(member).join(', ') || '-'],
        ...(st.joint == null
          ? []
          : [['Joint change', `in flight: old voters ${st.joint.votersOutgoing.map(nm).join(', ')} must agree too${st.joint.learnersNext.length > 0 ? `; then learners ${st.joint.learnersNext.map(nm).join(', ')}` : ''}`] as [string, string]]),
        ['Answered by', nm(st.id)]
      ]))
      return EXIT.ok
    })
  },
  nodes: {
    summary: 'List the nodes with their state, role and gossiped load',
    usage: 'blixard nodes [--stale]',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const [nodes, st, loads] = await Promise.all([client.call('node.list', stale(p)), client.call('cluster.status', { stale: true }), client.call('node.load', {}).catch(() => null)])
      const load = new Map((loads ?? []).map((l) => [l.node, l]))
      const heard = heardFrom(loads)
      out.data(nodes.map((n) => ({ ...n, load: load.get(n.id) ?? null, health: health(n, heard(n.id)), role: st.voters.includes(n.id) ? 'voter' : st.learners.includes(n.id) ? 'learner' : 'none', leader: st.leader === n.id })), () => table(
        ['name', 'state', 'liveness', 'role', 'cpu', 'mem', 'disk', 'vms', 'capacity', 'report age', ...(out.wide ? ['id'] : [])],
        nodes.map((n) => {
          const l = load.get(n.id)
          const role = st.leader === n.id ? 'leader' : st.voters.includes(n.id) ? 'voter' : st.learners.includes(n.id) ? 'learner' : '-'
          return [n.name, n.state, liveness(n, heard(n.id)), role, pct(l?.cpuPct), pct(l?.memPct), pct(l?.diskPct), l?.vmCount ?? null, `${n.capacity.cpu}c/${mib(n.capacity.memoryMiB)}`, l == null ? null : ago(l.ageMs) + (l.stale ? ' (stale)' : ''), ...(out.wide ? [n.id] : [])]
        })))
      return EXIT.ok
    })
  },
  'node show': {
    summary: 'Show one node',
    usage: 'blixard node show NODE',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const n = await client.call('node.show', { node: need(p, 1, 'NODE')[0], ...stale(p) })
      const heard = heardFrom(await client.call('node.load', {}).catch(() => null))
      out.data({ ...n, health: health(n, heard(n.id)) }, () => keyValues([['Name', n.name], ...(out.wide ? [['Id', n.id] as [string, string]] : []), ['State', n.state], ['Liveness', liveness(n, heard(n.id)) + (n.downReason != null ? ` (${n.downReason})` : '')], ['Addresses', n.addrs.join(' ')], ['Labels', Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(', ')], ['Capacity', `${n.capacity.cpu} vCPU, ${mib(n.capacity.memoryMiB)}, ${n.capacity.diskGiB} GiB`], ['Capabilities', n.capabilities.join(', ')]]))
      return EXIT.ok
    })
  },
  'node drain': {
    summary: 'Move every VM off a node (running ones live, without a restart) and take no new ones',
    usage: 'blixard node drain NODE [--wait] [--force] [--json]',
    flags: {
      wait: { help: 'follow each VM as it leaves (live or cold, with its reason) until the node is empty' },
      force: { help: 'drain even when some of its VMs fit no other node (they stop and stay pending)' }
    },
    run: async (p, out) => await drain(p, out)
  },
  'node undrain': {
    summary: 'Let a drained node take VMs again',
    usage: 'blixard node undrain NODE',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const n = await mutate(client, invocationKey(p), 'node.undrain', { node: need(p, 1, 'NODE')[0] })
      out.data(n, () => `node ${n.name}: ${n.state}`)
      return EXIT.ok
    })
  },
  'vm create': {
    summary: 'Create a VM (placed by the scheduler, started by its host)',
    usage: 'blixard vm create NAME [--vcpus 1] [--memory 128M] [--image tiny | --flake REF] [--constraint EXPR]... [--anti-affinity GROUP] [--priority N] [--project NAME] [--no-preemptible] [--restart always|on-failure|never] [--disk VOLUME]... [--network NAME]... [--no-start] [--queue] [--wait]  |  vm create NAME --from-snapshot VM/SNAPSHOT [--wait]',
    flags: {
      vcpus: { value: true, arg: 'N', help: 'virtual CPUs', default: '1' },
      memory: { value: true, arg: 'SIZE', help: `guest memory (M, G or T; ${formatMiB(VM_LIMITS.minMemoryMiB)} to ${formatMiB(VM_LIMITS.maxMemoryMiB)})`, default: '128M' },
      'disk-size': { value: true, arg: 'GIB', help: 'size of a local root disk, in GiB (0: none)', default: '0' },
      image: { value: true, arg: 'NAME', help: 'built-in guest image (only "tiny")', default: 'tiny' },
      flake: { value: true, arg: 'REF', help: 'a microvm.nix flake reference to boot instead of --image' },
      constraint: { value: true, repeat: true, arg: 'EXPR', help: 'placement rule on node labels: zone==a, zone!=c, zone in [a, b], gpu exists' },
      'anti-affinity': { value: true, arg: 'GROUP', help: 'never two VMs of this group on one node' },
      spread: { value: true, arg: 'LABEL', help: "spread VMs evenly over this node label's values" },
      priority: { value: true, arg: 'N', help: 'scheduling priority, -1000 to 1000: a VM that fits nowhere may preempt lower ones', default: '0' },
      project: { value: true, arg: 'NAME', help: "the project it belongs to (default: default): counted against the project's quota (blixard quota show)" },
      preemptible: { help: 'may be stopped to make room for a higher-priority VM (--no-preemptible or --preemptible=false: never)', default: 'true' },
      restart: { value: true, arg: 'POLICY', help: 'always, on-failure or never', default: 'always' },
      hypervisor: { value: true, arg: 'NAME', help: 'qemu, cloud-hypervisor or firecracker', default: 'qemu' },
      disk: { value: true, repeat: true, arg: 'VOLUME', help: 'attach a volume (blixard volume create)' },
      network: { value: true, repeat: true, arg: 'NAME', help: 'attach a network (blixard network create)' },
      'kernel-param': { value: true, repeat: true, arg: 'P', help: 'extra kernel command-line parameter' },
      start: { help: 'start it once placed (--no-start: create it stopped)', default: 'true' },
      queue: { help: 'accept it even if no node fits now; it waits, pending, saying why' },
      wait: { help: 'follow it until it runs (or fails), printing each phase' },
      'from-snapshot': { value: true, arg: 'VM/SNAPSHOT', help: 'a clone of that memory snapshot: the source\'s devices, its disks cloned from the snapshot\'s, resumed (no boot) with its own name, MAC and address' }
    },
    run: async (p, out) => {
      const name = need(p, 1, 'NAME')[0]
      const from = flag(p, 'from-snapshot')
      if (from != null) return await cloneVm(p, out, name, from)
      const image = imageFlags(p)
      const restart = (flag(p, 'restart') ?? 'always') as RestartPolicy
      if (!['always', 'on-failure', 'never'].includes(restart)) throw new UsageError(`--restart must be always, on-failure or never, got "${restart}"`)
      const hypervisor = (flag(p, 'hypervisor') ?? 'qemu') as Hypervisor
      if (!['qemu', 'cloud-hypervisor', 'firecracker'].includes(hypervisor)) throw new UsageError(`--hypervisor must be qemu, cloud-hypervisor or firecracker, got "${hypervisor}"`)
      const spec: VmSpec = {
        name,
        vcpus: int(p, 'vcpus', 1, VM_LIMITS.minVcpus, VM_LIMITS.maxVcpus),
        memoryMiB: sizeMiB(p, 'memory', 128, VM_LIMITS.minMemoryMiB, VM_LIMITS.maxMemoryMiB),
        diskGiB: int(p, 'disk-size', 0, 0, VM_LIMITS.maxDiskGiB),
        hypervisor,
        image,
        volumes: p.flags.get('disk') ?? [],
        networks: p.flags.get('network') ?? [],
        kernelParams: p.flags.get('kernel-param') ?? [],
        constraints: (p.flags.get('constraint') ?? []).map(parseConstraint),
        antiAffinityGroup: flag(p, 'anti-affinity') ?? null,
        affinity: [],
        spreadLabel: flag(p, 'spread') ?? null,
        priority: int(p, 'priority', 0, -1000, 1000),
        restartPolicy: restart,
        requires: [],
        ...(flag(p, 'project') != null ? { project: flag(p, 'project') } : {}),
        ...(bool(p, 'preemptible', true) ? {} : { preemptible: false as const })
      }
      return await withCluster(p, async ({ client }) => {
        const queue = bool(p, 'queue')
        const vm = await mutate(client, invocationKey(p), 'vm.create', { spec, start: bool(p, 'start', true), ...(queue ? { queue } : {}) }).catch((e: unknown) => {
          // a --disk or --network that does not exist: say which flag, and where to look
          const m = e instanceof BlixardError && e.kind === 'NotFound' ? /^(volume|network) (\S+) not found/.exec(e.message) : null
          if (m != null) throw new CliError('NotFound', `${m[1] === 'volume' ? '--disk' : '--network'} ${m[2]}: no ${m[1]} of that name; VM ${name} was not created`, `Create it first (blixard ${m[1]} create ${m[2]} ...), or see the names with blixard ${m[1]} list.`)
          throw e
        })
        if (!bool(p, 'wait')) {
          // queued by choice: say why it waits (the reasons `vm explain` gives), nodes by name
          const why = queue && vm.assignedNode == null && vm.desired === 'running' ? await waitReason(client, vm.id) : ''
          out.data(vm, () => `VM ${vm.spec.name} created${why !== '' ? `, pending: ${why}` : ''}; follow it with: blixard vm show ${vm.spec.name}`)
          return EXIT.ok
        }
        return await waitRunning(client, vm, p, out)
      })
    }
  },
  'vm list': {
    summary: 'List VMs',
    usage: 'blixard vm list [--node NODE] [--stale]',
    flags: { node: { value: true, arg: 'NODE', help: 'only the VMs on this node (name or id)' } },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const node = flag(p, 'node')
      const [vms, nodes] = await Promise.all([client.call('vm.list', { ...stale(p), ...(node != null ? { node } : {}) }), client.call('node.list', { stale: true })])
      const names = nodeNames(nodes)
      out.data(vms, () => table(['name', 'phase', 'desired', 'node', 'vcpus', 'memory', 'reason', ...(out.wide ? ['id', 'node id'] : [])], vms.map((v) => vmRow(v, names, out.wide))))
      return EXIT.ok
    })
  },
  'vm show': {
    summary: 'Show one VM',
    usage: 'blixard vm show VM [--stale]',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const v = await client.call('vm.show', { vm: need(p, 1, 'VM')[0], ...stale(p) })
      const names = nodeNames(await client.call('node.list', { stale: true }))
      const nm = (id: string): string => out.wide ? `${names.get(id) ?? shortId(id)} (${id})` : names.get(id) ?? shortId(id)
      const m = v.migration
      out.data(v, () => keyValues([
        ['Name', v.spec.name], ...(out.wide ? [['Id', v.id] as [string, string]] : []), ['Phase', v.status.phase], ['Reason', out.wide ? v.status.reason : named(v.status.reason, names)], ['Desired', v.desired], ['Node', v.assignedNode == null ? null : nm(v.assignedNode)],
        ...(m == null ? [] : [['Migration', `${m.phase} ${nm(m.source)} → ${nm(m.target)}${m.reason != null ? `: ${m.reason}` : ''}${m.figures?.downtimeMs != null ? ` (downtime ${m.figures.downtimeMs} ms)` : ''}`] as [string, string]]),
        ['vCPUs', v.spec.vcpus], ['Memory', mib(v.spec.memoryMiB)], ['Image', v.spec.image.kind === 'flake' ? v.spec.image.ref : v.spec.image.kind],
        ['Project', projectOf(v.spec)], ['Restart', v.spec.restartPolicy], ['Generation', v.generation], ['Constraints', v.spec.constraints.map((c) => JSON.stringify(c)).join(' ')]
      ]))
      return EXIT.ok
    })
  },
  'vm start': { summary: 'Start a stopped VM', usage: 'blixard vm start VM [--wait]', flags: { wait: { help: 'follow it until it runs' } }, run: async (p, out) => await desired(p, out, 'vm.start', 'running') },
  'vm stop': { summary: 'Stop a VM (ACPI power-down, then kill after a timeout)', usage: 'blixard vm stop VM [--wait]', flags: { wait: { help: 'follow it until it has stopped' } }, run: async (p, out) => await desired(p, out, 'vm.stop', 'stopped') },
  'vm restart': {
    summary: 'Stop then start a VM',
    usage: 'blixard vm restart VM',
    run: async (p, out) => {
      const code = await desired(p, { ...out, data: () => {}, progress: (l: string) => out.progress(l), json: out.json } as unknown as Output, 'vm.stop', 'stopped', true)
      if (code !== EXIT.ok) return code
      return await desired(p, out, 'vm.start', 'running', true)
    }
  },
  'vm update': {
    summary: "Change a VM's spec; its host restarts the guest with the new one",
    usage: 'blixard vm update VM [--memory 192M] [--vcpus N] [--restart always|on-failure|never] [--kernel-param P]... [--wait]',
    flags: {
      memory: { value: true, arg: 'SIZE', help: 'new guest memory (M, G or T)' },
      vcpus: { value: true, arg: 'N', help: 'new number of virtual CPUs' },
      restart: { value: true, arg: 'POLICY', help: 'always, on-failure or never' },
      'kernel-param': { value: true, repeat: true, arg: 'P', help: 'replace the extra kernel parameters' },
      wait: { help: 'follow the restart until the guest runs the new spec' }
    },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const ref = need(p, 1, 'VM')[0]
      const cur = await client.call('vm.show', { vm: ref })
      const spec: VmSpec = { ...cur.spec }
      spec.memoryMiB = sizeMiB(p, 'memory', spec.memoryMiB, VM_LIMITS.minMemoryMiB, VM_LIMITS.maxMemoryMiB)
      spec.vcpus = int(p, 'vcpus', spec.vcpus, VM_LIMITS.minVcpus, VM_LIMITS.maxVcpus)
      const restart = flag(p, 'restart')
      if (restart != null) {
        if (!['always', 'on-failure', 'never'].includes(restart)) throw new UsageError(`--restart must be always, on-failure or never, got "${restart}"`)
        spec.restartPolicy = restart as RestartPolicy
      }
      if (p.flags.get('kernel-param') != null) spec.kernelParams = p.flags.get('kernel-param')!
      if (JSON.stringify(spec) === JSON.stringify(cur.spec)) throw new UsageError('nothing to change: give --memory, --vcpus, --restart or --kernel-param')
      // what we read is what we change: a change made in between answers Conflict, not lost
      const vm = await mutate(client, invocationKey(p), 'vm.update', { vm: cur.id, spec, ifGeneration: cur.generation })
      if (!bool(p, 'wait') || vm.desired !== 'running') {
        out.data(vm, () => `VM ${vm.spec.name} updated (generation ${vm.generation})${vm.desired === 'running' ? '; its host restarts it with the new spec' : ''}`)
        return EXIT.ok
      }
      // the record still says running (the old guest) until its host reports the restart
      const final = await waitFor(client, vm, out, int(p, 'timeout', 120, 1, 3600) * 1000, 'running', true)
      out.data(final, () => `VM ${final.spec.name} is ${final.status.phase} with generation ${final.generation}`)
      return final.status.phase === 'running' ? EXIT.ok : EXIT.error
    })
  },
  'vm delete': {
    summary: 'Delete a VM and everything its host created for it (a running VM: asks first, or --force)',
    usage: 'blixard vm delete VM [--force|--yes]',
    flags: { force: { help: 'delete it even while it runs (stops the guest)' }, yes: { short: 'y', help: 'the same, for scripts: do not ask' } },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const ref = need(p, 1, 'VM')[0]
      if (!bool(p, 'force') && !bool(p, 'yes')) {
        // gone already (a retried delete): the delete itself answers, as its idempotency key says
        const vm = await client.call('vm.show', { vm: ref }).catch((e: unknown) => { if (e instanceof BlixardError && e.kind === 'NotFound') return null; throw e })
        if (vm != null && (vm.desired === 'running' || vm.status.phase === 'running' || vm.status.phase === 'starting')) {
          const what = `VM ${vm.spec.name} is ${vm.status.phase}${vm.assignedNode == null ? '' : ` on ${nodeNames(await client.call('node.list', { stale: true })).get(vm.assignedNode) ?? shortId(vm.assignedNode)}`}`
          if (process.stdin.isTTY !== true || out.json) {
            throw new CliError('InvalidCommand', `${what}: not deleting it without confirmation`, `Stop it first (blixard vm stop ${vm.spec.name}), or pass --force to delete it running.`)
          }
          const rl = createInterface({ input: process.stdin, output: process.stderr })
          const answer = await rl.question(`${what}. Delete it and its guest now? [y/N] `).finally(() => { rl.close() })
          if (!/^y(es)?$/i.test(answer.trim())) { out.progress('Not deleted.'); return EXIT.error }
        }
      }
      const r = await mutate(client, invocationKey(p), 'vm.delete', { vm: ref })
      out.data(r, () => `VM ${p.positionals[0]} deleted`)
      return EXIT.ok
    })
  },
  'vm explain': {
    summary: 'Explain where the scheduler would place a VM, node by node',
    usage: 'blixard vm explain VM',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const [e, nodes] = await Promise.all([client.call('vm.explain', { vm: need(p, 1, 'VM')[0], ...stale(p) }), client.call('node.list', { stale: true })])
      const names = nodeNames(nodes)
      out.data(e, () => {
        const d = e.decision
        const head = d.nodeId == null ? 'No node can run this VM now.' : `Best node: ${names.get(d.nodeId) ?? shortId(d.nodeId)} (score ${d.total?.toFixed(3)})`
        const rows = (d.nodes ?? []).map((n) => [names.get(n.nodeId) ?? shortId(n.nodeId), n.feasible ? 'yes' : 'no', n.feasible ? n.total?.toFixed(3) ?? '' : '', n.feasible ? Object.entries(n.scores ?? {}).map(([k, v]) => `${k}=${(v).toFixed(2)}`).join(' ') : filterReason(n.filter, n.reason)])
        const waiting = e.waiting != null ? `\nWaiting: ${named(e.waiting, names)}` : ''
        const pre = e.preemption == null ? '' : e.preemption.nodeId == null ? `\nPreemption: none possible: ${named(e.preemption.reason, names)}` : `\nPreemption: ${named(e.preemption.reason, names)}`
        return `${head}\nAssigned now: ${e.assignedNode == null ? '-' : names.get(e.assignedNode) ?? shortId(e.assignedNode)}${waiting}${pre}\n\n${table(['node', 'fits', 'score', 'why'], rows)}`
      })
      return EXIT.ok
    })
  },
  'vm watch': {
    summary: 'Stream changes to one VM or to all VMs',
    usage: 'blixard vm watch [VM]',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const sub = client.watch('vm.watch', p.positionals[0] != null ? { vm: p.positionals[0] } : {})
      const names = nodeNames(await client.call('node.list', { stale: true }))
      const vmNames = new Map<string, string>()
      for await (const ev of sub) {
        if (ev.type === 'put') vmNames.set(ev.vm.id, ev.vm.spec.name)
        const at = new Date().toISOString()
        out.item(ev, () => ev.type === 'delete'
          ? `${at}  ${vmNames.get(ev.id) ?? ev.id} deleted`
          : `${at}  ${ev.vm.spec.name} ${ev.vm.status.phase}${ev.vm.assignedNode == null ? '' : ' on ' + (names.get(ev.vm.assignedNode) ?? shortId(ev.vm.assignedNode))}${ev.vm.status.reason === '' ? '' : ': ' + named(ev.vm.status.reason, names)}`)
      }
      return EXIT.ok
    })
  },
  'vm logs': {
    summary: "Print a VM's serial console (-f to follow)",
    usage: 'blixard vm logs VM [-f] [--tail BYTES]',
    flags: { follow: { short: 'f', help: 'keep printing new output (Ctrl-C to stop)' }, tail: { value: true, arg: 'BYTES', help: 'start this many bytes before the end' } },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const vm = need(p, 1, 'VM')[0]
      const tail = flag(p, 'tail')
      const sub = client.watch('vm.logs', { vm, ...(bool(p, 'follow') ? { follow: true } : {}), ...(tail != null ? { tailBytes: int(p, 'tail', 0, 0, 64 << 20) } : {}) })
      const stop = (): void => { sub.cancel() }
      process.once('SIGINT', stop)
      try {
        for await (const chunk of sub) {
          if (out.json) process.stdout.write(JSON.stringify(chunk) + '\n')
          else process.stdout.write(chunk.text)
        }
      } finally { process.off('SIGINT', stop) }
      return EXIT.ok
    })
  },
  'vm console': {
    summary: "Attach to a VM's serial console (type into the guest, see its output); Ctrl-] detaches, the guest keeps running",
    usage: 'blixard vm console VM [--tail BYTES]',
    flags: { tail: { value: true, arg: 'BYTES', help: 'first show this much of what the console printed before', default: String(CONSOLE_TAIL_BYTES) } },
    run: async (p, out) => await attachConsole(p, out)
  },
  events: {
    summary: 'Show recent cluster events, then stream new ones (Ctrl-C to stop); the answering node keeps its last 100',
    usage: 'blixard events [--since DURATION] [--no-follow]',
    flags: { since: { value: true, arg: 'DURATION', help: 'only events newer than this (30s, 5m, 2h)' }, follow: { help: 'keep streaming new events (--no-follow: print and exit)', default: 'true' } },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const since = durationMs(p, 'since')
      const sub = client.watch('cluster.events', { ...(since !== undefined ? { since: Date.now() - since } : {}), ...(bool(p, 'follow', true) ? {} : { follow: false }) })
      process.once('SIGINT', () => { sub.cancel() })
      for await (const e of sub) out.item(e, () => `${new Date(e.at).toISOString()}  #${e.index}  ${e.text}`)
      return EXIT.ok
    })
  },
  'vm migrate': {
    summary: 'Move a VM to another node: live for a running VM (its memory moves, the guest keeps running), else cold',
    usage: 'blixard vm migrate VM [--to NODE] [--live|--cold] [--wait] [--cancel] [--json]',
    flags: {
      to: { value: true, arg: 'NODE', help: 'the node to move it to', default: 'the node placement picks' },
      live: { help: 'move it live, or refuse with the reason it cannot (not running, not a QEMU guest)', default: 'live when it runs, else cold' },
      cold: { help: 'stop it here and boot it there (a reboot; what a VM that cannot move live gets)' },
      wait: { help: 'follow the move, printing progress (transferred, remaining, dirty rate), until it ends' },
      cancel: { help: 'stop a move in progress (before switchover only); the VM keeps running where it was' }
    },
    run: async (p, out) => await migrate(p, out)
  },
  'admin add': {
    summary: 'Allow a CLI identity to change the cluster',
    usage: 'blixard admin add PEER_ID [--name NAME]',
    flags: { name: { value: true, arg: 'NAME', help: 'a name to recognise the admin by', default: 'admin' } },
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const a = await mutate(client, invocationKey(p), 'admin.add', { peerId: need(p, 1, 'PEER_ID')[0], name: flag(p, 'name') ?? 'admin' })
      out.data(a, () => `admin ${a.peerId} added`)
      return EXIT.ok
    })
  },
  'admin remove': {
    summary: 'Revoke an admin',
    usage: 'blixard admin remove PEER_ID',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const a = await mutate(client, invocationKey(p), 'admin.remove', { peerId: need(p, 1, 'PEER_ID')[0] })
      out.data(a, () => `admin ${a.peerId} removed`)
      return EXIT.ok
    })
  },
  'node approve': {
    summary: 'Let a host join when the join policy is "approve" (its peer id: blixard-node prints it at start)',
    usage: 'blixard node approve PEER_ID',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const a = await client.call('node.approve', { peerId: need(p, 1, 'PEER_ID')[0] })
      out.data(a, () => `node ${a.peerId} may join`)
      return EXIT.ok
    })
  },
  'cluster join-policy': {
    summary: 'Who may join: "open" (any holder of the cluster key) or "approve" (only ids approved with blixard node approve)',
    usage: 'blixard cluster join-policy open|approve',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const policy = need(p, 1, 'open|approve')[0]
      if (policy !== 'open' && policy !== 'approve') throw new CliError('InvalidCommand', `join policy "${policy}" is neither open nor approve`, 'Use: blixard cluster join-policy open|approve')
      const r = await client.call('cluster.joinPolicy', { policy })
      out.data(r, () => `join policy: ${r.policy}`)
      return EXIT.ok
    })
  },
  'admin list': {
    summary: 'List admins',
    usage: 'blixard admin list',
    run: async (p, out) => await withCluster(p, async ({ client }) => {
      const list = await client.call('admin.list', stale(p))
      out.data(list, () => table(['peer id', 'name'], list.map((a) => [a.peerId, a.name])))
      return EXIT.ok
    })
  },
  whoami: {
    summary: 'Print this CLI identity (the peer id an admin must add)',
    usage: 'blixard whoami',
    run: async (_p, out) => {
      const { whoami, configDir } = await import('./whoami.ts')
      const id = await whoami()
      out.data({ peerId: id, configDir: configDir() }, () => id)
      return EXIT.ok
    }
  },
  keygen: {
    summary: 'Write a new cluster key file',
    usage: 'blixard keygen PATH',
    run: async (p, out) => {
      const path = need(p, 1, 'PATH')[0]
      const { writeClusterKey, ClusterKeyError } = await import('../keygen.ts')
      try { await writeClusterKey(path) } catch (err) {
        if (err instanceof ClusterKeyError && err.message.includes('already exists')) throw new CliError('AlreadyExists', err.message, 'Pick another path, or keep using the key that is there: every node of a cluster needs the same key.')
        throw err
      }
      out.data({ path }, () => `wrote a new cluster key to ${path}; copy it to every node (mode 0600)`)
      return EXIT.ok
    }
  },
  completion: {
    summary: 'Print shell completion (bash, zsh or fish); VM, node, network and volume names complete from the cluster',
    usage: 'blixard completion bash|zsh|fish',
    run: async (p, out) => {
      const shell = need(p, 1, 'bash, zsh or fish')[0]
      if (!(COMPLETION_SHELLS as readonly string[]).includes(shell)) throw new UsageError(`completion for "${shell}" is not available: use bash, zsh or fish`)
      const cmds = Object.entries(COMMANDS).filter(([, c]) => c.hidden !== true)
        .map(([name, c]) => ({ name, usage: c.usage, flags: Object.keys(c.flags ?? {}).map((f) => `--${f}`) }))
      const script = completion(shell as CompletionShell, cmds, Object.keys(GLOBAL).map((f) => `--${f}`))
      if (out.json) out.data({ shell, script }, () => script)
      else process.stdout.write(script)
      return EXIT.ok
    }
  },
  __complete: {
    summary: 'Names for shell completion, one per line (stale read, short timeout)',
    usage: 'blixard __complete vms|nodes|networks|volumes',
    hidden: true,
    run: async (p, out) => {
      const kind = need(p, 1, 'a kind')[0]
      if (!(NAME_KINDS as readonly string[]).includes(kind)) throw new UsageError(`__complete takes ${NAME_KINDS.join(', ')}, not "${kind}"`)
      return await withCluster(p, async ({ client }) => {
        const o = { timeoutMs: COMPLETION_TIMEOUT_MS }
        const names = await ({
          vms: async () => (await client.call('vm.list', { stale: true }, o)).map((v) => v.spec.name),
          nodes: async () => (await client.call('node.list', { stale: true }, o)).map((n) => n.name),
          networks: async () => (await client.call('network.list', { stale: true }, o)).map((n) => n.name),
          volumes: async () => (await client.call('volume.list', { stale: true }, o)).map((v) => v.name)
        } satisfies Record<NameKind, () => Promise<string[]>>)[kind as NameKind]()
        out.data(names, () => names.join('\n'))
        return EXIT.ok
      })
    }
  },
  // VM memory snapshots: node/cli/snapshots.ts; after the other vm commands, so help lists them last
  ...snapshotCommands({ withCluster, need, stale }),
  // warm pools: node/cli/pools.ts
  ...poolCommands({ withCluster, need, stale })
}

/** `blixard vm console VM`: the console's output (vm.logs, following) on stdout, and what is typed
 * (raw, key by key on a terminal; or piped in) into the guest's serial port through
 * vm.consoleInput, in order, until Ctrl-] (or, piped, until the input ends and the output went
 * quiet). Any node relays the output from the VM's host; the input goes to the host itself, over
 * this CLI's own connection to it (only the host takes it, from an admin: no member relays it). */
async function attachConsole (p: Parsed, out: Output): Promise<number> {
  const ref = need(p, 1, 'VM')[0]
  const tail = int(p, 'tail', CONSOLE_TAIL_BYTES, 0, 64 << 20)
  return await withCluster(p, async ({ client, host: libp2p }) => {
    const vm = await client.call('vm.show', { vm: ref })
    if (vm.assignedNode == null) throw new CliError('NotFound', `VM ${vm.spec.name} is not placed on any node, so it has no console`, `See why with blixard vm explain ${vm.spec.name}`)
    const [{ RpcClient }, { multiaddr }, { connectFailure }] = await Promise.all([import('../net/rpc.ts'), import('@multiformats/multiaddr'), import('./connect.ts')])
    const timeoutMs = int(p, 'timeout', 15, 1, 3600) * 1000
    // input goes to the VM's host itself; after a live move that is another node, so a refusal
    // naming another host sends the input on to wherever the VM is now
    const dialHost = async (hostId: string): Promise<{ rpc: InstanceType<typeof RpcClient>, name: string }> => {
      const nodes = await client.call('node.list', { stale: true })
      const name = nodeNames(nodes).get(hostId) ?? shortId(hostId)
      const addrs = (nodes.find((n) => n.id === hostId)?.addrs ?? []).map((a) => a.includes('/p2p/') ? a : `${a}/p2p/${hostId}`)
      try {
        return { rpc: await RpcClient.connect(libp2p, addrs.map((a) => multiaddr(a)), { timeoutMs }), name }
      } catch (err) {
        throw connectFailure(`${name} (${addrs[0] ?? 'no address recorded'})`, (err as Error).message)
      }
    }
    let hostId = vm.assignedNode
    let { rpc: input, name: host } = await dialHost(hostId)
    const follow = async (): Promise<boolean> => {
      const now = await client.call('vm.show', { vm: vm.id })
      if (now.assignedNode == null || now.assignedNode === hostId) return false
      const next = await dialHost(now.assignedNode)
      await input.close().catch(() => {})
      hostId = now.assignedNode
      input = next.rpc
      host = next.name
      out.progress(`\r\n[VM ${vm.spec.name} moved to ${host}: input now goes there]\r\n`)
      return true
    }
    const tty = process.stdin.isTTY === true
    out.progress(`Connected to the serial console of VM ${vm.spec.name} on ${host}. Detach with ${DETACH_KEY} (the guest keeps running).`)
    const sub = client.watch('vm.logs', { vm: vm.id, follow: true, tailBytes: tail })
    let detached = false
    let failure: unknown = null
    let lastOutput = Date.now()
    const done = (async () => {
      for await (const chunk of sub) {
        lastOutput = Date.now()
        if (out.json) process.stdout.write(JSON.stringify(chunk) + '\n')
        else process.stdout.write(chunk.text)
      }
    })()
    // keystrokes go one call at a time, in order; a paste in MAX_CONSOLE_INPUT_BYTES pieces
    let sending: Promise<void> = Promise.resolve()
    const send = (bytes: Buffer): void => {
      for (let i = 0; i < bytes.length; i += MAX_CONSOLE_INPUT_BYTES) {
        const piece = bytes.subarray(i, i + MAX_CONSOLE_INPUT_BYTES)
        sending = sending.then(async () => {
          if (failure != null) return
          const data = piece.toString('base64')
          try {
            try {
              await input.call('vm.consoleInput', { vm: vm.id, data })
            } catch (err) {
              if (!(err instanceof BlixardError && err.kind === 'Conflict') || !await follow()) throw err
              await input.call('vm.consoleInput', { vm: vm.id, data })
            }
          } catch (err) { failure = err; sub.cancel() }
        })
      }
    }
    const stop = (): void => { detached = true; sub.cancel() }
    let inputEnded = false
    const onData = (d: Buffer): void => {
      const at = d.indexOf(DETACH_BYTE)
      if (at >= 0) { if (at > 0) send(d.subarray(0, at)); void sending.then(stop); return }
      send(d)
    }
    if (tty) process.stdin.setRawMode(true)
    process.stdin.on('data', onData)
    process.stdin.once('end', () => { inputEnded = true })
    process.once('SIGINT', stop)
    // piped input (a script, a test): once it ended and everything was sent, stay while the
    // guest still answers, then leave on our own
    const quiet = setInterval(() => {
      if (inputEnded && Date.now() - lastOutput > CONSOLE_PIPED_QUIET_MS) void sending.then(stop)
    }, 250)
    try { await done } finally {
      clearInterval(quiet)
      process.stdin.off('data', onData)
      process.off('SIGINT', stop)
      if (tty) process.stdin.setRawMode(false)
      process.stdin.pause()
    }
    await sending
    await input.close().catch(() => {})
    if (failure != null) throw failure
    out.progress(`\r\n${detached ? 'Detached from' : 'The console closed:'} VM ${vm.spec.name}${detached ? ' (it keeps running)' : ' (the guest stopped?)'}.`)
    return EXIT.ok
  })
}

/** With piped input, how long the output must stay quiet after the input ended before `vm console` leaves. */
const CONSOLE_PIPED_QUIET_MS = 3_000

/** A completion lookup must not hang the shell: a node that does not answer in this long gives none. */
const COMPLETION_TIMEOUT_MS = 2_000

async function desired (p: Parsed, out: Output, method: 'vm.start' | 'vm.stop', goal: 'running' | 'stopped', forceWait = false): Promise<number> {
  return await withCluster(p, async ({ client }) => {
    const vm = await mutate(client, invocationKey(p), method, { vm: need(p, 1, 'VM')[0] })
    if (!forceWait && !bool(p, 'wait')) { out.data(vm, () => `VM ${vm.spec.name}: desired ${vm.desired}`); return EXIT.ok }
    const final = await waitFor(client, vm, out, int(p, 'timeout', 120, 1, 3600) * 1000, goal)
    out.data(final, () => `VM ${final.spec.name} is ${final.status.phase}`)
    return final.status.phase === goal ? EXIT.ok : EXIT.error
  })
}

/** One line of `vm migrate --wait`: the phase, and QEMU's figures while memory moves. */
const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`

function migrationLine (m: MigrationRecord, nm: (id: string) => string, t0: number): string {
  const f = m.figures
  const at = `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`
  const route = `${nm(m.source)} → ${nm(m.target)}`
  if (m.phase === 'transferring' && f != null) {
    return `  ${at}  ${m.phase} ${route}: ${mb(f.transferredBytes)} sent, ${mb(f.remainingBytes)} remaining, ${f.dirtyPagesRate} dirty pages/s, expected downtime ${f.expectedDowntimeMs ?? '-'} ms`
  }
  if ((m.phase === 'switched' || m.phase === 'done') && f?.downtimeMs != null) return `  ${at}  ${m.phase} ${route}: downtime ${f.downtimeMs} ms, total ${f.totalTimeMs ?? '-'} ms, ${mb(f.transferredBytes)} moved`
  return `  ${at}  ${m.phase} ${route}${m.reason != null ? `: ${m.reason}` : ''}`
}

/** `blixard node drain`: set the node draining (the leader's scheduler then moves its running VMs
 * live, the others cold); with --wait, one line per VM as it moves, until the node is empty. */
async function drain (p: Parsed, out: Output): Promise<number> {
  return await withCluster(p, async ({ client }) => {
    const ref = need(p, 1, 'NODE')[0]
    const node = await client.call('node.show', { node: ref })
    const held = await client.call('vm.list', { node: node.id })
    // whether a VM would be stranded is decided by the cluster (the node that prepares the drain
    // answers Conflict with the VMs and why; apply refuses a drain whose targets changed since)
    const n = await mutate(client, invocationKey(p), 'node.drain', { node: node.id, ...(bool(p, 'force') ? { force: true } : {}) }).catch((e: unknown) => {
      // the next step is room or --force, not a retry (the generic Conflict hint)
      if (e instanceof BlixardError && e.kind === 'Conflict' && / would strand /.test(e.message)) {
        throw new CliError('Conflict', e.message, `Free capacity or relax their constraints (blixard vm explain VM), or drain anyway with --force: they stop and stay pending until a node fits.`)
      }
      throw e
    })
    if (held.length === 0 && !bool(p, 'wait')) {
      // nothing to move: drained as soon as it is marked
      out.progress(`Node ${n.name} is drained: it holds no VMs, and takes no new ones until blixard node undrain ${n.name}.`)
      out.data(n, () => `node ${n.name}: ${n.state}`)
      return EXIT.ok
    }
    if (!bool(p, 'wait')) {
      out.progress(`Node ${n.name} is draining: its ${held.length} VM(s) move, running ones live, the others cold. Follow with: blixard node drain ${n.name} --wait`)
      out.data(n, () => `node ${n.name}: ${n.state}`)
      return EXIT.ok
    }
    const names = nodeNames(await client.call('node.list', { stale: true }))
    const nm = (id: string | null): string => id == null ? 'nowhere (pending)' : names.get(id) ?? shortId(id)
    const timeoutMs = int(p, 'timeout', 300, 1, 3600) * 1000
    const t0 = Date.now()
    const leaving = new Map((await client.call('vm.list', { node: n.id })).map((v) => [v.id, v]))
    // the migrations of this drain: those started since (an older one of the same VM is history)
    const before = new Map([...leaving.values()].map((v) => [v.id, v.migration != null && v.migration.phase !== 'done' && v.migration.phase !== 'aborted' ? null : v.migration?.started ?? null]))
    const last = new Map<string, string>()
    const moved = { live: 0, cold: 0 }
    const onNode = (v: VmRecord): boolean => v.assignedNode === n.id || (v.migration != null && v.migration.source === n.id && v.migration.phase !== 'done' && v.migration.phase !== 'aborted')
    const report = (v: VmRecord): void => {
      const m = v.migration != null && v.migration.source === n.id && v.migration.started !== before.get(v.id) ? v.migration : null
      const elapsedMs = Date.now() - t0
      let item: Record<string, unknown>
      let line: string
      if (m != null && m.phase !== 'aborted' && (onNode(v) || m.phase === 'done')) {
        const f = m.figures
        const fig = m.phase === 'transferring' && f != null ? `: ${mb(f.transferredBytes)} sent, ${mb(f.remainingBytes)} remaining` : m.phase === 'done' && f?.downtimeMs != null ? `: downtime ${f.downtimeMs} ms` : ''
        item = { vm: v.spec.name, how: 'live', phase: m.phase, from: n.name, to: nm(m.target), figures: f ?? null, elapsedMs }
        line = m.phase === 'done' ? `  VM ${v.spec.name}: moved live to ${nm(m.target)}${fig}` : `  VM ${v.spec.name}: migrating live to ${nm(m.target)} (${m.phase})${fig}`
      } else if (!onNode(v)) {
        item = { vm: v.spec.name, how: 'cold', phase: v.status.phase, from: n.name, to: nm(v.assignedNode), reason: v.status.reason, elapsedMs }
        line = `  VM ${v.spec.name}: moved cold to ${nm(v.assignedNode)} (${v.status.reason})`
      } else {
        item = { vm: v.spec.name, how: 'waiting', phase: v.status.phase, from: n.name, reason: m?.reason ?? v.status.reason, elapsedMs }
        line = `  VM ${v.spec.name}: waiting on ${n.name}${m?.phase === 'aborted' ? ` (live migration aborted: ${m.reason ?? 'no reason'}; it moves cold next)` : ''}`
      }
      const key = JSON.stringify([item.how, item.phase, item.to ?? null, m?.figures ?? null])
      if (last.get(v.id) === key) return
      last.set(v.id, key)
      out.item(item, () => line)
    }
    if (leaving.size > 0) {
      const sub = client.watch('vm.watch', {})
      const timer = setTimeout(() => { sub.cancel() }, timeoutMs)
      try {
        for await (const ev of sub as AsyncIterable<VmWatchEvent>) {
          if (ev.type === 'delete') { leaving.delete(ev.id); continue }
          if (!leaving.has(ev.vm.id)) continue
          leaving.set(ev.vm.id, ev.vm)
          report(ev.vm)
          if ([...leaving.values()].every((v) => !onNode(v))) break
        }
      } finally { clearTimeout(timer); sub.cancel() }
    }
    const left = [...leaving.values()].filter(onNode)
    if (left.length > 0) {
      throw new CliError('Timeout', `node ${n.name} still has ${left.length} VM(s) after ${timeoutMs / 1000}s: ${left.map((v) => v.spec.name).join(', ')}`,
        `It goes on draining: follow it with blixard node drain ${n.name} --wait, and see why with blixard vm explain VM`)
    }
    for (const v of leaving.values()) {
      const m = v.migration
      if (m != null && m.source === n.id && m.phase === 'done' && v.assignedNode === m.target) moved.live++
      else moved.cold++
    }
    out.item({ node: n.name, drained: true, live: moved.live, cold: moved.cold }, () => `node ${n.name} drained: ${moved.live} VM(s) moved live, ${moved.cold} cold`)
    return EXIT.ok
  })
}

/** `vm migrate --cold` (or a VM that cannot move live): reassigned; with --wait, followed until it
 * runs (or, meant to be stopped, sits) on its new node. */
async function coldMoved (client: Connection['client'], p: Parsed, out: Output, vm: VmRecord, nm: (id: string) => string): Promise<number> {
  const name = vm.spec.name
  const on = vm.assignedNode == null ? 'nowhere' : nm(vm.assignedNode)
  if (!bool(p, 'wait')) {
    out.data(vm, () => `VM ${name} is moving cold to ${on}: it stops where it ran and ${vm.desired === 'running' ? 'boots' : 'stays stopped'} there; follow it with: blixard vm show ${name}`)
    return EXIT.ok
  }
  const goal = vm.desired === 'running' ? 'running' : 'stopped'
  const final = await waitFor(client, vm, out, int(p, 'timeout', 120, 1, 3600) * 1000, goal)
  out.item({ vm: name, how: 'cold', phase: final.status.phase, node: final.assignedNode == null ? null : nm(final.assignedNode), nodeId: final.assignedNode, reason: final.status.reason }, () => `VM ${name} moved cold to ${on}: ${final.status.phase}`)
  return final.status.phase === goal ? EXIT.ok : EXIT.error
}

/** `blixard vm migrate`: start (or cancel) a live migration; with --wait, follow it to its end. */
async function migrate (p: Parsed, out: Output): Promise<number> {
  const ref = need(p, 1, 'VM')[0]
  const to = flag(p, 'to')
  const cancel = bool(p, 'cancel')
  const live = bool(p, 'live')
  const cold = bool(p, 'cold')
  if (cancel && to != null) throw new UsageError('--cancel cancels the migration in flight: give it no --to')
  if (live && cold) throw new UsageError('--live and --cold exclude each other: give one (or neither: live when the VM runs, else cold)')
  if (cancel && (live || cold)) throw new UsageError('--cancel stops the live migration in flight: give it no --live or --cold')
  return await withCluster(p, async ({ client }) => {
    const nodes = await client.call('node.list', { stale: true })
    const names = nodeNames(nodes)
    const nm = (id: string): string => names.get(id) ?? shortId(id)
    let mode: 'live' | 'cold' | undefined = live ? 'live' : cold ? 'cold' : undefined
    if (!cancel && mode === undefined) {
      // neither flag: live when it can, else cold, saying why
      const cur = await client.call('vm.show', { vm: ref })
      const why = cannotMigrateLive(cur, (id) => nodes.find((n) => n.id === id))
      mode = why === null ? 'live' : 'cold'
      if (why !== null) out.progress(`${why.message.replace(/; .*$/, '')}: moving it cold (it stops and boots on the new node)`)
    }
    const vm = await mutate(client, invocationKey(p), 'vm.migrate', { vm: ref, ...(to != null ? { to } : {}), ...(cancel ? { cancel } : {}), ...(mode !== undefined ? { mode } : {}) })
    if (mode === 'cold') return await coldMoved(client, p, out, vm, nm)
    const m = vm.migration
    if (m == null) throw new CliError('Internal', `VM ${vm.spec.name} has no migration record after the request`, 'Run blixard vm show ' + vm.spec.name)
    const name = vm.spec.name
    if (cancel) {
      out.data(vm, () => m.phase === 'aborted'
        ? `migration of VM ${name} to ${nm(m.target)} cancelled: it keeps running on ${nm(m.source)}`
        : `cancel of the migration of VM ${name} to ${nm(m.target)} requested: ${nm(m.source)} stops sending, unless QEMU completed first (then the move stands); follow it with: blixard vm show ${name}`)
      return EXIT.ok
    }
    if (!bool(p, 'wait')) {
      out.data(vm, () => `VM ${name} is migrating live from ${nm(m.source)} to ${nm(m.target)}; follow it with: blixard vm show ${name} (or cancel: blixard vm migrate ${name} --cancel)`)
      return EXIT.ok
    }
    const timeoutMs = int(p, 'timeout', 120, 1, 3600) * 1000
    const t0 = Date.now()
    const sub = client.watch('vm.watch', { vm: vm.id })
    const timer = setTimeout(() => { sub.cancel() }, timeoutMs)
    let cur: MigrationRecord = m
    let current: VmRecord = vm
    let last = ''
    try {
      for await (const ev of sub as AsyncIterable<VmWatchEvent>) {
        if (ev.type === 'delete') throw new CliError('NotFound', `VM ${name} was deleted while it migrated`, 'Nothing to do: it is gone.')
        const mm = ev.vm.migration
        if (mm == null || mm.started !== m.started) continue
        cur = mm
        current = ev.vm
        const line = migrationLine(mm, nm, t0)
        const key = JSON.stringify([mm.phase, mm.figures ?? null, mm.reason ?? null])
        if (key !== last) {
          last = key
          out.item({ vm: name, phase: mm.phase, source: nm(mm.source), target: nm(mm.target), owner: nm(mm.owner), figures: mm.figures ?? null, reason: mm.reason ?? null, elapsedMs: Date.now() - t0 }, () => line)
        }
        if (mm.phase === 'done' || mm.phase === 'aborted') break
      }
    } finally { clearTimeout(timer); sub.cancel() }
    if (cur.phase !== 'done' && cur.phase !== 'aborted') {
      throw new CliError('Timeout', `the migration of VM ${name} did not end within ${timeoutMs / 1000}s (now ${cur.phase}, ${nm(cur.source)} → ${nm(cur.target)})`,
        `It goes on: follow it with blixard vm show ${name}, or give it longer with --timeout SECONDS${cur.phase !== 'switched' ? `; or cancel it: blixard vm migrate ${name} --cancel` : ''}`)
    }
    if (cur.phase === 'aborted') {
      throw new CliError('Conflict', `the migration of VM ${name} to ${nm(cur.target)} was aborted: ${cur.reason ?? 'no reason given'}; the VM keeps running on ${nm(cur.source)}`,
        `Look at the reason above, then try again (blixard vm migrate ${name} --to NODE), or pick another node.`)
    }
    out.item({ vm: name, phase: 'done', node: nm(cur.target), nodeId: cur.target, figures: cur.figures ?? null, reason: cur.reason ?? null, status: current.status.phase }, () => `VM ${name} now runs on ${nm(cur.target)}${cur.reason != null ? ` (${cur.reason})` : ''}${cur.figures?.downtimeMs != null ? `, downtime ${cur.figures.downtimeMs} ms` : ''}`)
    return EXIT.ok
  })
}

/** `--wait` of a VM create: follows it to running (or its end) and says where it runs, by name. */
async function waitRunning (client: Connection['client'], vm: VmRecord, p: Parsed, out: Output): Promise<number> {
  const final = await waitFor(client, vm, out, int(p, 'timeout', 120, 1, 3600) * 1000)
  const names = nodeNames(await client.call('node.list', { stale: true }))
  const on = final.assignedNode == null ? '' : ` on ${names.get(final.assignedNode) ?? shortId(final.assignedNode)}`
  out.data(final, () => `VM ${final.spec.name} is ${final.status.phase}${on}${final.status.reason !== '' ? ` (${named(final.status.reason, names)})` : ''}`)
  return final.status.phase === 'running' ? EXIT.ok : EXIT.error
}

/** Follows a VM through its phases (pending → scheduled → starting → running), printing each. */
async function waitFor (client: Connection['client'], vm: VmRecord, out: Output, timeoutMs: number, goal: 'running' | 'stopped' = 'running', restart = false): Promise<VmRecord> {
  const sub = client.watch('vm.watch', { vm: vm.id })
  const t0 = Date.now()
  let last = ''
  let current = vm
  let left = false
  const timer = setTimeout(() => sub.cancel(), timeoutMs)
  try {
    for await (const ev of sub as AsyncIterable<VmWatchEvent>) {
      if (ev.type === 'delete') throw new BlixardError('NotFound', `VM ${vm.spec.name} was deleted while waiting`)
      current = ev.vm
      const line = `${current.status.phase}${current.status.reason !== '' ? ` (${current.status.reason})` : ''}`
      if (line !== last) { out.progress(`  ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s  ${line}`); last = line }
      // a restart (vm update) counts only after the host left the old running phase
      if (restart && current.status.phase === goal && !left) continue
      if (current.status.phase !== goal) left = true
      if (current.status.phase === goal || current.status.phase === 'failed') break
    }
  } finally { clearTimeout(timer); sub.cancel() }
  if (current.status.phase !== goal && current.status.phase !== 'failed') {
    throw new BlixardError('Timeout', `VM ${vm.spec.name} did not reach ${goal} within ${timeoutMs / 1000}s (now ${current.status.phase}); see blixard vm show ${vm.spec.name} and blixard vm explain ${vm.spec.name}`)
  }
  return current
}

function help (): string {
  const shown = Object.entries(COMMANDS).filter(([, c]) => c.hidden !== true)
  const w = Math.max(...shown.map(([k]) => k.length))
  return `blixard: manage a Blixard cluster of microVM hosts

Usage: blixard COMMAND [args] [--peer MULTIADDR] [--cluster-key FILE] [--json]

Commands:
${shown.map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`).join('\n')}

Global flags:
  --peer MULTIADDR      a node to talk to (any node answers everything); default: $BLIXARD_PEER, then mDNS
  --peer-id PEER_ID     talk to this node instead, found through the node --peer (or mDNS) reached
  --cluster-key FILE    the cluster key; default: $BLIXARD_CLUSTER_KEY_FILE, ~/.config/blixard/cluster.key, /etc/blixard/cluster.key
  --json                machine-readable output
  -o wide|json          wide: ids next to names (tables and show); json: the same as --json
  --stale               read from the answering node's replica without a linearizable barrier
  --timeout SECONDS     per-request timeout (and --wait limit)
  --idempotency-key KEY a write's key (default: a fresh one per invocation, reused on the CLI's
                        own retries); pass the key an Indeterminate answer named to apply it once

Run 'blixard COMMAND --help' for a command's flags, 'blixard help exit-codes' for exit codes.
`
}

const EXIT_HELP = `Exit codes:
  0  success
  1  error not listed below (or a VM ended in 'failed' while waiting)
  2  usage error: bad flag, argument or spec value
  3  not found
  4  conflict: already exists, in use, no capacity, operation in progress, generation
     mismatch (definite: nothing was changed; read again and retry)
  5  cluster unavailable: no node reachable, no leader, timeout
  6  unauthorized: this CLI identity is not an admin (see blixard whoami)
  7  indeterminate: the change may or may not have been made (or the same request is still
     in flight); run the command again with --idempotency-key KEY from the message: at most once
`

// a line without a leading code continues the meaning above it
const EXIT_CODES: Array<{ code: number, meaning: string }> = EXIT_HELP.split('\n').slice(1).filter((l) => l.trim() !== '')
  .reduce<Array<{ code: number, meaning: string }>>((acc, l) => {
    const m = /^\s*(\d+)\s+(.*)$/.exec(l)
    if (m != null) acc.push({ code: Number(m[1]), meaning: m[2] })
    else if (acc.length > 0) acc[acc.length - 1].meaning += ' ' + l.trim()
    return acc
  }, [])

/** Positions of the words that are not flags nor values of global flags (`--peer X status` names `status`). */
function wordPositions (argv: string[]): number[] {
  const out: number[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') break
    if (a.startsWith('-')) {
      const spec = a.startsWith('--') && !a.includes('=') ? GLOBAL[a.slice(2)] : a.length === 2 ? Object.values(GLOBAL).find((g) => g.short === a.slice(1)) : undefined
      if (spec?.value === true) i++
      continue
    }
    out.push(i)
  }
  return out
}

/** One flag as help shows it: `--memory SIZE`, `--follow, -f`, `--constraint EXPR ...`. */
function flagLabel (name: string, f: FlagSpec): string {
  return `--${name}${f.value === true ? ` ${f.arg ?? 'VALUE'}` : ''}${f.repeat === true ? ' ...' : ''}${f.short != null ? `, -${f.short}` : ''}`
}

/** A command's flags for --json help: what a script or a completion generator needs. */
function flagDetails (cmd: Command): Array<{ flag: string, arg?: string, short?: string, repeatable: boolean, help: string, default?: string }> {
  return Object.entries(cmd.flags ?? {}).map(([k, f]) => ({ flag: `--${k}`, ...(f.value === true ? { arg: f.arg ?? 'VALUE' } : {}), ...(f.short != null ? { short: `-${f.short}` } : {}), repeatable: f.repeat === true, help: f.help ?? '', ...(f.default != null ? { default: f.default } : {}) }))
}

function commandHelp (name: string, cmd: Command, out: Output): number {
  const entries = Object.entries(cmd.flags ?? {})
  const w = Math.max(0, ...entries.map(([k, f]) => flagLabel(k, f).length))
  const lines = entries.map(([k, f]) => {
    const what = [f.help ?? '', f.default != null ? `(default ${f.default})` : '', f.repeat === true && f.help != null ? '(repeatable)' : ''].filter((x) => x !== '').join(' ')
    return `  ${flagLabel(k, f).padEnd(w)}  ${what}`.trimEnd()
  })
  out.data({ command: name, summary: cmd.summary, usage: cmd.usage, flags: Object.keys(cmd.flags ?? {}), flagDetails: flagDetails(cmd) }, () =>
    `${cmd.summary}\n\nUsage: ${cmd.usage}\n${lines.length > 0 ? `\nFlags:\n${lines.join('\n')}\n` : ''}\nGlobal flags: --peer MULTIADDR, --cluster-key FILE, --json, -o wide, --stale, --timeout SECONDS (see blixard help)`)
  return EXIT.ok
}

/** The -o/--output value wherever it stands (before or after the command), or null. */
function outputFormat (argv: string[]): string | null {
  let v: string | null = null
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') break
    if (a === '-o' || a === '--output') v = argv[i + 1] ?? null
    else if (a.startsWith('--output=')) v = a.slice('--output='.length)
  }
  return v
}

export async function main (argv: string[]): Promise<number> {
  const format = outputFormat(argv)
  const json = argv.includes('--json') || format === 'json'
  const out = new Output(json, format === 'wide')
  if (format != null && format !== 'wide' && format !== 'json') return usageFailure(`-o ${format}: the output formats are wide (ids too) and json`, "Run 'blixard help' for the global flags.", out)
  const at = wordPositions(argv)
  const words = at.map((i) => argv[i])
  if (argv.length === 0 || words[0] === 'help' || (words.length === 0 && (argv.includes('--help') || argv.includes('-h')))) {
    const topic = words.slice(1).join(' ')
    if (topic === 'exit-codes') { out.data({ exitCodes: EXIT_CODES }, () => EXIT_HELP.trimEnd()); return EXIT.ok }
    if (topic !== '' && COMMANDS[topic] != null) return commandHelp(topic, COMMANDS[topic], out)
    if (topic !== '') return usageFailure(`no help on '${topic}'`, "Run 'blixard help' for the list of commands.", out)
    out.data({ commands: Object.entries(COMMANDS).filter(([, c]) => c.hidden !== true).map(([command, c]) => ({ command, summary: c.summary, usage: c.usage, flags: flagDetails(c) })), exitCodes: EXIT_CODES }, () => help().trimEnd())
    return EXIT.ok
  }
  if (words.length === 0) return usageFailure('no command given', "Run 'blixard help' for the list of commands.", out)
  const two = `${words[0]} ${words[1] ?? ''}`
  const name = COMMANDS[two] != null ? two : COMMANDS[words[0]] != null ? words[0] : null
  if (name == null) {
    const groups = Object.keys(COMMANDS).filter((k) => k.startsWith(words[0] + ' '))
    if (groups.length > 0) {
      const subs = groups.map((g) => g.split(' ')[1])
      const given = words[1] == null ? `'${words[0]}' needs a subcommand` : `unknown command '${words[0]} ${words[1]}'`
      return usageFailure(`${given}: ${subs.join(', ')}`, `Run 'blixard ${words[0]} ${subs[0]} --help' for a subcommand's usage.`, out)
    }
    const close = Object.keys(COMMANDS).filter((k) => k.split(' ')[0].startsWith(words[0].slice(0, 2)))
    return usageFailure(`unknown command '${words[0]}'`, `${close.length > 0 ? `Did you mean: ${[...new Set(close)].join(', ')}? ` : ''}Run 'blixard help' for the list of commands.`, out)
  }
  const cmd = COMMANDS[name]
  const drop = new Set(at.slice(0, name.split(' ').length))
  const rest = argv.filter((_a, i) => !drop.has(i))
  try {
    const p = parseArgs(rest, { ...GLOBAL, ...(cmd.flags ?? {}) })
    if (bool(p, 'help')) return commandHelp(name, cmd, out)
    return await cmd.run(p, out)
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err.message, `Usage: ${cmd.usage}\nRun 'blixard ${name} --help' for its flags.`, out)
    return report(err, out)
  }
}

function usageFailure (message: string, next: string, out: Output): number {
  if (out.json) process.stdout.write(JSON.stringify({ error: { kind: 'Usage', message, next, exitCode: EXIT.usage } } satisfies JsonError) + '\n')
  process.stderr.write(`Error: ${message}\n${next}\n`)
  return EXIT.usage
}

function report (err: unknown, out: Output): number {
  let e: BlixError
  let next: string | undefined
  let key: string | undefined
  if (err instanceof CliError) {
    e = { kind: err.kind, message: err.message }
    next = err.next
  } else if (err instanceof BlixardError) {
    const kind = err.kind === 'UnknownMethod' ? 'BadMessage' : err.kind === 'InvalidParams' ? 'InvalidCommand' : err.kind
    e = { kind, message: err.message }
    key = err.key
  } else {
    e = { kind: 'Internal', message: err instanceof Error ? err.message : String(err) }
  }
  next ??= nextStep(e)
  const code = exitCodeFor(e.kind)
  if (out.json) process.stdout.write(JSON.stringify({ error: { kind: e.kind, message: e.message, next, exitCode: code, ...(key != null ? { key } : {}) } } satisfies JsonError) + '\n')
  process.stderr.write(describe(e, next) + '\n')
  return code
}

// a reader that went away (`blixard events | head`): stop quietly, as other Unix tools do
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(EXIT.ok); throw err })

main(process.argv.slice(2)).then((code) => { process.exit(code) }, (err: unknown) => {
  process.stderr.write(`blixard: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
