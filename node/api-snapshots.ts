// RPC handlers of VM memory snapshots: each write records the request through Raft
// (storage/apply-snapshots.ts decides what may be asked) and the VM's host carries it out
// (node/snapshots/service.ts), so the answer does not depend on which node the CLI reached. A
// name is resolved only after a ReadIndex barrier, and a retried idempotency key answers with its
// first result before any name is resolved (as the VM writes in node/api.ts).
import { randomUUID } from 'node:crypto'
import type { Command } from '../protocols/commands.ts'
import { BlixardError } from '../protocols/errors.ts'
import { cloneSpec } from '../protocols/snapshots.ts'
import { cloneIdentityRefusal } from '../protocols/images.ts'
import type { VmRecord } from '../protocols/model.ts'
import type { ReadParams } from '../protocols/rpc.ts'
import type { SnapshotDeleteResult } from '../protocols/rpc-snapshots.ts'
import type { VmSnapshotRecord } from '../protocols/snapshots.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RpcCallContext, RpcHandlers } from './net/rpc.ts'

export interface SnapshotApiDeps {
  sm: StateMachine
  read: (p: ReadParams) => Promise<void>
  barrier: () => Promise<void>
  /** an applied idempotency key's stored result (thrown if it was an error), or null */
  prior: (key: string | undefined) => { value: unknown } | null
  /** proposes (admin-signed under cluster.prepare/submit) and answers with the command's result */
  /** `ctx`: the call's context (an admin write that cluster.submit runs proposes its signed command) */
  write: (cmd: Command, key: string | undefined, ctx: RpcCallContext) => Promise<unknown>
  vmRef: (ref: string) => VmRecord
}

type SnapshotHandlers = Pick<RpcHandlers, 'vm.snapshot' | 'vm.snapshotList' | 'vm.snapshotDelete' | 'vm.restore' | 'vm.clone'>

export function createSnapshotApi (d: SnapshotApiDeps): SnapshotHandlers {
  /** The VM a snapshot command names: by name or id; a deleted VM's id still names the snapshots
   * its host has not removed yet (so they can be listed and deleted). */
  const vmId = (ref: string): string => {
    try { return d.vmRef(ref).id } catch (e) {
      if (d.sm.listVmSnapshots(ref).length > 0) return ref
      throw e
    }
  }
  return {
    'vm.snapshot': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as VmSnapshotRecord
      return await d.write({ type: 'SnapshotVm', vm: d.vmRef(p.vm).id, name: p.name }, p.idempotencyKey, ctx) as VmSnapshotRecord
    },
    'vm.restore': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as VmSnapshotRecord
      return await d.write({ type: 'RestoreVm', vm: d.vmRef(p.vm).id, name: p.name }, p.idempotencyKey, ctx) as VmSnapshotRecord
    },
    'vm.snapshotDelete': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as SnapshotDeleteResult
      return await d.write({ type: 'DeleteVmSnapshot', vm: vmId(p.vm), name: p.name }, p.idempotencyKey, ctx) as SnapshotDeleteResult
    },
    'vm.clone': async (p, ctx) => {
      await d.barrier()
      const done = d.prior(p.idempotencyKey); if (done != null) return done.value as VmRecord
      let src: VmRecord
      try { src = d.vmRef(p.vm) } catch (e) {
        if (e instanceof BlixardError && e.kind === 'NotFound') throw new BlixardError('NotFound', `--from-snapshot ${p.vm}/${p.snapshot}: no VM named or with id '${p.vm}'`)
        throw e
      }
      if (!d.sm.listVmSnapshots(src.id).some((x) => x.name === p.snapshot)) throw new BlixardError('NotFound', `--from-snapshot ${p.vm}/${p.snapshot}: VM ${src.spec.name} has no snapshot named ${p.snapshot}`)
      // said before anything is proposed (apply refuses it too, for a command signed elsewhere)
      const identity = cloneIdentityRefusal(src.spec, src.spec.name, p.snapshot)
      if (identity !== null) throw new BlixardError('InvalidSpec', identity)
      // the source's spec under the new name (its devices: the saved state needs them); apply
      // checks the snapshot is ready and makes the clone's disks
      return await d.write({ type: 'CreateVm', id: randomUUID(), spec: cloneSpec(src.spec, p.name), fromSnapshot: { vm: src.id, name: p.snapshot }, desired: p.start === false ? 'stopped' : 'running' }, p.idempotencyKey, ctx) as VmRecord
    },
    'vm.snapshotList': async (p) => {
      await d.read(p)
      if (p.vm == null) return d.sm.listVmSnapshots()
      return d.sm.listVmSnapshots(vmId(p.vm))
    }
  }
}
