import '../../node/polyfill.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'

test('Promise.withResolvers exists and resolves', async () => {
  const P = Promise as unknown as { withResolvers: <T>() => { promise: Promise<T>, resolve: (v: T) => void, reject: (e: unknown) => void } }
  assert.type(P.withResolvers, 'function')
  const r = P.withResolvers<number>()
  r.resolve(7)
  assert.is(await r.promise, 7)
  const e = P.withResolvers<number>()
  e.reject(new Error('x'))
  try { await e.promise; assert.unreachable('should reject') } catch (err) { assert.instance(err, Error) }
})

test.run()
