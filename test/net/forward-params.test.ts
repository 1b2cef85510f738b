// internal.proposeMany (a follower's batched forwarded writes) and vm.update's ifGeneration: params
// are checked like every other method's, each envelope by the command schema, naming which one.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkParams } from '../../protocols/rpc.ts'
import { MAX_FORWARD_BATCH } from '../../protocols/limits.ts'

function error (f: () => unknown): { kind: string, message: string } {
  try { f(); return { kind: 'ok', message: '' } } catch (e) { const x = e as { kind?: string, message?: string }; return { kind: x.kind ?? String(e), message: x.message ?? '' } }
}

const env = (name: string): unknown => ({ cmd: { type: 'AddAdmin', peerId: '12D3KooWA', name }, at: 1, key: `k-${name}` })

test('internal.proposeMany: every envelope checked, the bad one named; the batch is bounded', () => {
  const ok = checkParams('internal.proposeMany', { envs: [env('a'), env('b')] })
  assert.is(ok.envs.length, 2)
  assert.is(ok.envs[1].key, 'k-b')
  const bad = error(() => checkParams('internal.proposeMany', { envs: [env('a'), { cmd: { type: 'Nope' }, at: 1 }] }))
  assert.is.not(bad.kind, 'ok')
  assert.match(bad.message, /params\.envs\[1\]/)
  assert.is.not(error(() => checkParams('internal.proposeMany', { envs: Array.from({ length: MAX_FORWARD_BATCH + 1 }, (_x, i) => env(`n${i}`)) })).kind, 'ok')
  assert.is(error(() => checkParams('internal.proposeMany', { envs: 'x' })).kind, 'InvalidParams')
  assert.is(error(() => checkParams('internal.proposeMany', {})).kind, 'InvalidParams')
})

test('vm.update: ifGeneration is an optional non-negative integer', () => {
  const spec = { name: 'a', vcpus: 1, memoryMiB: 128, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'always', requires: [] }
  assert.is(checkParams('vm.update', { vm: 'a', spec, ifGeneration: 3 }).ifGeneration, 3)
  assert.is(checkParams('vm.update', { vm: 'a', spec }).ifGeneration, undefined)
  assert.is(error(() => checkParams('vm.update', { vm: 'a', spec, ifGeneration: -1 })).kind, 'InvalidParams')
  assert.is(error(() => checkParams('vm.update', { vm: 'a', spec, ifGeneration: '3' })).kind, 'InvalidParams')
})

test.run()
