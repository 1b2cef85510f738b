// The one logger: level filtering, error fields, and the retired level variables being named
// (not silently obeyed) when set.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createLogger, errFields, recordingLogger } from '../../node/log.ts'
import { BlixardError } from '../../protocols/errors.ts'

test('a level drops what is below it; child fields are kept', () => {
  const lines: string[] = []
  const log = createLogger({ node: 'n1' }, { level: 'warn', write: (l) => lines.push(l) })
  log.info('dropped')
  log.child({ component: 'net' }).warn('kept', { peer: 'p' })
  assert.is(lines.length, 1)
  const rec = JSON.parse(lines[0])
  assert.equal([rec.level, rec.msg, rec.node, rec.component, rec.peer], ['warn', 'kept', 'n1', 'net', 'p'])
})

test('errFields names an error by its kind', () => {
  assert.equal(errFields(new BlixardError('NotFound', 'no vm x')), { error: 'NotFound', message: 'no vm x' })
  assert.equal(errFields(new TypeError('t')), { error: 'TypeError', message: 't' })
  const { log, records } = recordingLogger()
  log.debug('rpc.stream.closed', errFields(new Error('reset')))
  assert.equal(records, [{ level: 'debug', msg: 'rpc.stream.closed', fields: { ts: records[0].fields.ts, error: 'Error', message: 'reset' } }])
})

test('BLIXARD_LOG_LEVEL sets the default level; BLIXARD_LOG and BLIXARD_DEBUG are named as ignored', () => {
  const saved = { ...process.env }
  try {
    process.env.BLIXARD_LOG_LEVEL = 'error'
    process.env.BLIXARD_DEBUG = '1'
    const lines: string[] = []
    const log = createLogger({}, { write: (l) => lines.push(l) })
    log.warn('dropped')
    log.error('kept')
    assert.is(lines.length, 2)
    assert.equal(JSON.parse(lines[0]).ignored, ['BLIXARD_DEBUG'])
    assert.is(JSON.parse(lines[0]).use, 'BLIXARD_LOG_LEVEL')
    assert.is(JSON.parse(lines[1]).msg, 'kept')
  } finally {
    for (const k of ['BLIXARD_LOG_LEVEL', 'BLIXARD_DEBUG']) if (saved[k] === undefined) Reflect.deleteProperty(process.env, k)
  }
})

test.run()
