// The daemon's vm.watch and cluster.events generators (node/api.ts) on a real state machine: the
// current state comes first, a page at a time; each applied change follows; a reader that falls
// more than WATCH_MAX_QUEUED_CHANGES behind gets TooLarge instead of the node holding its changes
// without end, and the subscription is released either way.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ApplyResult, Command, CommandEnvelope } from '../../protocols/commands.ts'
import type { VmWatchEvent } from '../../protocols/rpc.ts'
import { WATCH_MAX_QUEUED_CHANGES } from '../../protocols/limits.ts'
import { createApi, type ApiDeps } from '../../node/api.ts'
import type { RpcCallContext, StreamingHandler } from '../../node/net/rpc.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { harness, spec } from '../storage/sm-fixtures.ts'

type Sub = (index: number, env: CommandEnvelope, result: ApplyResult) => void

function setup (): { api: ReturnType<typeof createApi>, apply: (cmd: Command) => void, subs: Set<Sub> } {
  const h = harness()
  const subs = new Set<Sub>()
  const unused = (): never => { throw new Error('not used by this test') }
  const d: ApiDeps = {
    id: () => 'n1', sm: h.sm, raft: () => null, propose: unused, load: { hints: () => new Map() } as unknown as ApiDeps['load'],
    subscribe: (fn) => { subs.add(fn); return () => { subs.delete(fn) } },
    loadReports: () => [], hello: unused, join: unused, vmLogs: unused,
    recentEvents: () => [], describe: (i) => `event ${i}`, subscribeNotes: () => () => {}
  }
  return {
    api: createApi(d),
    subs,
    apply: (cmd) => { const r = h.run(cmd); for (const fn of subs) fn(h.index(), { cmd, at: h.index() * 1000 }, r) }
  }
}

const ctx = (signal: AbortSignal): RpcCallContext => ({ peer: 'p', connection: null as unknown as RpcCallContext['connection'], method: 'vm.watch', signal })

test('vm.watch: 100 VMs first (across pages), then each change; a reader that falls behind gets TooLarge and the subscription goes', async () => {
  const { api, apply, subs } = setup()
  for (let i = 0; i < 100; i++) apply({ type: 'CreateVm', id: `vm-${String(i).padStart(3, '0')}`, spec: spec(`web-${i}`), desired: 'stopped' })
  const stop = new AbortController()
  const it = (api['vm.watch'] as StreamingHandler<'vm.watch'>)({}, ctx(stop.signal))[Symbol.asyncIterator]()
  const first: string[] = []
  for (let i = 0; i < 100; i++) { const r = await it.next(); assert.ok(r.done !== true); const ev = r.value as VmWatchEvent; first.push(ev.type === 'put' ? ev.vm.id : ev.id) }
  assert.equal(first, Array.from({ length: 100 }, (_, i) => `vm-${String(i).padStart(3, '0')}`))
  assert.is(subs.size, 1)
  apply({ type: 'SetVmDesiredState', id: 'vm-007', desired: 'running' })
  const r = await it.next()
  assert.equal(r.value, { type: 'put', vm: (await (api['vm.show'] as (p: unknown, c: unknown) => Promise<unknown>)({ vm: 'vm-007', stale: true }, ctx(stop.signal))) })
  // now the reader stops taking changes while more than the bound apply
  for (let i = 0; i <= WATCH_MAX_QUEUED_CHANGES; i++) apply({ type: 'SetVmDesiredState', id: 'vm-001', desired: i % 2 === 0 ? 'running' : 'stopped' })
  const err = await it.next().then(() => null, (e: unknown) => e)
  assert.instance(err, BlixardError)
  assert.is((err as BlixardError).kind, 'TooLarge')
  assert.match((err as Error).message, `more than ${WATCH_MAX_QUEUED_CHANGES} changes behind`)
  assert.is(subs.size, 0, 'the subscription is released')
})

test('cluster.events: the same bound for a follower that does not read', async () => {
  const { api, apply, subs } = setup()
  const stop = new AbortController()
  const it = (api['cluster.events'] as StreamingHandler<'cluster.events'>)({}, { ...ctx(stop.signal), method: 'cluster.events' })[Symbol.asyncIterator]()
  const p = it.next()
  apply({ type: 'CreateVm', id: 'a', spec: spec('a'), desired: 'stopped' })
  assert.is(((await p).value as { text: string }).text, 'event 1')
  for (let i = 0; i <= WATCH_MAX_QUEUED_CHANGES; i++) apply({ type: 'SetVmDesiredState', id: 'a', desired: i % 2 === 0 ? 'running' : 'stopped' })
  const err = await it.next().then(() => null, (e: unknown) => e)
  assert.is((err as BlixardError).kind, 'TooLarge')
  assert.is(subs.size, 0)
})

test('a watch cancelled while it waits releases its subscription', async () => {
  const { api, subs } = setup()
  const stop = new AbortController()
  const it = (api['vm.watch'] as StreamingHandler<'vm.watch'>)({}, ctx(stop.signal))[Symbol.asyncIterator]()
  const p = it.next()
  await new Promise(resolve => setTimeout(resolve, 10))
  assert.is(subs.size, 1)
  stop.abort()
  assert.is((await p).done, true)
  assert.is(subs.size, 0)
})

test.run()
