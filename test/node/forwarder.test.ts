// Write forwarding (node/core/forwarder.ts) over a scripted leader: local proposals when leading,
// one internal.proposeMany for the writes of one turn (split at MAX_FORWARD_BATCH), a lone write as
// internal.propose, a malformed or failed answer retried under the same key, a deposed leader
// given up at once, and the definite/Indeterminate line: once an attempt may have been proposed,
// a later failure is Indeterminate; refusals before proposing stay definite.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Forwarder, PROPOSE_ATTEMPTS, retryDelayMs, RETRY_MAX_MS } from '../../node/core/forwarder.ts'
import type { ForwarderEnv } from '../../node/core/forwarder.ts'
import { MAX_FORWARD_BATCH } from '../../protocols/limits.ts'
import type { ApplyResult, CommandEnvelope } from '../../protocols/commands.ts'
import { BlixardError } from '../../protocols/errors.ts'

type Env = CommandEnvelope & { key: string }
const write = (i: number): Env => ({ at: 0, key: `k${i}`, cmd: { type: 'DeleteVm', id: `vm${i}` } })
const OK: ApplyResult = { ok: true }

interface Script {
  leading?: boolean
  leader?: () => string | null
  one?: (env: CommandEnvelope) => Promise<ApplyResult>
  many?: (envs: CommandEnvelope[]) => Promise<unknown>
  refusal?: string | null
}

function forwarder (s: Script): { f: Forwarder<string>, calls: string[], sleeps: number[], dropped: string[] } {
  const calls: string[] = []
  const sleeps: number[] = []
  const dropped: string[] = []
  const env: ForwarderEnv<string> = {
    isLeader: () => s.leading === true,
    leaderId: () => s.leader?.() ?? 'L',
    refusal: () => s.refusal ?? null,
    proposeLocal: async (e) => { calls.push(`local ${String(e.key)}`); return OK },
    connect: async (leader) => `conn-${leader}`,
    callOne: async (conn, e) => { calls.push(`one ${conn} ${String(e.key)}`); return await (s.one?.(e) ?? Promise.resolve(OK)) },
    callMany: async (conn, envs) => { calls.push(`many ${conn} ${envs.length}`); return await (s.many?.(envs) ?? Promise.resolve(envs.map(() => ({ ok: true, result: OK })))) },
    dropConnection: (l) => { dropped.push(l) },
    defer: (run) => { setImmediate(run) },
    sleep: async (ms) => { sleeps.push(ms) },
    stopping: () => false
  }
  return { f: new Forwarder(env), calls, sleeps, dropped }
}

test('a leader proposes locally; its refusal is definite and not retried', async () => {
  const { f, calls } = forwarder({ leading: true })
  assert.equal(await f.propose(write(1)), OK)
  assert.equal(calls, ['local k1'])
  const refusing = forwarder({ leading: true, refusal: 'not an admin' })
  try { await refusing.f.propose(write(2)); assert.unreachable() } catch (e) {
    assert.is((e as BlixardError).kind, 'Unauthorized')
  }
  assert.equal(refusing.calls, [])
})

test('writes of one turn go to the leader as one proposeMany, split at MAX_FORWARD_BATCH; a lone one as propose', async () => {
  const { f, calls } = forwarder({})
  const n = MAX_FORWARD_BATCH + 1
  const results = await Promise.all(Array.from({ length: n }, (_, i) => f.propose(write(i))))
  assert.is(results.length, n)
  assert.equal(calls, [`many conn-L ${MAX_FORWARD_BATCH}`, `one conn-L k${MAX_FORWARD_BATCH}`])
  calls.length = 0
  await f.propose(write(99))
  assert.equal(calls, ['one conn-L k99'])
})

test('a malformed batch answer is retried under the same keys, after dropping the connection', async () => {
  let first = true
  const { f, calls, dropped, sleeps } = forwarder({
    many: async (envs) => {
      if (first) { first = false; return [{ nonsense: true }] }
      return envs.map(() => ({ ok: true, result: OK }))
    }
  })
  await Promise.all([f.propose(write(1)), f.propose(write(2))])
  assert.equal(calls, ['many conn-L 2', 'many conn-L 2'])
  assert.equal(dropped, ['L', 'L'])
  assert.equal(sleeps, [retryDelayMs(0), retryDelayMs(0)])
})

test('a leader without proposeMany gets the batch one by one', async () => {
  const { f, calls } = forwarder({ many: async () => { throw new BlixardError('UnknownMethod', 'no such method') } })
  await Promise.all([f.propose(write(1)), f.propose(write(2))])
  assert.equal(calls, ['many conn-L 2', 'one conn-L k1', 'one conn-L k2'])
})

test('after a Timeout (maybe proposed) a later refusal is Indeterminate, naming the key', async () => {
  let n = 0
  const { f } = forwarder({
    one: async () => {
      n++
      if (n === 1) throw new BlixardError('Timeout', 'no answer')
      throw new BlixardError('InvalidCommand', 'bad')
    }
  })
  try { await f.propose(write(7)); assert.unreachable() } catch (e) {
    assert.is((e as BlixardError).kind, 'Indeterminate')
    assert.match((e as Error).message, 'k7')
  }
})

test('NotLeader on every attempt stays definite, with capped back-off, after PROPOSE_ATTEMPTS', async () => {
  const { f, calls, sleeps } = forwarder({ one: async () => { throw new BlixardError('NotLeader', 'not me') } })
  try { await f.propose(write(1)); assert.unreachable() } catch (e) {
    assert.is((e as BlixardError).kind, 'NotLeader')
  }
  assert.is(calls.length, PROPOSE_ATTEMPTS)
  assert.is(Math.max(...sleeps), RETRY_MAX_MS)
})

test('a forwarded write gives up on a deposed leader at once and goes to the new one', async () => {
  let leader = 'A'
  let release: ((r: ApplyResult) => void) | null = null
  const { f, calls } = forwarder({
    leader: () => leader,
    one: async () => {
      if (leader === 'A') return await new Promise<ApplyResult>((resolve) => { release = resolve })
      return OK
    }
  })
  const p = f.propose(write(3))
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  assert.ok(release !== null, 'the write is waiting at A')
  leader = 'B'
  f.leaderChanged('B')
  assert.equal(await p, OK)
  assert.equal(calls, ['one conn-A k3', 'one conn-B k3'])
})

test.run()
