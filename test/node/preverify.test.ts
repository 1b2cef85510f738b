// Signatures checked ahead on a worker thread (node/preverify.ts) only warm a cache:
// the synchronous check where a command is decided gives the same answer with or without them, a
// signature moved onto other bytes is refused both ways and poisons nothing, and the number of
// checks in flight is bounded.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Command } from '../../protocols/commands.ts'
import { seededSigner, signCommandSync, signingBytesEncoded, verifyAuth } from '../../protocols/auth.ts'
import { MAX_PREVERIFY_IN_FLIGHT, PREVERIFY_INLINE_GAP_MS, PREVERIFY_MIN_WORKER_BATCH, preverifyAuth, preverifyReady, setPreverifyInlineGap, setPreverifyMinBatch } from '../../node/preverify.ts'
import { validateCommand } from '../../protocols/command-schema.ts'

const admin = seededSigner(new Uint8Array(32).fill(7))
const other = seededSigner(new Uint8Array(32).fill(8))

function cmd (desired: 'running' | 'stopped', id = 'v1'): Command {
  const v = validateCommand({ type: 'SetVmDesiredState', id, desired })
  if (!v.ok) throw new Error(v.error.message)
  return v.cmd
}

// the head start on its own; the low-rate and small-batch shortcuts have their own test at the end
setPreverifyInlineGap(Infinity)
setPreverifyMinBatch(1)

test('until the worker is up nothing is checked ahead (null): the decision stays with the synchronous check', async () => {
  const c = cmd('running', 'cold')
  const a = signCommandSync(admin, c, 'cold-1', 10)
  assert.is(await preverifyAuth(c, a), null)
  assert.is(verifyAuth(c, a), true)
  await preverifyReady()
})

test('a good signature verified ahead is still good where it is decided', async () => {
  const c = cmd('running')
  const a = signCommandSync(admin, c, 'good-1', 10)
  assert.is(await preverifyAuth(c, a), true)
  assert.is(verifyAuth(c, a), true)
  // and a second head start answers at once from the cache
  assert.is(await preverifyAuth(c, a), true)
})

test('the very objects checked ahead are a lookup where decided (no signing bytes encoded again); equal copies are checked against the bytes', async () => {
  const c = cmd('running', 'pair')
  const a = signCommandSync(admin, c, 'pair-1', 10)
  assert.is(await preverifyAuth(c, a), true)
  const n = signingBytesEncoded()
  assert.is(verifyAuth(c, a), true)
  assert.is(signingBytesEncoded() - n, 0, 'the pair the worker checked needs no encoding')
  // a copy (as a command decoded from the log is) encodes its bytes and finds them good
  const copy = structuredClone(c)
  assert.is(verifyAuth(copy, { ...a }), true)
  assert.is(signingBytesEncoded() - n, 1)
  // and another command with this auth object is not vouched for by it
  assert.is(verifyAuth(cmd('stopped', 'pair'), a), false)
})

test('a signature carried onto another command is refused ahead and where it is decided, and does not poison the first', async () => {
  const c = cmd('running')
  const a = signCommandSync(admin, c, 'moved-1', 10)
  const forged = cmd('stopped')
  assert.is(await preverifyAuth(forged, a), false)
  assert.is(verifyAuth(forged, a), false)
  // the same signature over the bytes it was made for is still good, before and after
  assert.is(await preverifyAuth(c, a), true)
  assert.is(verifyAuth(forged, a), false, 'a cached good signature must not vouch for other bytes')
  // nor for another signer claiming it
  assert.is(verifyAuth(c, { ...a, signer: other.peerId }), false)
})

test('a corrupted signature, a wrong length and an unusable signer are refused ahead and where decided', async () => {
  const c = cmd('running')
  const a = signCommandSync(admin, c, 'bad-1', 10)
  const flipped = new Uint8Array(a.sig)
  flipped[5] ^= 1
  assert.is(await preverifyAuth(c, { ...a, sig: flipped }), false)
  assert.is(verifyAuth(c, { ...a, sig: flipped }), false)
  assert.is(await preverifyAuth(c, { ...a, sig: a.sig.subarray(0, 63) }), false)
  assert.is(await preverifyAuth(c, { ...a, signer: 'not-a-peer-id' }), false)
})

test('checks in flight are bounded: past the bound nothing is started (null), and the decision is unaffected', async () => {
  const c = cmd('running')
  const many = Array.from({ length: MAX_PREVERIFY_IN_FLIGHT + 5 }, (_, i) => signCommandSync(admin, c, `flood-${i}`, 10))
  const started = many.map(async (a) => await preverifyAuth(c, a))
  const answers = await Promise.all(started)
  assert.is(answers.filter((x) => x === true).length, MAX_PREVERIFY_IN_FLIGHT)
  assert.is(answers.filter((x) => x === null).length, 5)
  // the ones left out are decided by the synchronous check as before
  for (const a of many.slice(-5)) assert.is(verifyAuth(c, a), true)
})

test('at a low rate a lone signature, and a small batch, are left to the synchronous check (no thread round trip); a big batch goes to the worker', async () => {
  setPreverifyInlineGap(PREVERIFY_INLINE_GAP_MS)
  setPreverifyMinBatch(PREVERIFY_MIN_WORKER_BATCH)
  try {
    await preverifyReady()
    const c = cmd('running', 'rate')
    await new Promise((resolve) => setTimeout(resolve, PREVERIFY_INLINE_GAP_MS + 5))
    const lone = signCommandSync(admin, c, 'lone-1', 10)
    assert.is(await preverifyAuth(c, lone), null, 'lone: checked where decided')
    assert.is(verifyAuth(c, lone), true)
    const small = Array.from({ length: 4 }, (_, i) => signCommandSync(admin, c, `small-${i}`, 10))
    const smallAnswers = await Promise.all(small.map(async (a) => await preverifyAuth(c, a)))
    assert.ok(smallAnswers.every((x) => x === null), `a small batch is checked where decided: ${JSON.stringify(smallAnswers)}`)
    for (const a of small) assert.is(verifyAuth(c, a), true)
    const burst = Array.from({ length: 2 * PREVERIFY_MIN_WORKER_BATCH }, (_, i) => signCommandSync(admin, c, `burst-${i}`, 10))
    const answers = await Promise.all(burst.map(async (a) => await preverifyAuth(c, a)))
    assert.ok(answers.slice(1).every((x) => x === true), `after the first, a big batch is checked ahead: ${JSON.stringify(answers)}`)
  } finally { setPreverifyInlineGap(Infinity); setPreverifyMinBatch(1) }
})

test.run()
