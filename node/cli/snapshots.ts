// CLI commands for VM memory snapshots: `blixard vm snapshot VM NAME`,
// `vm snapshot list [VM]`, `vm snapshot delete VM NAME`, `vm restore VM NAME`. Each write is
// recorded through Raft and carried out by the VM's host; the command follows the record until the
// host reported (ready / restored / gone), so a 0 exit means it is done. Names, not ids.
import { BlixardError } from '../../protocols/errors.ts'
import type { NodeRecord, VmRecord } from '../../protocols/model.ts'
import type { VmSnapshotRecord } from '../../protocols/snapshots.ts'
import { NO_IDENTITY_CHANNEL } from '../../protocols/images.ts'
import { int, UsageError } from './args.ts'
import type { FlagSpec, Parsed } from './args.ts'
import type { Connection } from './connect.ts'
import { CliError, EXIT } from './errors.ts'
import { invocationKey, mutate } from './idempotent.ts'
import { ago, keyValues, shortId, table } from './format.ts'
import type { CliHelpers } from './resources.ts'

interface Out { json: boolean, data: (value: unknown, human: () => string) => void, progress: (line: string) => void }
interface SnapshotCommand { summary: string, usage: string, flags?: Record<string, FlagSpec>, run: (p: Parsed, out: Out) => Promise<number> }
type Client = Connection['client']

/** How often a command reads the snapshot record while its host works. */
const SNAPSHOT_POLL_MS = 200
/** How long a command follows its snapshot unless --timeout says otherwise (seconds). */
const SNAPSHOT_WAIT_DEFAULT_S = 120
const WAIT_FLAGS: Record<string, FlagSpec> = {
  timeout: { value: true, arg: 'SECONDS', help: 'how long to wait for the VM\'s host', default: String(SNAPSHOT_WAIT_DEFAULT_S) }
}

/** Names for people (stale reads); ids stay in --json. */
async function names (client: Client): Promise<{ vm: (id: string) => string, node: (id: string) => string }> {
  const [vms, nodes] = await Promise.all([client.call('vm.list', { stale: true }), client.call('node.list', { stale: true })])
  const v = new Map(vms.map((x: VmRecord) => [x.id, x.spec.name]))
  const n = new Map(nodes.map((x: NodeRecord) => [x.id, x.name]))
  return { vm: (id) => v.get(id) ?? shortId(id, 8), node: (id) => n.get(id) ?? shortId(id) }
}

/** A clone the cluster refused because its image would keep the source's MAC and address: the
 * next step is another source, not another flag value (the kind's generic advice). Other errors
 * pass unchanged. */
export function cloneRefusal (e: unknown, name: string): unknown {
  if (!(e instanceof BlixardError) || e.kind !== 'InvalidSpec' || !e.message.includes(NO_IDENTITY_CHANNEL)) return e
  return new CliError('InvalidSpec', `VM ${name} was not created: ${e.message}`,
    'Clone a snapshot of a VM that has no networks, or create the source with the tiny image (blixard vm create NAME --image tiny --network NET), snapshot it and clone that.')
}

function mb (bytes: number | null): string {
  return bytes == null ? '-' : `${(bytes / 1048576).toFixed(1)} MiB`
}

function phaseText (s: VmSnapshotRecord): string {
  const restore = s.restore == null ? '' : s.restore.phase === 'requested' ? ', restoring' : s.restore.phase === 'failed' ? `, last restore failed (${s.restore.reason ?? 'no reason'})` : ''
  return `${s.phase}${s.reason != null && s.phase === 'failed' ? `: ${s.reason}` : ''}${restore}`
}

function where (s: VmSnapshotRecord, node: (id: string) => string): string {
  if (s.location == null) return `on ${node(s.node)}`
  if (s.location.kind === 'rbd') return `RBD image ${s.location.pool}/${s.location.image}`
  return `local file on ${node(s.node)}`
}

function disksText (s: VmSnapshotRecord): string {
  return s.disks === 'none' ? 'disks: none' : `disks: ${s.disks.map((d) => `${d.pool}/${d.image}@${d.snapshot}`).join(', ')}`
}

async function find (client: Client, vm: string, name: string): Promise<VmSnapshotRecord | null> {
  const list = await client.call('vm.snapshotList', { vm })
  return list.find((s) => s.name === name) ?? null
}

/** Reads the snapshot until `done` says the host reported; throws on timeout. */
async function follow (client: Client, vm: string, name: string, p: Parsed, what: string, done: (s: VmSnapshotRecord | null) => boolean): Promise<VmSnapshotRecord | null> {
  const secs = int(p, 'timeout', SNAPSHOT_WAIT_DEFAULT_S, 1, 3600)
  const deadline = Date.now() + secs * 1000
  for (;;) {
    let s: VmSnapshotRecord | null
    try { s = await find(client, vm, name) } catch (e) {
      if (e instanceof BlixardError && e.kind === 'NotFound') s = null
      else throw e
    }
    if (done(s)) return s
    if (Date.now() > deadline) {
      throw new CliError('Timeout', `${what} of snapshot ${name} of VM ${vm}: the VM's host has not reported after ${secs} s`, `The VM's host may be busy or down: check blixard node list and its log; follow with blixard vm snapshot list ${vm}.`)
    }
    await new Promise((resolve) => setTimeout(resolve, SNAPSHOT_POLL_MS))
  }
}

async function take (client: Client, p: Parsed, out: Out, vm: string, name: string): Promise<number> {
  await mutate(client, invocationKey(p), 'vm.snapshot', { vm, name })
  out.progress(`snapshot ${name} of VM ${vm}: recorded; its host saves memory and devices`)
  const s = await follow(client, vm, name, p, 'the save', (x) => x == null || x.phase !== 'taking')
  if (s == null) throw new CliError('NotFound', `snapshot ${name} of VM ${vm} vanished while it was taken (deleted meanwhile?)`, `List them: blixard vm snapshot list ${vm}`)
  const n = await names(client)
  if (s.phase !== 'ready') {
    throw new CliError('Internal', `snapshot ${name} of VM ${n.vm(s.vm)} ${phaseText(s)}`, `The guest runs on as before. See the host's log (${n.node(s.node)}), then delete it: blixard vm snapshot delete ${vm} ${name}`)
  }
  out.data(s, () => `snapshot ${name} of VM ${n.vm(s.vm)} ready: ${mb(s.sizeBytes)}, guest paused ${s.pausedMs ?? '?'} ms, ${where(s, n.node)} (${s.location?.kind === 'rbd' ? 'any host with Ceph restores it' : 'only that host can restore it'}; ${disksText(s)})`)
  return EXIT.ok
}

async function list (client: Client, out: Out, vm: string | undefined, stale: { stale?: boolean }): Promise<number> {
  const snaps = await client.call('vm.snapshotList', { ...(vm != null ? { vm } : {}), ...stale })
  const n = await names(client)
  out.data(snaps, () => snaps.length === 0
    ? `no snapshots${vm != null ? ` of VM ${vm}` : ''}`
    : table(['vm', 'name', 'phase', 'size', 'paused', 'where', 'created'], snaps.map((s) => [n.vm(s.vm), s.name, phaseText(s), mb(s.sizeBytes), s.pausedMs == null ? '-' : `${s.pausedMs} ms`, where(s, n.node), `${ago(Date.now() - s.createdAt)} ago`])))
  return EXIT.ok
}

async function remove (client: Client, p: Parsed, out: Out, vm: string, name: string): Promise<number> {
  const r = await mutate(client, invocationKey(p), 'vm.snapshotDelete', { vm, name })
  if (!('removed' in r)) await follow(client, vm, name, p, 'the delete', (x) => x == null)
  out.data({ vm, name, removed: true }, () => `snapshot ${name} of VM ${vm} deleted (its state and disk snapshots removed)`)
  return EXIT.ok
}

export function snapshotCommands ({ withCluster, need, stale }: CliHelpers): Record<string, SnapshotCommand> {
  return {
    'vm snapshot': {
      summary: 'Snapshot a running VM\'s memory, devices and disks (state in the Ceph pool, or a local file without Ceph); list or delete snapshots',
      usage: 'blixard vm snapshot VM NAME | vm snapshot list [VM] | vm snapshot delete VM NAME   [--json] [--timeout S]',
      flags: WAIT_FLAGS,
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const args = p.positionals
        if (args[0] === 'list') {
          if (args.length > 2) throw new UsageError('vm snapshot list takes at most one VM')
          return await list(client, out, args[1], stale(p))
        }
        if (args[0] === 'delete') {
          if (args.length !== 3) throw new UsageError('vm snapshot delete needs VM and NAME')
          return await remove(client, p, out, args[1], args[2])
        }
        const [vm, name] = need(p, 2, 'VM NAME')
        if (args.length > 2) throw new UsageError(`unexpected argument '${args[2]}' (a VM named list or delete: use its id)`)
        return await take(client, p, out, vm, name)
      })
    },
    'vm restore': {
      summary: 'Roll a running VM (memory and disks) back to one of its snapshots',
      usage: 'blixard vm restore VM NAME [--json] [--timeout S]',
      flags: WAIT_FLAGS,
      run: async (p, out) => await withCluster(p, async ({ client }) => {
        const [vm, name] = need(p, 2, 'VM NAME')
        await mutate(client, invocationKey(p), 'vm.restore', { vm, name })
        out.progress(`restore of VM ${vm} from snapshot ${name}: recorded; its host restarts the guest from the saved state`)
        const s = await follow(client, vm, name, p, 'the restore', (x) => x == null || x.restore?.phase !== 'requested')
        const n = await names(client)
        if (s?.restore?.phase !== 'done') {
          throw new CliError('Internal', `restore of VM ${vm} from snapshot ${name} failed: ${s?.restore?.reason ?? 'the snapshot is gone'}`, `The VM's host boots the guest afresh; see its log (${s == null ? 'its host' : n.node(s.node)}) and blixard vm show ${vm}.`)
        }
        out.data(s, () => keyValues([['Restored', `VM ${n.vm(s.vm)} from snapshot ${name}`], ['Host', n.node(s.restore?.node ?? s.node)], ['Took', `${s.restore?.ms ?? '?'} ms (old QEMU stopped → guest running)`]]))
        return EXIT.ok
      })
    }
  }
}
