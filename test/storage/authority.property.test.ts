// Property: no command from anyone but an admin changes what an admin owns. Random commands (the
// same generator as the state machine's other properties), each either unsigned, signed by a key
// holder that is not an admin, signed by a member node (for anything but its own record and a
// scheduling decision), or carrying a real admin signature taken from another command — applied to
// a cluster with VMs, a volume, a network and two nodes: the model state never changes.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import type { Command, CommandEnvelope } from '../../protocols/commands.ts'
import { authorityOf, seededSigner, signCommandSync, verifyAuth } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import { MemoryKv } from '../../storage/memory-kv.ts'
import { StateMachine, encodeEnvelope } from '../../storage/state-machine.ts'
import { commandArb } from './command-arbitraries.ts'
import { registerNode, spec } from './sm-fixtures.ts'

const admin = seededSigner(new Uint8Array(32).fill(11))
const n1 = seededSigner(new Uint8Array(32).fill(12))
const mallory = seededSigner(new Uint8Array(32).fill(13))
/** commands per generated run; runs: fast-check's default 100 (each a fresh state machine) */
const COMMANDS_PER_RUN = 20

function norm (cmd: Command): Command | null {
  const v = validateCommand(cmd)
  return v.ok ? v.cmd : null
}

function world (): { sm: StateMachine, apply: (env: CommandEnvelope) => void, at: () => number } {
  const sm = new StateMachine(new MemoryKv())
  let i = 0
  let nonce = 0
  const apply = (env: CommandEnvelope): void => { sm.apply(++i, encodeEnvelope(env)) }
  const as = (s: typeof admin, cmd: Command): CommandEnvelope => {
    const c = norm(cmd)!
    return { cmd: c, at: i, auth: signCommandSync(s, c, `setup-${++nonce}`, i + 1000) }
  }
  apply(as(n1, { type: 'AddAdmin', peerId: admin.peerId, name: 'ops' }))
  apply(as(n1, registerNode(n1.peerId, { name: 'n1' })))
  apply(as(admin, { type: 'CreateVm', id: 'v1', spec: spec('web') }))
  apply(as(admin, { type: 'CreateVm', id: 'v2', spec: spec('db') }))
  apply(as(admin, { type: 'CreateVolume', name: 'data', pool: 'rbd', sizeGiB: 1 }))
  apply(as(admin, { type: 'CreateNetwork', name: 'lan', kind: { type: 'bridge' }, subnet: '10.0.0.0/24' }))
  assert.is(sm.listVms().length, 2)
  return { sm, apply, at: () => i }
}

/** n1 may change its own record and sign scheduling decisions: those are not an admin's. */
function nodeMay (cmd: Command): boolean {
  const a = authorityOf(cmd)
  return a === 'leader' || (a === 'node' && JSON.stringify(cmd).includes(n1.peerId))
}

test('no command without an admin\'s signature over it changes the model state', () => {
  const how = fc.constantFrom('unsigned', 'mallory', 'node', 'stolen-admin-sig', 'admin-sig-wrong-signer')
  fc.assert(fc.property(fc.array(fc.tuple(commandArb(), how, fc.nat()), { minLength: 1, maxLength: COMMANDS_PER_RUN }), (cmds) => {
    const w = world()
    const before = w.sm.stateHash()
    let n = 0
    for (const [raw, mode, salt] of cmds) {
      const cmd = norm(raw)
      if (cmd === null) continue
      const until = w.at() + 100
      const nonce = `p-${++n}-${salt}`
      let env: CommandEnvelope
      switch (mode) {
        case 'unsigned': env = { cmd, at: 1 }; break
        case 'mallory': env = { cmd, at: 1, auth: signCommandSync(mallory, cmd, nonce, until) }; break
        case 'node':
          if (nodeMay(cmd)) continue
          env = { cmd, at: 1, auth: signCommandSync(n1, cmd, nonce, until) }
          break
        case 'stolen-admin-sig': {
          // an admin's real signature, over some other command
          const other = norm({ type: 'DeleteVm', id: `x${salt}` })!
          env = { cmd, at: 1, auth: signCommandSync(admin, other, nonce, until) }
          break
        }
        default: {
          // mallory's signature presented as the admin's
          const a = signCommandSync(mallory, cmd, nonce, until)
          env = { cmd, at: 1, auth: { ...a, signer: admin.peerId } }
        }
      }
      w.apply(env)
      assert.is(w.sm.stateHash(), before, `${mode} ${cmd.type} changed the state`)
    }
    assert.equal(w.sm.listAdmins().map((a) => a.peerId), [admin.peerId])
  }))
})

test('the same generator, signed by the admin, does change the state (so the property above can fail)', () => {
  const w = world()
  let changed = 0
  let n = 0
  for (const raw of fc.sample(commandArb(), { numRuns: 200, seed: 7 })) {
    const cmd = norm(raw)
    if (cmd === null) continue
    const before = w.sm.stateHash()
    w.apply({ cmd, at: 1, auth: signCommandSync(admin, cmd, `s-${++n}`, w.at() + 100) })
    if (w.sm.stateHash() !== before) changed++
  }
  console.log(`  admin-signed random commands that changed the state: ${changed} of ${n}`)
  assert.ok(changed >= 10, `only ${changed} of ${n}`)
})

test('a signature verified once (the leader, before proposing) is cached for its own bytes only: any other command, signer, nonce or bound under it is refused', () => {
  const admin = seededSigner(new Uint8Array(32).fill(7))
  const other = seededSigner(new Uint8Array(32).fill(8))
  const v = validateCommand({ type: 'SetVmDesiredState', id: 'v1', desired: 'stopped' })
  const w = validateCommand({ type: 'SetVmDesiredState', id: 'v1', desired: 'running' })
  if (!v.ok || !w.ok) throw new Error('bad fixture')
  const auth = signCommandSync(admin, v.cmd, 'n1', 10)
  assert.ok(verifyAuth(v.cmd, auth))
  assert.ok(verifyAuth(v.cmd, auth), 'again, from the cache')
  assert.not.ok(verifyAuth(w.cmd, auth), 'another command under the same signature')
  assert.not.ok(verifyAuth(v.cmd, { ...auth, nonce: 'n2' }), 'another nonce')
  assert.not.ok(verifyAuth(v.cmd, { ...auth, until: 11 }), 'another bound')
  assert.not.ok(verifyAuth(v.cmd, { ...auth, signer: other.peerId }), 'another signer')
  assert.ok(verifyAuth(v.cmd, auth), 'the original still verifies')
})

test.run()
