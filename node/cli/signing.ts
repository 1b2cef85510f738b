// Admin writes signed by the admin's own key (protocols/auth.ts): every mutating method goes as
// cluster.prepare (which command would this write propose?) then cluster.submit (that command,
// signed here). The node never holds the admin's key, so no node, forwarder or forged log entry can
// act as the admin; the nodes check the signature on the leader and on apply.
import { BlixardError } from '../../protocols/errors.ts'
import { randomUUID } from 'node:crypto'
import { METHODS, isMethod } from '../../protocols/rpc.ts'
import type { Command } from '../../protocols/commands.ts'
import type { QuotaLimits } from '../../protocols/model.ts'
import { signCommand } from '../../protocols/auth.ts'
import type { Signer } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import type { RpcClient } from '../net/rpc.ts'

/** The command type each signable method must propose: the node that prepares a command is not
 * trusted to choose what the admin signs (it could hand over an AddAdmin of itself). */
const EXPECTED: Record<string, Array<Command['type']>> = {
  'node.drain': ['UpdateNode'],
  'node.undrain': ['UpdateNode'],
  'vm.create': ['CreateVm'],
  'vm.start': ['SetVmDesiredState'],
  'vm.stop': ['SetVmDesiredState'],
  'vm.update': ['UpdateVmSpec'],
  'vm.delete': ['DeleteVm'],
  'vm.migrate': ['StartMigration', 'CancelMigration'],
  'admin.add': ['AddAdmin'],
  'admin.remove': ['RemoveAdmin'],
  'node.approve': ['ApproveNode'],
  'cluster.joinPolicy': ['SetJoinPolicy'],
  'network.create': ['CreateNetwork'],
  'network.delete': ['DeleteNetwork'],
  'volume.create': ['CreateVolume'],
  'volume.resize': ['ResizeVolume'],
  'volume.snapshot': ['SnapshotVolume'],
  'volume.clone': ['CreateVolume'],
  'volume.delete': ['DeleteVolume'],
  'quota.set': ['SetQuota'],
  // VM memory snapshots
  'vm.snapshot': ['SnapshotVm'],
  'vm.restore': ['RestoreVm'],
  'vm.snapshotDelete': ['DeleteVmSnapshot'],
  'vm.clone': ['CreateVm'],
  // warm pools
  'pool.set': ['SetWarmPool'],
  'pool.delete': ['DeleteWarmPool']
}

/** Check that the prepared command is the one the admin asked for, as far as the request says. */
export function checkPrepared (method: string, params: Record<string, unknown>, cmd: Command): void {
  const want = EXPECTED[method]
  if (want === undefined || !want.includes(cmd.type)) throw new BlixardError('Internal', `the node prepared a ${cmd.type} for ${method}: refusing to sign it`)
  if ((cmd.type === 'AddAdmin' || cmd.type === 'RemoveAdmin' || cmd.type === 'ApproveNode') && cmd.peerId !== params.peerId) {
    throw new BlixardError('Internal', `the node prepared ${cmd.type} of ${cmd.peerId}, not of ${String(params.peerId)}: refusing to sign it`)
  }
  if (cmd.type === 'StartMigration' && (cmd.cold === true) !== (params.mode === 'cold')) {
    throw new BlixardError('Internal', `the node prepared a ${cmd.cold === true ? 'cold' : 'live'} move for a ${params.mode === 'cold' ? 'cold' : 'live'} one: refusing to sign it`)
  }
  if ((cmd.type === 'CancelMigration') !== (params.cancel === true) && (cmd.type === 'StartMigration' || cmd.type === 'CancelMigration')) {
    throw new BlixardError('Internal', `the node prepared a ${cmd.type} for ${params.cancel === true ? 'a cancel' : 'a migration'}: refusing to sign it`)
  }
  // a target given as a peer id is what must be signed (a name the node resolved cannot be checked here)
  if (cmd.type === 'StartMigration' && typeof params.to === 'string' && params.to.startsWith('12D3KooW') && cmd.target !== params.to) {
    throw new BlixardError('Internal', `the node prepared a migration to ${cmd.target}, not to ${params.to}: refusing to sign it`)
  }
  // the project and its limits are what the admin typed: a node may not widen or move them
  if (cmd.type === 'SetQuota' && (cmd.project !== params.project || !sameLimits(cmd.limits, params.limits))) {
    throw new BlixardError('Internal', `the node prepared quota ${cmd.project} ${JSON.stringify(cmd.limits)}, not ${String(params.project)} ${JSON.stringify(params.limits)}: refusing to sign it`)
  }
  // a clone is of the snapshot named and under the name asked; a plain create is no clone
  if (cmd.type === 'CreateVm' && method === 'vm.clone' && (cmd.spec.name !== params.name || cmd.fromSnapshot?.name !== params.snapshot)) {
    throw new BlixardError('Internal', `the node prepared VM ${cmd.spec.name} from snapshot ${String(cmd.fromSnapshot?.name)}, not ${String(params.name)} from ${String(params.snapshot)}: refusing to sign it`)
  }
  if (cmd.type === 'CreateVm' && method === 'vm.create' && cmd.fromSnapshot !== undefined) throw new BlixardError('Internal', 'the node prepared a clone for a plain create: refusing to sign it')
  if ((cmd.type === 'SnapshotVm' || cmd.type === 'RestoreVm' || cmd.type === 'DeleteVmSnapshot') && cmd.name !== params.name) {
    throw new BlixardError('Internal', `the node prepared a ${cmd.type} of snapshot ${cmd.name}, not ${String(params.name)}: refusing to sign it`)
  }
  // the pool and its shape are what the admin typed: a node may not grow or reshape them
  if (cmd.type === 'SetWarmPool' && (cmd.name !== params.name || cmd.vcpus !== params.vcpus || cmd.memoryMiB !== params.memoryMiB || cmd.size !== params.size ||
    JSON.stringify(cmd.constraints ?? []) !== JSON.stringify(params.constraints ?? []) || JSON.stringify(cmd.image ?? null) !== JSON.stringify(params.image ?? null))) {
    throw new BlixardError('Internal', `the node prepared warm pool ${cmd.name} (${cmd.size} × ${cmd.image?.kind ?? 'tiny'} × ${cmd.vcpus} vCPU × ${cmd.memoryMiB} MiB), not what was asked: refusing to sign it`)
  }
  if (cmd.type === 'DeleteWarmPool' && cmd.name !== params.name) throw new BlixardError('Internal', `the node prepared the delete of warm pool ${cmd.name}, not ${String(params.name)}: refusing to sign it`)
  if (cmd.type === 'SetJoinPolicy' && cmd.policy !== params.policy) throw new BlixardError('Internal', `the node prepared join policy ${cmd.policy}, not ${String(params.policy)}: refusing to sign it`)
  if (cmd.type === 'UpdateNode' && (cmd.state === undefined || Object.keys(cmd).some((k) => !['type', 'id', 'state', 'force', 'onto'].includes(k)))) {
    throw new BlixardError('Internal', `the node prepared an UpdateNode that changes more than the node's state: refusing to sign it`)
  }
  // --force is the admin's choice: a node may not add it (and so strand VMs in the admin's name)
  if (cmd.type === 'UpdateNode' && (cmd.force === true) !== (params.force === true)) {
    throw new BlixardError('Internal', `the node prepared a drain ${cmd.force === true ? 'with' : 'without'} --force for one ${params.force === true ? 'with' : 'without'} it: refusing to sign it`)
  }
}

/** The same quota limits, whatever the order of their keys (the node normalizes the order). */
function sameLimits (limits: QuotaLimits | null, b: unknown): boolean {
  const a = limits as Record<string, number | undefined> | null
  if (a === null || b === null || typeof b !== 'object') return a === b
  const o = b as Record<string, unknown>
  const keys = new Set([...Object.keys(a), ...Object.keys(o)])
  return [...keys].every((k) => a[k] === o[k])
}

type Call = RpcClient['call']

/** The same client, whose admin writes are signed by `signer`. */
export function signingClient (client: RpcClient, signer: Signer): RpcClient {
  const call = async (method: string, params: unknown, opts?: unknown): Promise<unknown> => {
    const plain = client.call.bind(client) as unknown as (m: string, p: unknown, o?: unknown) => Promise<unknown>
    if (!isMethod(method) || !METHODS[method].mutating || EXPECTED[method] === undefined) return await plain(method, params, opts)
    const answer = await plain('cluster.prepare', { method, params }, opts) as { cmd: unknown, until: number } | { done: unknown }
    if ('done' in answer) return answer.done // a retry of an applied key: its first result
    const prep = answer
    const v = validateCommand(prep.cmd)
    if (!v.ok) throw new BlixardError('Internal', `the node prepared an invalid command: ${v.error.message}`)
    checkPrepared(method, (params ?? {}) as Record<string, unknown>, v.cmd)
    const auth = await signCommand(signer, v.cmd, randomUUID(), prep.until)
    return await plain('cluster.submit', { method, params, cmd: v.cmd, auth }, opts)
  }
  return new Proxy(client, {
    get (target, prop) {
      if (prop === 'call') return call as unknown as Call
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}
