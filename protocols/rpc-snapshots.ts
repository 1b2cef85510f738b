// RPC methods of VM memory snapshots (issue 18; the records are protocols/snapshots.ts). VMs are
// named by name or id, snapshots by name; params go through the same checks as the commands they
// become, so the RPC and the log accept the same values.
import type { IdempotentParams, MethodSpec, ReadParams } from './rpc.ts'
import type { VmSnapshotRecord } from './snapshots.ts'
import { SNAPSHOT_NAME } from './command-schema.ts'
import { compile } from './schema.ts'
import { MAX_NODE_ID_LENGTH } from './limits.ts'
import { bool, obj, opt, str } from './validate.ts'

/** What a delete answers: the record marked 'deleting' (its host removes the file, then the
 * record goes), or `removed` when it went at once (its host is no longer in the cluster). */
export type SnapshotDeleteResult = VmSnapshotRecord | { vm: string, name: string, removed: true }

export interface SnapshotMethods {
  /** records snapshot `name` of a running VM as 'taking'; its host saves memory + devices to a local file */
  'vm.snapshot': { params: { vm: string, name: string } & IdempotentParams, result: VmSnapshotRecord }
  /** the snapshots of one VM (or all), in (VM id, name) order */
  'vm.snapshotList': { params: ReadParams & { vm?: string }, result: VmSnapshotRecord[] }
  'vm.snapshotDelete': { params: { vm: string, name: string } & IdempotentParams, result: SnapshotDeleteResult }
  /** asks the VM's host to roll the running guest back to a ready snapshot */
  'vm.restore': { params: { vm: string, name: string } & IdempotentParams, result: VmSnapshotRecord }
}

type Table = { [M in keyof SnapshotMethods]: MethodSpec<SnapshotMethods[M]['params']> }

const ref = (x: unknown, path: string): string => str(x, path, MAX_NODE_ID_LENGTH, 1)
/** a snapshot name, as the commands check it */
const snapshotName = compile(SNAPSHOT_NAME, 'params.name', 'params.name.', 'wire')
const vmAndName = (x: unknown): { vm: string, name: string } => {
  const o = obj(x ?? {}, 'params', ['vm', 'name'], ['vm', 'name'])
  return { vm: ref(o.vm, 'params.vm'), name: snapshotName(o.name) }
}

export const SNAPSHOT_METHODS: Table = {
  'vm.snapshot': { mutating: true, streaming: false, params: vmAndName },
  'vm.snapshotDelete': { mutating: true, streaming: false, params: vmAndName },
  'vm.restore': { mutating: true, streaming: false, params: vmAndName },
  'vm.snapshotList': {
    mutating: false, streaming: false,
    params: (x) => {
      const o = obj(x ?? {}, 'params', ['vm', 'stale'])
      const stale = opt(o, 'stale', bool, 'params')
      const vm = opt(o, 'vm', ref, 'params')
      return { ...(stale !== undefined ? { stale } : {}), ...(vm !== undefined ? { vm } : {}) }
    }
  }
}
