// The dashboard page signs admin commands itself (node/dashboard-signing.ts): its CBOR must be the
// nodes' byte for byte (else every signature fails on apply), its peer id libp2p's, and a
// signature it makes must pass the nodes' own check. The page's text is run here in Node.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPairSync, sign } from 'node:crypto'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { PAGE_SIGNING_JS } from '../../node/dashboard-signing.ts'
import { encodeCbor } from '../../storage/codec.ts'
import { signingBytes, verifyAuth } from '../../protocols/auth.ts'
import { validateCommand } from '../../protocols/command-schema.ts'
import type { Command } from '../../protocols/commands.ts'

interface Page {
  cborEncode: (v: unknown) => Uint8Array
  peerIdOfEd25519: (raw: Uint8Array) => string
  signingBytes: (cmd: unknown, signer: string, nonce: string, until: number) => Uint8Array
}
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the page's own text, run as the browser runs it
const page = new Function(`${PAGE_SIGNING_JS}; return { cborEncode, peerIdOfEd25519, signingBytes }`)() as Page
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

test('the page encodes what an action command holds exactly as the nodes do', () => {
  const values: unknown[] = [null, true, false, 0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -24, -25, -256, -257, -65537, -(2 ** 32),
    '', 'a', 'é', '日本', [], [1, [2, null]], {}, { type: 'SetVmDesiredState', id: 'x', desired: 'running' }]
  for (let n = 0; n < 300; n += 7) values.push('x'.repeat(n), 'é'.repeat(n))
  const big: Record<string, number> = {}
  for (let i = 0; i < 40; i++) big[`k${i}`] = i
  values.push(big)
  for (const v of values) assert.is(hex(page.cborEncode(v)), hex(encodeCbor(v)), JSON.stringify(v))
  // what it cannot encode as the nodes do, it refuses to sign
  assert.throws(() => page.cborEncode(1.5), /cannot sign the number/)
  assert.throws(() => page.cborEncode(2 ** 33), /cannot sign the number/)
})

test('the page signs the bytes protocols/auth.ts verifies, for each action\'s validated command', () => {
  const cmds: unknown[] = [
    { type: 'SetVmDesiredState', id: '6f1c2f0e-8a0e-4c55-9a57-6a1f3b2d9e10', desired: 'stopped' },
    { type: 'UpdateNode', id: '12D3KooWGzh3s3t1kq6UcM6zjqX2uYhZTfJ4Hq7jQkQv9ZpQ5S7x', state: 'draining' },
    { type: 'StartMigration', vm: '6f1c2f0e-8a0e-4c55-9a57-6a1f3b2d9e10', target: '12D3KooWGzh3s3t1kq6UcM6zjqX2uYhZTfJ4Hq7jQkQv9ZpQ5S7x', cold: true }
  ]
  for (const raw of cmds) {
    const v = validateCommand(raw)
    assert.ok(v.ok, JSON.stringify(raw))
    // the command as JSON (what the page gets from /api/prepare) encodes as the validated one does
    const viaJson = JSON.parse(JSON.stringify(v.cmd)) as Command
    assert.is(hex(page.signingBytes(viaJson, 'signer', 'nonce-1', 123456)), hex(signingBytes(v.cmd, 'signer', 'nonce-1', 123456)))
  }
})

test('the page derives the libp2p peer id of its Ed25519 key, and what that key signs over the page\'s bytes verifies', () => {
  const cmd = { type: 'SetVmDesiredState', id: '6f1c2f0e-8a0e-4c55-9a57-6a1f3b2d9e10', desired: 'running' } as Command
  for (let i = 0; i < 5; i++) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const raw = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32))
    const signer = page.peerIdOfEd25519(raw)
    assert.is(signer, peerIdFromPublicKey(publicKeyFromRaw(raw)).toString())
    const sig = new Uint8Array(sign(null, page.signingBytes(cmd, signer, `n${i}`, 99), privateKey))
    assert.ok(verifyAuth(cmd, { signer, nonce: `n${i}`, until: 99, sig }))
    assert.not.ok(verifyAuth(cmd, { signer, nonce: `n${i}`, until: 100, sig }), 'bound to its until')
  }
  assert.throws(() => page.peerIdOfEd25519(new Uint8Array(31)), /32 bytes/)
})

test.run()
