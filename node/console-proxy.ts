// `vm.logs` on any node: a VM's console comes from the local hypervisor driver when the VM is placed
// here, else it is proxied from the node it is placed on (over that node's RPC). `vm.consoleInput` is
// taken only by the VM's own host, from the admin's own connection (the CLI dials the host itself): a
// relayed keystroke would carry only the relaying member's word that an admin typed it.
import { createConnection } from 'node:net'
import { BlixardError } from '../protocols/errors.ts'
import type { VmRecord } from '../protocols/model.ts'
import type { RpcClient } from './net/rpc.ts'
import type { Hypervisor } from './hypervisor/types.ts'
import type { QemuDriver } from './qemu/driver.ts'
import { runtimePaths } from './qemu/paths.ts'

/** How long a write into a guest's serial socket may take (QEMU accepts at once, or is hung). */
const CONSOLE_WRITE_TIMEOUT_MS = 5_000

export interface ConsoleProxyDeps {
  /** this node's peer id and name (the name is for error text) */
  selfId: () => string
  selfName: string
  /** the local hypervisor (QEMU or microvm.nix), null when this node runs none (yet) */
  hypervisor: () => Pick<Hypervisor, 'logs'> | null
  /** the QEMU driver when this node runs guests through it (console input goes to its serial socket) */
  qemu: () => Pick<QemuDriver, 'dataDir'> | null
  client: (peer: string) => Promise<RpcClient>
  /** the VM as this node's replica has it now (a follow looks for the live move that ended it) */
  vm: (id: string) => VmRecord | undefined
}

export interface ConsoleOptions { follow?: boolean, tailBytes?: number, history?: boolean }

/** How long a follow whose local guest ended waits for this node's replica to show the live move
 * that ended it: the source's QEMU quits once the switchover committed, which the replica applies
 * at about the same time. */
const MOVE_SEEN_WAIT_MS = 5_000
const MOVE_POLL_MS = 100

/** A VM's console: from our driver when the VM is here, else proxied from its host. A follow of a
 * guest here that moves live goes on with its new host's console (which it proxies from there),
 * without the history that host took over: the reader has seen all of it here. */
export async function * vmConsole (deps: ConsoleProxyDeps, vm: VmRecord, o: ConsoleOptions, signal: AbortSignal): AsyncGenerator<string> {
  let host = vm.assignedNode
  let opts = o
  for (;;) {
    const here = host === deps.selfId()
    yield * consoleOn(deps, vm, host, opts, signal)
    // a proxied follow is continued by the host that served it
    if (!here || host == null || o.follow !== true || signal.aborted) return
    const next = await movedLive(deps, vm.id, host, signal)
    if (next == null) return
    host = next
    opts = { follow: true, history: false }
  }
}

async function * consoleOn (deps: ConsoleProxyDeps, vm: VmRecord, host: string | null, o: ConsoleOptions, signal: AbortSignal): AsyncGenerator<string> {
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
  const sub = c.watch('vm.logs', { vm: vm.id, ...(o.follow != null ? { follow: o.follow } : {}), ...(o.tailBytes != null ? { tailBytes: o.tailBytes } : {}), ...(o.history != null ? { history: o.history } : {}) })
  signal.addEventListener('abort', () => { sub.cancel() }, { once: true })
  for await (const item of sub) yield item.text
}

/** The VM's new host when a live move off `host` switched over (as the replica shows it, waited for
 * a moment while the move is still in flight there), else null: the guest ended for another reason. */
async function movedLive (deps: ConsoleProxyDeps, vmId: string, host: string, signal: AbortSignal): Promise<string | null> {
  const deadline = Date.now() + MOVE_SEEN_WAIT_MS
  for (;;) {
    const cur = deps.vm(vmId)
    const m = cur?.migration
    if (cur == null || m == null || m.source !== host || m.phase === 'aborted') return null
    // the VM is where that move took it (not an old record of a VM that came back since, cold or by HA)
    if ((m.phase === 'switched' || m.phase === 'done') && m.owner === m.target && cur.assignedNode === m.target) return m.target
    // only a move still before its switchover here may yet show one (this replica behind the source's)
    if (m.phase === 'switched' || m.phase === 'done' || Date.now() > deadline || signal.aborted) return null
    await new Promise((resolve) => setTimeout(resolve, MOVE_POLL_MS))
  }
}

/** Types `data` into a VM's serial console: into QEMU's serial socket, on the VM's own host only. */
export async function consoleInput (deps: ConsoleProxyDeps, vm: VmRecord, data: Buffer): Promise<{ bytes: number, node: string }> {
  const host = vm.assignedNode
  if (host == null) throw new BlixardError('NotFound', `VM ${vm.spec.name} is not placed on any node yet, so it has no console`)
  if (host !== deps.selfId()) throw new BlixardError('Conflict', `VM ${vm.spec.name} runs on another node (${host}): only its host takes console input, from an admin connected to it (blixard vm console dials it)`)
  const qemu = deps.qemu()
  if (qemu == null) throw new BlixardError('Unavailable', `${deps.selfName} runs VM ${vm.spec.name} without the QEMU driver: console input needs its serial socket`)
  if (vm.status.phase !== 'running' && vm.status.phase !== 'starting') throw new BlixardError('Conflict', `VM ${vm.spec.name} is ${vm.status.phase}: its console takes input only while it runs`)
  await writeSerial(runtimePaths(qemu.dataDir, vm.id).serialSock, data, vm.spec.name)
  return { bytes: data.length, node: deps.selfName }
}

/** One short connection to QEMU's serial chardev socket (server=on, wait=off): write, then close.
 * The guest reads the bytes as if typed; its answer goes to the console log vm.logs follows. */
export async function writeSerial (path: string, data: Buffer, name: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const sock = createConnection(path)
    const timer = setTimeout(() => { sock.destroy(); reject(new BlixardError('Timeout', `VM ${name}'s serial console did not take input within ${CONSOLE_WRITE_TIMEOUT_MS} ms`)) }, CONSOLE_WRITE_TIMEOUT_MS)
    sock.on('data', () => {}) // the guest's output also comes here: the log has it already
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? new BlixardError('Conflict', `VM ${name} has no serial console open on this host (not running here)`)
        : new BlixardError('Internal', `VM ${name}'s serial console: ${err.message}`))
    })
    sock.once('connect', () => { sock.end(data, () => { clearTimeout(timer); resolve() }) })
  })
}
