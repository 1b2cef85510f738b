// scripts/ceph.sh on a cluster of its own: `up` twice is a no-op, `status` tells up from
// down, and `down` then `up` restarts the same cluster with its images.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { RbdClient, RbdError } from '../../storage/rbd.ts'
import { GIB } from '../../storage/rbd-spec.ts'
import { startTestCeph } from './single-host-ceph.ts'
import type { TestCeph } from './single-host-ceph.ts'

let ceph: TestCeph

test.before(async () => {
  ceph = await startTestCeph()
})

test.after(async () => {
  if (ceph != null) await ceph.destroy()
})

test('up on a running cluster is a quick no-op; status is 0', async () => {
  const again = await ceph.script('up')
  assert.is(again.code, 0, again.out)
  assert.match(again.out, /already up/)
  assert.not.match(again.out, /bootstrap/)
  const status = await ceph.script('status')
  assert.is(status.code, 0, status.out)
  assert.match(status.out, /mon\.a running/)
  assert.match(status.out, /osd\.0 running/)
})

test('down then up: the same cluster comes back with its images', async () => {
  const rbd = new RbdClient({ conf: ceph.conf, timeoutMs: 20_000 })
  await rbd.createImage('rbd', 'survivor', 1)
  const before = await rbd.info('rbd', 'survivor')

  const down = await ceph.script('down')
  assert.is(down.code, 0, down.out)
  const status = await ceph.script('status')
  assert.is.not(status.code, 0, 'status fails while the daemons are down')
  assert.match(status.out, /mon\.a stopped/)
  try {
    await new RbdClient({ conf: ceph.conf, timeoutMs: 2000 }).info('rbd', 'survivor')
    assert.unreachable('a stopped cluster answered')
  } catch (e) {
    assert.instance(e, RbdError)
    assert.is((e as RbdError).kind, 'Unavailable')
  }

  const up = await ceph.script('up')
  assert.is(up.code, 0, up.out)
  assert.match(up.out, /restarting/)
  console.log(`ceph: restart after down took ${up.seconds.toFixed(1)} s`)
  const after = await rbd.info('rbd', 'survivor')
  assert.is(after.sizeBytes, GIB)
  assert.is(after.id, before.id, 'the same image, not a new one')
})

test.run()
