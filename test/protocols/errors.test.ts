// toBlixError: what any thrown value is answered as over RPC. A BlixardError as it is; a QEMU or
// host-network error as the protocol kind its own kind maps onto; a kind-named object keeps its
// kind and leader hint; anything else is Internal.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BlixardError, toBlixError } from '../../protocols/errors.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { NetError } from '../../node/net-host/errors.ts'

test('subsystem errors travel as their protocol kind, not as Internal or their own name', () => {
  assert.equal(toBlixError(new QemuError('AlreadyRunning', 'vm-1 is running')), { kind: 'Conflict', message: 'vm-1 is running' })
  assert.equal(toBlixError(new QemuError('QmpClosed', 'qemu exited')), { kind: 'Unavailable', message: 'qemu exited' })
  assert.equal(toBlixError(new QemuError('SpawnFailed', 'no qemu')), { kind: 'Internal', message: 'no qemu' })
  assert.equal(toBlixError(new NetError('Unavailable', 'no uplink')), { kind: 'Unavailable', message: 'no uplink' })
  assert.equal(toBlixError(new NetError('CommandFailed', 'ip exited 2')), { kind: 'Internal', message: 'ip exited 2' })
  assert.is(new QemuError('Timeout', 'x').kind, 'Timeout', 'callers still tell the subsystem kinds apart')
})

test('BlixardError as it is, kind-named objects keep kind and leader, the rest is Internal', () => {
  assert.equal(toBlixError(new BlixardError('NotLeader', 'ask n2', 'n2')), { kind: 'NotLeader', message: 'ask n2', leader: 'n2' })
  assert.equal(toBlixError({ kind: 'NotLeader', message: 'raft', leaderHint: 'n3' }), { kind: 'NotLeader', message: 'raft', leader: 'n3' })
  assert.equal(toBlixError(new Error('boom')), { kind: 'Internal', message: 'boom' })
  assert.equal(toBlixError('text'), { kind: 'Internal', message: 'text' })
})

test.run()
