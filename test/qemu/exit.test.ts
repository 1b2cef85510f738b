import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { classifyExit, type ExitFacts } from '../../node/qemu/exit.ts'

const base: ExitFacts = { code: null, signal: null, requested: null, forced: false, shutdownReason: null, guestPanicked: false, ready: true, bootFailure: null, stderrTail: '' }
const c = (f: Partial<ExitFacts>) => classifyExit({ ...base, ...f }, 1000)

test('requested stops and kills are stops, whatever the signal', () => {
  assert.equal(c({ requested: 'stop', code: 0, shutdownReason: 'guest-shutdown' }), { outcome: 'stopped', reason: 'stopped on request', code: 0, signal: null, requested: 'stop', shutdownReason: 'guest-shutdown', at: 1000 })
  assert.is(c({ requested: 'stop', forced: true, signal: 'SIGKILL' }).reason, 'killed after the power-down timeout')
  assert.is(c({ requested: 'kill', signal: 'SIGKILL' }).outcome, 'stopped')
})

test('an unrequested signal is a crash naming the signal', () => {
  const r = c({ signal: 'SIGKILL' })
  assert.is(r.outcome, 'crashed')
  assert.is(r.reason, 'qemu killed by SIGKILL')
})

test('guest power-off is a stop; a guest reset (panic under -no-reboot) is a crash even with code 0', () => {
  assert.is(c({ code: 0, shutdownReason: 'guest-shutdown' }).reason, 'guest powered off')
  assert.is(c({ code: 0, shutdownReason: 'guest-shutdown' }).outcome, 'stopped')
  const reset = c({ code: 0, shutdownReason: 'guest-reset' })
  assert.is(reset.outcome, 'crashed')
  assert.match(reset.reason, /guest reset/)
  assert.is(c({ code: 0, shutdownReason: 'host-signal' }).outcome, 'crashed')
  assert.is(c({ code: 0, guestPanicked: true }).outcome, 'crashed')
})

test('non-zero exit before readiness names qemu stderr; boot failure wins', () => {
  const r = c({ code: 1, ready: false, stderrTail: 'could not open disk' })
  assert.is(r.outcome, 'crashed')
  assert.is(r.reason, 'qemu exited with code 1 before the guest was ready: could not open disk')
  assert.is(c({ signal: 'SIGKILL', ready: false, bootFailure: 'no marker' }).reason, 'no marker')
})

test('adopted process (status unknown): clean shutdown event means stopped, otherwise crashed', () => {
  assert.is(c({ shutdownReason: 'guest-shutdown' }).outcome, 'stopped')
  assert.is(c({}).outcome, 'crashed')
  assert.match(c({}).reason, /status unknown/)
})

test.run()
