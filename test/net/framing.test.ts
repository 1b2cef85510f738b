import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { FrameDecoder, ListTooLarge, decodePayload, encodeFrame, encodeListFrame, encodeVarint } from '../../protocols/framing.ts'
import { BlixardError, isWireError } from '../../protocols/errors.ts'

function split (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map(c => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const p of points) { out.push(bytes.subarray(prev, p)); prev = p }
  out.push(bytes.subarray(prev))
  return out
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let off = 0
  for (const p of parts) { out.set(p, off); off += p.byteLength }
  return out
}

test('frames survive any chunking', () => {
  const value = fc.oneof(
    // '__proto__' keys are renamed on decode on purpose (next test), so they cannot round-trip
    fc.record({ id: fc.nat(), method: fc.string(), params: fc.dictionary(fc.string().filter(k => k !== '__proto__'), fc.integer()) }),
    fc.array(fc.record({ term: fc.nat(), data: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 5 })
  )
  fc.assert(fc.property(fc.array(value, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (values, cuts) => {
    const stream = concat(values.map(v => encodeFrame(v, 1 << 20)))
    const dec = new FrameDecoder(1 << 20)
    const got: unknown[] = []
    for (const c of split(stream, cuts)) for (const f of dec.push(c)) got.push(decodePayload(f))
    assert.is(got.length, values.length)
    assert.is(dec.buffered(), 0)
    // byte strings come back as Buffers: compare through a second encoding
    assert.equal(concat(got.map(v => encodeFrame(v, 1 << 20))), stream)
  }), { numRuns: 200 })
})

test('varint prefix round-trips at boundaries', () => {
  for (const n of [0, 1, 127, 128, 16383, 16384, 2 ** 21, 2 ** 28 - 1]) {
    const dec = new FrameDecoder(2 ** 30)
    const v = encodeVarint(n)
    assert.equal(dec.push(v), n === 0 ? [new Uint8Array(0)] : [])
    assert.is(dec.buffered(), 0)
  }
})

test('an oversized declared length is TooLarge before the body arrives', () => {
  const dec = new FrameDecoder(1000)
  try {
    dec.push(encodeVarint(1001))
    assert.unreachable('should throw')
  } catch (err) {
    assert.ok(isWireError(err), String(err))
    assert.is((err as BlixardError).kind, 'TooLarge')
  }
  // and stays failed
  assert.throws(() => dec.push(new Uint8Array([0])), (e: unknown) => isWireError(e))
})

test('encodeFrame refuses a value over the limit', () => {
  try { encodeFrame(new Uint8Array(2000), 1000); assert.unreachable() } catch (err) {
    assert.is((err as BlixardError).kind, 'TooLarge')
  }
})

test('overlong and non-minimal varints are BadMessage', () => {
  for (const bad of [[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0x80, 0x00]]) {
    try { new FrameDecoder(1 << 30).push(Uint8Array.from(bad)); assert.unreachable() } catch (err) {
      assert.is((err as BlixardError).kind, 'BadMessage')
    }
  }
})

test('random bytes only ever raise a wire error', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
    const dec = new FrameDecoder(4096)
    try {
      for (const f of dec.push(bytes)) decodePayload(f)
    } catch (err) {
      assert.ok(isWireError(err), String(err))
    }
  }), { numRuns: 2000 })
})

test('bad CBOR and trailing bytes are BadMessage', () => {
  for (const b of [[0xff], [0x1c], [0x01, 0x02], [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]]) {
    try { decodePayload(Uint8Array.from(b)); assert.unreachable(`accepted ${b}`) } catch (err) {
      assert.ok(isWireError(err), String(err))
      assert.is((err as BlixardError).kind, 'BadMessage')
    }
  }
})

test('__proto__ keys cannot pollute', () => {
  // map {"__proto__": {"polluted": 1}}
  const enc = Uint8Array.from([0xa1, 0x69, ...Buffer.from('__proto__'), 0xa1, 0x68, ...Buffer.from('polluted'), 0x01])
  const v = decodePayload(enc) as Record<string, unknown>
  assert.is(({} as Record<string, unknown>).polluted, undefined)
  assert.is(Object.getPrototypeOf(v), Object.prototype)
})

test('a list frame built item by item has the bytes of the whole frame encoded at once', () => {
  const item = fc.oneof(fc.record({ id: fc.string(), n: fc.integer(), tags: fc.array(fc.string(), { maxLength: 4 }) }), fc.string(), fc.integer(), fc.constant(null))
  // lengths around each CBOR array header size (<24, <256, <65536)
  fc.assert(fc.property(fc.nat(), fc.array(item, { maxLength: 300 }), fc.constantFrom(0, 23, 24, 255, 256), (id, items, pad) => {
    const list = [...items, ...Array.from({ length: pad }, (_, i) => i)]
    const whole = encodeFrame({ id, ok: true, result: list }, 1 << 20)
    const built = encodeListFrame({ id, ok: true, result: null }, 'result', list, 1 << 20, 'test')
    assert.equal(built, whole)
  }), { numRuns: 200 })
  const big = Array.from({ length: 70_000 }, (_, i) => i % 7)
  assert.equal(encodeListFrame({ id: 1, ok: true, result: null }, 'result', big, 1 << 20, 'test'), encodeFrame({ id: 1, ok: true, result: big }, 1 << 20))
})

test('a list frame past its limit stops drawing items and names how far it got', () => {
  let drawn = 0
  const endless = (function * () { for (;;) { drawn++; yield { id: `vm-${drawn}`, pad: 'x'.repeat(1000) } } })()
  const err = (() => { try { encodeListFrame({ id: 7, ok: true, result: null }, 'result', endless, 64 * 1024, 'vm.list') } catch (e) { return e } })()
  assert.instance(err, ListTooLarge)
  assert.instance(err, BlixardError)
  const e = err as ListTooLarge
  assert.is(e.kind, 'TooLarge')
  assert.ok(e.items >= 60 && e.items < 66, `${e.items} items fit in 64 KiB`)
  assert.is(drawn, e.items + 1, 'not one item drawn past the one that did not fit')
  assert.match(e.message, /^vm\.list: the answer passed 65536 bytes after \d+ items/)
  assert.throws(() => encodeListFrame({ id: 1, result: null, ok: true }, 'result', [], 1000, 'x'), /last key/)
})

test.run()
