// network.* and volume.* params: checked by the same schema as the Raft commands they
// become, so a bad subnet or VLAN id is refused before anything is proposed.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkParams } from '../../protocols/rpc.ts'

function kind (f: () => unknown): string {
  try { f(); return 'ok' } catch (e) { return (e as { kind?: string }).kind ?? String(e) }
}

test('network.create: kinds, subnet and gateway checked', () => {
  assert.equal(checkParams('network.create', { name: 'lan', kind: { type: 'vlan', vlan: 100 }, subnet: '10.60.0.0/24' }),
    { name: 'lan', kind: { type: 'vlan', vlan: 100 }, subnet: '10.60.0.0/24' })
  assert.equal(checkParams('network.create', { name: 'ovl', kind: { type: 'vxlan', vni: 4242 }, subnet: '10.61.0.0/24', gateway: '10.61.0.1' }).gateway, '10.61.0.1')
  assert.is(kind(() => checkParams('network.create', { name: 'x', kind: { type: 'vlan', vlan: 5000 }, subnet: '10.0.0.0/24' })), 'InvalidSpec')
  assert.is(kind(() => checkParams('network.create', { name: 'x', kind: { type: 'bridge' }, subnet: '10.0.0.1/24' })), 'InvalidSpec')
  assert.is(kind(() => checkParams('network.create', { name: 'x', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', gateway: '10.0.1.1' })), 'InvalidSpec')
  assert.is(kind(() => checkParams('network.create', { name: 'x', kind: { type: 'bridge' }, subnet: '10.0.0.0/24', extra: 1 })), 'InvalidParams')
})

test('volume.*: sizes are whole GiB ≥ 1; clone names its parent', () => {
  assert.equal(checkParams('volume.create', { name: 'd', sizeGiB: 2 }), { name: 'd', sizeGiB: 2 })
  assert.is(kind(() => checkParams('volume.create', { name: 'd', sizeGiB: 0 })), 'InvalidSpec')
  assert.is(kind(() => checkParams('volume.resize', { volume: 'd', sizeGiB: 1.5 })), 'InvalidCommand', 'not a whole number: refused by the command schema')
  assert.equal(checkParams('volume.clone', { volume: 'golden', snapshot: 'v1', name: 'vm1' }), { volume: 'golden', snapshot: 'v1', name: 'vm1' })
  assert.is(kind(() => checkParams('volume.clone', { volume: 'golden', name: 'vm1' })), 'InvalidParams')
  assert.equal(checkParams('volume.snapshot', { volume: 'd', snapshot: 's' }), { volume: 'd', snapshot: 's' })
})

test.run()
