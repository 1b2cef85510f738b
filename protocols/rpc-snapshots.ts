// RPC methods of VM memory snapshots (the records are protocols/snapshots.ts). VMs are
// named by name or id, snapshots by name; params go through the same checks as the commands they
// become, so the RPC and the log accept the same values.
import type { IdempotentParams, MethodSpec } from './rpc.ts'
import type { VmSnapshotRecord } from './snapshots.ts'
import type { VmRecord } from './model.ts'
import { NAME, SNAPSHOT_NAME } from './command-schema.ts'
import { compile, s, type Infer, type Schema } from './schema.ts'
import { MAX_NODE_ID_LENGTH } from './limits.ts'

/** What a delete answers: the record marked 'deleting' (its host removes the file, then the
 * record goes), or `removed` when it went at once (its host is no longer in the cluster). */
export type SnapshotDeleteResult = VmSnapshotRecord | { vm: string, name: string, removed: true }

const ref = s.str(MAX_NODE_ID_LENGTH, { min: 1 })
/** a VM by name or id, and a snapshot name as the commands check it */
const vmAndName = s.obj({ vm: ref, name: SNAPSHOT_NAME })

/** params, declared once (protocols/schema.ts, wire dialect): SnapshotMethods derives its params
 * types from these and each method's checker is compiled from the same declaration */
const SNAPSHOT_PARAMS = {
  'vm.snapshot': vmAndName,
  'vm.snapshotList': s.obj({}, { stale: s.bool(), vm: ref }),
  'vm.snapshotDelete': vmAndName,
  'vm.restore': vmAndName,
  /** a new VM `name` started from snapshot `snapshot` of VM `vm` (vm create NAME --from-snapshot VM/SNAPSHOT) */
  'vm.clone': s.obj({ name: NAME, vm: ref, snapshot: SNAPSHOT_NAME }, { start: s.bool() })
} as const

type P<M extends keyof typeof SNAPSHOT_PARAMS> = Infer<(typeof SNAPSHOT_PARAMS)[M]>

export interface SnapshotMethods {
  /** records snapshot `name` of a running VM as 'taking'; its host saves memory + devices to a local file */
  'vm.snapshot': { params: P<'vm.snapshot'> & IdempotentParams, result: VmSnapshotRecord }
  /** the snapshots of one VM (or all), in (VM id, name) order */
  'vm.snapshotList': { params: P<'vm.snapshotList'>, result: VmSnapshotRecord[] }
  'vm.snapshotDelete': { params: P<'vm.snapshotDelete'> & IdempotentParams, result: SnapshotDeleteResult }
  /** asks the VM's host to roll the running guest back to a ready snapshot */
  'vm.restore': { params: P<'vm.restore'> & IdempotentParams, result: VmSnapshotRecord }
  /** creates a VM from a ready snapshot: the source's devices, its disks RBD clones of the
   * snapshot's, its first start a resume of the saved state with its own identity */
  'vm.clone': { params: P<'vm.clone'> & IdempotentParams, result: VmRecord }
}

type Table = { [M in keyof SnapshotMethods]: MethodSpec<SnapshotMethods[M]['params']> }

function method<M extends keyof typeof SNAPSHOT_PARAMS> (m: M, mutating: boolean): MethodSpec<P<M>> {
  const check = compile<P<M>>(SNAPSHOT_PARAMS[m] as Schema<P<M>>, 'params', 'params.', 'wire')
  return { mutating, streaming: false, params: (x) => check(x ?? {}) }
}

export const SNAPSHOT_METHODS: Table = {
  'vm.snapshot': method('vm.snapshot', true),
  'vm.snapshotDelete': method('vm.snapshotDelete', true),
  'vm.restore': method('vm.restore', true),
  'vm.clone': method('vm.clone', true),
  'vm.snapshotList': method('vm.snapshotList', false)
}
