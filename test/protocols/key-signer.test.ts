// keySigner (protocols/auth.ts): a libp2p Ed25519 key signs through libsodium with the very
// signatures its own sign makes (Ed25519 is deterministic), which verifyAuth accepts for its peer
// id and for no other; a key of another type signs through its own sign.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { keySigner, signCommand, verifyAuth } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import type { Command } from '../../protocols/commands.ts'

function cmd (name: string, peerId: string): Command {
  const v = validateCommand({ type: 'AddAdmin', peerId, name })
  if (!v.ok) throw new Error(v.error.message)
  return v.cmd
}

test('an Ed25519 key: the same signatures as its own sign, accepted for its peer id only', async () => {
  const key = await generateKeyPair('Ed25519')
  const other = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  const signer = keySigner(id, key)
  for (const data of [new Uint8Array(0), new Uint8Array(300).fill(7), new TextEncoder().encode('blixard')]) {
    const fast = await signer.sign(data)
    assert.equal(Buffer.from(fast), Buffer.from(await key.sign(data)))
  }
  const c = cmd('a', id)
  const auth = await signCommand(signer, c, 'n1', 100)
  assert.ok(verifyAuth(c, auth))
  assert.not.ok(verifyAuth(cmd('b', id), auth), 'another command')
  assert.not.ok(verifyAuth(c, { ...auth, signer: peerIdFromPrivateKey(other).toString() }), 'claimed by another peer id')
  // the signer keeps its own copy: the key's bytes changing later does not change its signatures
  const before = await signer.sign(new Uint8Array(3))
  key.raw.fill(0)
  assert.equal(Buffer.from(await signer.sign(new Uint8Array(3))), Buffer.from(before))
})

test('a key of another type signs through its own sign', async () => {
  const key = await generateKeyPair('secp256k1')
  const id = peerIdFromPrivateKey(key).toString()
  const data = new Uint8Array(32).fill(1)
  const sig = await keySigner(id, key).sign(data)
  assert.ok(await key.publicKey.verify(data, sig))
})

test.run()
