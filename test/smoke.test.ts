import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encode, decode } from 'cbor-x'

test('cbor round-trips', () => {
  assert.equal(decode(encode({ a: 1, b: [1, 2] })), { a: 1, b: [1, 2] })
})

test.run()
