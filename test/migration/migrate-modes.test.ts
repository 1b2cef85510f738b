// `vm migrate --live|--cold` outside a cluster: what the RPC accepts as a mode, and what the CLI
// signs — a node that prepares a cold move for a live request (or the reverse) is refused, so a
// node cannot turn an admin's live move into a reboot.
import { BlixardError } from '../../protocols/errors.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { METHODS } from '../../protocols/rpc.ts'
import { checkPrepared } from '../../node/cli/signing.ts'

const parse = (x: unknown): unknown => METHODS['vm.migrate'].params(x)

test('vm.migrate params: mode live or cold, nothing else, and never with cancel', () => {
  assert.equal(parse({ vm: 'web', mode: 'cold' }), { vm: 'web', mode: 'cold' })
  assert.equal(parse({ vm: 'web', mode: 'live', to: 'node2' }), { vm: 'web', to: 'node2', mode: 'live' })
  assert.equal(parse({ vm: 'web' }), { vm: 'web' })
  assert.throws(() => parse({ vm: 'web', mode: 'warm' }), (e: unknown) => e instanceof BlixardError && e.kind === 'InvalidParams' && /mode must be "live" or "cold", got "warm"/.test(e.message))
  assert.throws(() => parse({ vm: 'web', mode: 'cold', cancel: true }), (e: unknown) => e instanceof BlixardError && /does not go with params.cancel/.test(e.message))
})

test('the CLI signs a cold StartMigration only for --cold, and a live one only without it', () => {
  const live = { type: 'StartMigration' as const, vm: 'v1', target: 'n2' }
  const cold = { ...live, cold: true as const }
  checkPrepared('vm.migrate', { vm: 'web', mode: 'cold' }, cold)
  checkPrepared('vm.migrate', { vm: 'web', mode: 'live' }, live)
  checkPrepared('vm.migrate', { vm: 'web' }, live)
  assert.throws(() => { checkPrepared('vm.migrate', { vm: 'web', mode: 'live' }, cold) }, /prepared a cold move for a live one: refusing to sign it/)
  assert.throws(() => { checkPrepared('vm.migrate', { vm: 'web' }, cold) }, /prepared a cold move for a live one/)
  assert.throws(() => { checkPrepared('vm.migrate', { vm: 'web', mode: 'cold' }, live) }, /prepared a live move for a cold one/)
})

test.run()
