// CLI commands for networks and volumes: `blixard network ...`, `blixard volume ...`.
import { BlixardError } from '../../protocols/errors.ts'
import type { NetworkKind, NetworkRecord, VolumeRecord } from '../../protocols/model.ts'
import { bool, flag, int, UsageError } from './args.ts'
import type { FlagSpec, Parsed } from './args.ts'
import type { Connection } from './connect.ts'
import { CliError, EXIT } from './errors.ts'
import { phaseOf } from '../../protocols/volume-phases.ts'
import { invocationKey, mutate } from './idempotent.ts'
import { keyValues, shortId, table } from './format.ts'
import { VM_LIMITS } from '../../protocols/vm-limits.ts'

interface Out { json: boolean, data: (value: unknown, human: () => string) => void, progress: (line: string) => void }

export interface ResourceCommand {
  summary: string
  usage: string
  flags?: Record<string, FlagSpec>
  run: (p: Parsed, out: Out) => Promise<number>
}

export interface CliHelpers {
  withCluster: <T>(p: Parsed, fn: (c: Connection) => Promise<T>) => Promise<T>
  need: (p: Parsed, n: number, what: string) => string[]
  stale: (p: Parsed) => { stale?: boolean }
}

function kindText (k: NetworkKind): string {
  return k.type === 'vlan' ? `vlan ${k.vlan}` : k.type === 'vxlan' ? `vxlan ${k.vni}` : 'bridge'
}

function netRow (n: NetworkRecord): Array<string | number> {
  return [n.name, kindText(n.kind), n.subnet, n.gateway ?? '-', Object.keys(n.allocations).length]
}

/** `ready`, `pending`, `failed: why`, `deleting` */
function volPhase (v: VolumeRecord): string {
  const p = phaseOf(v)
  return v.reason != null && v.reason !== '' ? `${p}: ${v.reason}` : p
}

/** VM names by id (a stale read: names for people, the ids stay in --json). */
async function vmNames (c: Connection['client']): Promise<(id: string) => string> {
  const names = new Map((await c.call('vm.list', { stale: true })).map((v) => [v.id, v.spec.name]))
  return (id) => names.get(id) ?? shortId(id, 8)
}

function volRow (v: VolumeRecord, vm: (id: string) => string): Array<string | number> {
  return [v.name, volPhase(v), v.pool, `${v.sizeGiB} GiB`, v.snapshots.join(',') || '-', v.parent == null ? '-' : `${v.parent.volume}@${v.parent.snapshot}`, v.attachedTo == null ? '-' : `VM ${vm(v.attachedTo)}`]
}

function volShow (v: VolumeRecord, vm: (id: string) => string): string {
  return keyValues([['Name', v.name], ['Phase', volPhase(v)], ['Pool', v.pool], ['Size', `${v.sizeGiB} GiB`], ['Snapshots', v.snapshots.join(', ') || '-'],
    ['Parent', v.parent == null ? '-' : `${v.parent.volume}@${v.parent.snapshot}`], ['Attached to', v.attachedTo == null ? '-' : `VM ${vm(v.attachedTo)}`]])
}

/** How often `--wait` reads a volume's phase. */
const VOLUME_POLL_MS = 300
/** `--wait` gives up after this long unless --timeout says otherwise (seconds). */
const VOLUME_WAIT_DEFAULT_S = 120

const WAIT_FLAGS: Record<string, FlagSpec> = {
  wait: { help: 'wait until the RBD image is made (ready) or the change failed, and show why' },
  timeout: { value: true, arg: 'SECONDS', help: 'with --wait: how long to wait', default: String(VOLUME_WAIT_DEFAULT_S) }
}

type Client = Connection['client']

/** Follows a volume's phase (linearizable reads) until the reconciler reported on this change:
 * ready (exit 0), failed (exit 1, with the reason and what to do), or, for a delete, gone. */
async function waitVolume (client: Client, name: string, goal: 'ready' | 'gone', p: Parsed, out: Out): Promise<number> {
  const deadline = Date.now() + int(p, 'timeout', VOLUME_WAIT_DEFAULT_S, 1, 3600) * 1000
  let last = ''
  for (;;) {
    let v: VolumeRecord | null
    try { v = await client.call('volume.show', { volume: name }) } catch (e) {
      if (goal === 'gone' && e instanceof BlixardError && e.kind === 'NotFound') v = null
      else throw e
    }
    if (v == null) { out.data({ name, phase: 'gone' }, () => `volume ${name} deleted (its RBD image removed)`); return EXIT.ok }
    const phase = phaseOf(v)
    if (phase !== last) { out.progress(`volume ${name}: ${volPhase(v)}`); last = phase }
    if (phase === 'ready' && goal === 'ready') { out.data(v, () => `volume ${v.name} ready (${v.sizeGiB} GiB in pool ${v.pool})`); return EXIT.ok }
    if (phase === 'failed') {
      out.data(v, () => `volume ${v.name} failed: ${v.reason ?? 'no reason given'}\n` +
        `It stays recorded as failed (no VM can start on it until its image is made); blixard volume delete ${v.name} removes the record and any image it made.`)
      return EXIT.error
    }
    if (Date.now() > deadline) {
      throw new CliError('Timeout', `volume ${name} is still ${volPhase(v)} after ${int(p, 'timeout', VOLUME_WAIT_DEFAULT_S, 1, 3600)} s`,
        'The node that makes RBD images (the lowest-id node with Ceph that is up) may be busy or down: check `blixard nodes` and its log, and follow with `blixard volume show NAME`.')
    }
    await new Promise((resolve) => setTimeout(resolve, VOLUME_POLL_MS))
  }
}

/** Without --wait: the change is recorded, the image follows. */
function recorded (v: VolumeRecord, what: string): string {
  return `volume ${v.name} ${what}: recorded, ${volPhase(v)} until its RBD image is made (follow with blixard volume show ${v.name}, or use --wait)`
}

export function resourceCommands ({ withCluster, need, stale }: CliHelpers): Record<string, ResourceCommand> {
  return {
    'network create': {
      summary: 'Create a network: a plain bridge, a VLAN on the hosts\' uplink, or a VXLAN overlay across hosts',
      usage: 'blixard network create NAME --subnet CIDR [--vlan ID | --vxlan VNI] [--gateway IP]',
      flags: { subnet: { value: true, arg: 'CIDR', help: 'the network\'s addresses, e.g. 10.10.0.0/24 (must not overlap another network)' }, vlan: { value: true, arg: 'ID', help: 'a VLAN on the hosts\' uplink (1-4094)' }, vxlan: { value: true, arg: 'VNI', help: 'a VXLAN overlay across hosts' }, gateway: { value: true, arg: 'IP', help: 'the gateway guests are told to use (none unless given)' } },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const name = need(p, 1, 'NAME')[0]
        const subnet = flag(p, 'subnet')
        if (subnet == null) throw new UsageError('--subnet is required (e.g. --subnet 10.60.0.0/24)')
        if (flag(p, 'vlan') != null && flag(p, 'vxlan') != null) throw new UsageError('give --vlan or --vxlan, not both')
        const kind: NetworkKind = flag(p, 'vlan') != null ? { type: 'vlan', vlan: int(p, 'vlan', 0, 1, 4094) }
          : flag(p, 'vxlan') != null ? { type: 'vxlan', vni: int(p, 'vxlan', 0, 1, 16_777_215) } : { type: 'bridge' }
        const gateway = flag(p, 'gateway')
        const n = await mutate(client, invocationKey(p), 'network.create', { name, kind, subnet, ...(gateway != null ? { gateway } : {}) }).catch((e: unknown) => {
          // the state machine refuses an overlapping subnet (Conflict): the next step is another subnet, not a retry
          if (e instanceof BlixardError && e.kind === 'Conflict' && / overlaps network /.test(e.message)) {
            throw new CliError('Conflict', e.message, 'Pick a subnet outside every other network (blixard network list shows their subnets).')
          }
          throw e
        })
        out.data(n, () => `network ${n.name} created (${kindText(n.kind)}, ${n.subnet})`)
        return EXIT.ok
      })
    },
    'network list': {
      summary: 'List networks',
      usage: 'blixard network list [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const list = await client.call('network.list', stale(p))
        out.data(list, () => table(['name', 'kind', 'subnet', 'gateway', 'addresses used'], list.map(netRow)))
        return EXIT.ok
      })
    },
    'network show': {
      summary: 'Show a network and its address allocations',
      usage: 'blixard network show NAME [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const n = await client.call('network.show', { network: need(p, 1, 'NAME')[0], ...stale(p) })
        const vm = await vmNames(client)
        out.data(n, () => `${keyValues([['Name', n.name], ['Kind', kindText(n.kind)], ['Subnet', n.subnet], ['Gateway', n.gateway ?? '-']])}\n\n${table(['address', 'vm'], Object.entries(n.allocations).map(([ip, id]) => [ip, vm(id)]))}`)
        return EXIT.ok
      })
    },
    'network delete': {
      summary: 'Delete a network (refused while a VM is on it)',
      usage: 'blixard network delete NAME',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const r = await mutate(client, invocationKey(p), 'network.delete', { network: need(p, 1, 'NAME')[0] })
        out.data(r, () => `network ${r.name} deleted`)
        return EXIT.ok
      })
    },
    'volume create': {
      summary: 'Create a volume (a Ceph RBD image)',
      usage: 'blixard volume create NAME --size GIB [--pool POOL] [--wait]',
      flags: { size: { value: true, arg: 'GIB', help: 'size in GiB' }, pool: { value: true, arg: 'POOL', help: 'the Ceph pool', default: 'the answering node\'s ceph.pool, else rbd' }, ...WAIT_FLAGS },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        if (flag(p, 'size') == null) throw new UsageError('--size GIB is required')
        const pool = flag(p, 'pool')
        const v = await mutate(client, invocationKey(p), 'volume.create', { name: need(p, 1, 'NAME')[0], sizeGiB: int(p, 'size', 0, 1, VM_LIMITS.maxVolumeGiB), ...(pool != null ? { pool } : {}) })
        if (bool(p, 'wait')) return await waitVolume(client, v.name, 'ready', p, out)
        out.data(v, () => recorded(v, `created (${v.sizeGiB} GiB in pool ${v.pool})`))
        return EXIT.ok
      })
    },
    'volume list': {
      summary: 'List volumes',
      usage: 'blixard volume list [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const list = await client.call('volume.list', stale(p))
        const vm = await vmNames(client)
        out.data(list, () => table(['name', 'phase', 'pool', 'size', 'snapshots', 'parent', 'attached to'], list.map((v) => volRow(v, vm))))
        return EXIT.ok
      })
    },
    'volume show': {
      summary: 'Show one volume',
      usage: 'blixard volume show NAME [--stale]',
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const v = await client.call('volume.show', { volume: need(p, 1, 'NAME')[0], ...stale(p) })
        const vm = await vmNames(client)
        out.data(v, () => volShow(v, vm))
        return EXIT.ok
      })
    },
    'volume resize': {
      summary: 'Grow a volume',
      usage: 'blixard volume resize NAME --size GIB [--wait]',
      flags: { size: { value: true, arg: 'GIB', help: 'the new size in GiB (only grows)' }, ...WAIT_FLAGS },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        if (flag(p, 'size') == null) throw new UsageError('--size GIB is required')
        const v = await mutate(client, invocationKey(p), 'volume.resize', { volume: need(p, 1, 'NAME')[0], sizeGiB: int(p, 'size', 0, 1, VM_LIMITS.maxVolumeGiB) })
        if (bool(p, 'wait')) return await waitVolume(client, v.name, 'ready', p, out)
        out.data(v, () => recorded(v, `grows to ${v.sizeGiB} GiB`))
        return EXIT.ok
      })
    },
    'volume snapshot': {
      summary: 'Snapshot a volume (protected, ready to clone)',
      usage: 'blixard volume snapshot NAME SNAPSHOT [--wait]',
      flags: WAIT_FLAGS,
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const [name, snapshot] = need(p, 2, 'NAME and SNAPSHOT')
        const v = await mutate(client, invocationKey(p), 'volume.snapshot', { volume: name, snapshot })
        if (bool(p, 'wait')) return await waitVolume(client, v.name, 'ready', p, out)
        out.data(v, () => recorded(v, `gets snapshot ${snapshot}`))
        return EXIT.ok
      })
    },
    'volume clone': {
      summary: 'Clone a volume snapshot into a new volume (copy-on-write)',
      usage: 'blixard volume clone VOLUME@SNAPSHOT NAME [--size GIB] [--wait]',
      flags: { size: { value: true, arg: 'GIB', help: 'grow the clone to this size in GiB', default: 'the snapshot\'s size' }, ...WAIT_FLAGS },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const [src, name] = need(p, 2, 'VOLUME@SNAPSHOT and NAME')
        const at = src.indexOf('@')
        if (at <= 0 || at === src.length - 1) throw new UsageError(`expected VOLUME@SNAPSHOT, got "${src}"`)
        const v = await mutate(client, invocationKey(p), 'volume.clone', { volume: src.slice(0, at), snapshot: src.slice(at + 1), name, ...(flag(p, 'size') != null ? { sizeGiB: int(p, 'size', 0, 1, VM_LIMITS.maxVolumeGiB) } : {}) })
        if (bool(p, 'wait')) return await waitVolume(client, v.name, 'ready', p, out)
        out.data(v, () => recorded(v, `cloned from ${src}`))
        return EXIT.ok
      })
    },
    'volume delete': {
      summary: 'Delete a volume and its image (refused while attached or cloned)',
      usage: 'blixard volume delete NAME [--wait]',
      flags: { ...WAIT_FLAGS, wait: { help: 'wait until its RBD image is removed and the record gone' } },
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const r = await mutate(client, invocationKey(p), 'volume.delete', { volume: need(p, 1, 'NAME')[0] })
        if (bool(p, 'wait')) return await waitVolume(client, r.name, 'gone', p, out)
        out.data(r, () => `volume ${r.name} deleting: its RBD image is removed next, then the record goes (follow with blixard volume show ${r.name}, or use --wait)`)
        return EXIT.ok
      })
    }
  }
}
