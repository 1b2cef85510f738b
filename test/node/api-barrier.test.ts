// Calls that name a VM on a follower resolve it only after the replica caught up (node/api.ts
// caughtUp): a VM whose create the follower just forwarded to the leader is applied there first,
// and this replica learns the commit with the leader's next message. Here the follower's read
// barrier is where the create applies; a call that resolved its VM before the barrier answered
// NotFound.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createApi, type ApiDeps } from '../../node/api.ts'
import type { RpcCallContext } from '../../node/net/rpc.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { harness, spec } from '../storage/sm-fixtures.ts'

test('vm.consoleInput through a follower finds a VM that applies during the read barrier', async () => {
  const h = harness()
  let barriers = 0
  const follower = {
    isLeader: () => false,
    readBarrier: async () => {
      barriers++
      h.run({ type: 'CreateVm', id: 'vm-new', spec: spec('fresh'), desired: 'running' })
    }
  }
  const typed: Array<{ vm: string, data: string }> = []
  const unused = (): never => { throw new Error('not used by this test') }
  const d: ApiDeps = {
    id: () => 'n2', sm: h.sm, raft: () => follower as unknown as ReturnType<ApiDeps['raft']>, propose: unused,
    load: { hints: () => new Map() } as unknown as ApiDeps['load'],
    subscribe: () => () => {}, loadReports: () => [], hello: unused, join: unused, vmLogs: unused,
    recentEvents: () => [], describe: (i) => `event ${i}`, subscribeNotes: () => () => {},
    consoleInput: async (vm: VmRecord, data: Buffer) => { typed.push({ vm: vm.id, data: data.toString() }); return { bytes: data.length, node: 'n1' } }
  }
  const api = createApi(d)
  const ctx = { peer: 'p', connection: null, method: 'vm.consoleInput', signal: new AbortController().signal } as unknown as RpcCallContext
  const call = api['vm.consoleInput'] as (p: unknown, c: RpcCallContext) => Promise<{ bytes: number, node: string }>
  const r = await call({ vm: 'fresh', data: Buffer.from('root\n').toString('base64') }, ctx)
  assert.equal(r, { bytes: 5, node: 'n1' })
  assert.equal(typed, [{ vm: 'vm-new', data: 'root\n' }])
  assert.is(barriers, 1)
})

test.run()
