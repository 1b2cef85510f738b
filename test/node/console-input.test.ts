// Console input is taken only by the VM's own host: a node asked to type into a guest that runs
// elsewhere refuses instead of relaying (a relay would carry only the relaying member's word that
// an admin typed it, so any key holder could type into any guest), and no RPC method relays it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { consoleInput } from '../../node/console-proxy.ts'
import type { ConsoleProxyDeps } from '../../node/console-proxy.ts'
import { METHODS } from '../../protocols/rpc.ts'
import { BlixardError } from '../../protocols/errors.ts'
import type { VmRecord } from '../../protocols/model.ts'

function vmOn (node: string | null): VmRecord {
  return { id: 'vm-1', spec: { name: 'web' }, assignedNode: node, status: { phase: 'running' } } as unknown as VmRecord
}

function deps (dialled: string[]): ConsoleProxyDeps {
  return {
    selfId: () => 'node-a',
    selfName: 'a',
    hypervisor: () => null,
    qemu: () => null,
    client: async (peer) => { dialled.push(peer); throw new Error('must not dial') },
    vm: () => undefined
  }
}

test('input for a VM on another node is refused there, and nothing is relayed', async () => {
  const dialled: string[] = []
  let err: unknown = null
  try { await consoleInput(deps(dialled), vmOn('node-b'), Buffer.from('id\n')) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError && err.kind === 'Conflict', String(err))
  assert.match((err as Error).message, /only its host takes console input/)
  assert.equal(dialled, [], 'no other node was asked')
})

test('no internal method carries console input between nodes', () => {
  // a streaming method only answers (internal.consoleHistory hands a moved guest's output over)
  assert.equal(Object.keys(METHODS).filter((m) => /console/i.test(m) && !METHODS[m as keyof typeof METHODS].streaming), ['vm.consoleInput'])
})

test('on its host, input to a VM that is not placed or not running is refused with the reason', async () => {
  let err: unknown = null
  try { await consoleInput(deps([]), vmOn(null), Buffer.from('x')) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError && err.kind === 'NotFound', String(err))
})

test.run()
