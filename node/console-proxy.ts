// `vm.logs` on any node: a VM's console comes from the local hypervisor driver when the VM is
// placed here, else it is proxied from the node it is placed on (over that node's RPC).
import type { VmRecord } from '../protocols/model.ts'
import type { RpcClient } from './net/rpc.ts'
import type { Hypervisor } from './hypervisor/types.ts'
import { BlixardError } from '../protocols/errors.ts'

export interface ConsoleProxyDeps {
  /** this node's peer id and name (the name is for error text) */
  selfId: () => string
  selfName: string
  /** the local hypervisor (QEMU or microvm.nix), null when this node runs none (yet) */
  hypervisor: () => Pick<Hypervisor, 'logs'> | null
  client: (peer: string) => Promise<RpcClient>
}

export interface ConsoleOptions { follow?: boolean, tailBytes?: number }

/** A VM's console: from our driver when the VM is here, else proxied from its host. */
export async function * vmConsole (deps: ConsoleProxyDeps, vm: VmRecord, o: ConsoleOptions, signal: AbortSignal): AsyncGenerator<string> {
  const host = vm.assignedNode
  if (host == null) throw new BlixardError('NotFound', `VM ${vm.spec.name} is not placed on any node yet, so it has no console`)
  if (host === deps.selfId()) {
    const hv = deps.hypervisor()
    if (hv == null) throw new BlixardError('Unavailable', 'this node runs no hypervisor driver')
    try {
      yield * hv.logs(vm.id, { ...o, signal })
    } catch (err) {
      if ((err as { kind?: string }).kind === 'NotFound') throw new BlixardError('NotFound', `VM ${vm.spec.name} has not started on ${deps.selfName} yet, so it has no console`)
      throw err
    }
    return
  }
  const c = await deps.client(host)
  const sub = c.watch('vm.logs', { vm: vm.id, ...(o.follow != null ? { follow: o.follow } : {}), ...(o.tailBytes != null ? { tailBytes: o.tailBytes } : {}) })
  signal.addEventListener('abort', () => { sub.cancel() }, { once: true })
  for await (const item of sub) yield item.text
}
