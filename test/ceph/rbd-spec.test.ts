// The parts of the RBD driver that need no cluster: argument checks, how CLI failures
// become named errors (on stderr captured from Ceph 16), JSON parsing, the kill bound.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { classifyFailure, errnoOf, summaryLine, RbdError } from '../../storage/ceph-errors.ts'
import { parseFirstJson } from '../../storage/ceph-exec.ts'
import { checkBlocklistSeconds, checkClientAddr, checkFeatures, checkName, sizeMiB } from '../../storage/rbd-spec.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { qemuRbdBlockdev, qemuRbdFilename } from '../../storage/rbd-qemu.ts'

function throwsKind (fn: () => unknown, kind: string): void {
  try {
    fn()
  } catch (e) {
    assert.instance(e, RbdError)
    assert.is((e as RbdError).kind, kind)
    return
  }
  assert.unreachable(`expected ${kind}`)
}

async function rejectsKind (p: Promise<unknown>, kind: string): Promise<RbdError> {
  try {
    await p
  } catch (e) {
    assert.instance(e, RbdError)
    assert.is((e as RbdError).kind, kind, (e as Error).message)
    return e as RbdError
  }
  assert.unreachable(`expected ${kind}`)
  throw new Error('unreachable')
}

test('names the CLI would misparse are InvalidSpec', () => {
  assert.is(checkName('image', 'vm-1.disk_0'), 'vm-1.disk_0')
  for (const bad of ['', '-rf', '.hidden', 'a/b', 'a@b', 'a b', 'x'.repeat(129), 'é']) throwsKind(() => checkName('image', bad), 'InvalidSpec')
})

test('sizes: whole MiB, > 0, bounded', () => {
  assert.is(sizeMiB(1), 1024)
  assert.is(sizeMiB(0.5), 512)
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e9, 1.0000001]) throwsKind(() => sizeMiB(bad), 'InvalidSpec')
})

test('features: known names and their dependencies', () => {
  assert.equal(checkFeatures(['layering', 'exclusive-lock']), ['layering', 'exclusive-lock'])
  throwsKind(() => checkFeatures(['layering', 'bogus']), 'InvalidSpec')
  throwsKind(() => checkFeatures(['layering', 'object-map']), 'InvalidSpec')
  throwsKind(() => checkFeatures(['exclusive-lock', 'fast-diff']), 'InvalidSpec')
})

test('client addresses as rbd lock ls prints them', () => {
  for (const ok of ['127.0.0.1:0/99564247', '10.0.0.5', '10.0.0.5:6800/123', '[::1]:0/42', 'v1:127.0.0.1:0/1']) assert.is(checkClientAddr(ok), ok)
  for (const bad of ['', 'garbage', '127.0.0.1:0/1; rm -rf /', '--help', 'client.4123']) throwsKind(() => checkClientAddr(bad), 'InvalidSpec')
  assert.is(checkBlocklistSeconds(60), 60)
  for (const bad of [0, -5, Number.NaN, 1e12]) throwsKind(() => checkBlocklistSeconds(bad), 'InvalidSpec')
})

// stderr as Ceph 16.2.15 printed it
const SAMPLES: Array<[string, number, string, string]> = [
  ['create twice', 17, 'rbd: create error: 2026-11-25T12:21:32.110+0000 7ff7e7a23380 -1 librbd: rbd image a already exists\n(17) File exists\n', 'AlreadyExists'],
  ['missing image', 2, 'rbd: error opening image nope: (2) No such file or directory\n', 'NotFound'],
  ['unprotect with clones', 16, '2026-11-25T12:21:33.718+0000 7fe5 -1 librbd::SnapshotUnprotectRequest: cannot unprotect: at least 1 child(ren)\nrbd: unprotecting snap failed: (16) Device or resource busy\n', 'InUse'],
  ['rm with snapshots', 39, 'Removing image: 0% complete...failed.\nrbd: image has snapshots - these must be deleted with \'rbd snap purge\' before the image can be removed.\n', 'InUse'],
  ['shrink', 22, 'rbd: shrinking an image is only allowed with the --allow-shrink flag\n', 'InvalidSpec'],
  ['clone unprotected', 22, 'librbd::image::CloneRequest: validate_parent: parent snapshot must be protected\nrbd: clone error: (22) Invalid argument\n', 'InvalidSpec'],
  ['no monitor (rbd)', 110, '2026-11-25T12:22:40.998+0000 7f48 0 monclient(hunting): authenticate timed out after 2\nrbd: couldn\'t connect to the cluster!\n', 'Unavailable'],
  ['no monitor (ceph)', 1, 'timed out\n', 'Unavailable'],
  ['bad blocklist address', 22, 'Invalid command: garbage not valid IPv6 address\nError EINVAL: invalid command\n', 'InvalidSpec'],
  ['blocklisted writer', 108, 'librbd::io::AioCompletion: 0x5579b0bf6830 fail: (108) Cannot send after transport endpoint shutdown\n', 'Unavailable'],
  ['unknown failure', 1, 'something odd\n', 'Internal']
]

test('CLI failures become named kinds', () => {
  for (const [what, exit, stderr, kind] of SAMPLES) assert.is(classifyFailure(exit, stderr).kind, kind, what)
  assert.is(errnoOf(1, 'Error ENOENT: pool nopool does not exist'), 2)
  assert.is(errnoOf(39, 'rbd: image has snapshots'), 39)
  assert.is(errnoOf(1, 'odd'), null)
  assert.is(summaryLine('2026 debug\nrbd: error opening image nope: (2) No such file or directory\n\n'), 'rbd: error opening image nope: (2) No such file or directory')
})

test('parseFirstJson reads the first of several values and names bad output', () => {
  assert.equal(parseFirstJson('[{"addr":"1.2.3.4:0/1","until":"x"}][]', 'bl'), [{ addr: '1.2.3.4:0/1', until: 'x' }])
  assert.equal(parseFirstJson('{"a":"]"}\n{"b":1}', 'x'), { a: ']' })
  try {
    parseFirstJson('listed 3 entries', 'bl')
    assert.unreachable('expected Internal')
  } catch (e) {
    assert.is((e as RbdError).kind, 'Internal')
  }
})

test('QEMU names for an RBD image: filename escapes, blockdev node', () => {
  assert.is(qemuRbdFilename({ pool: 'rbd', image: 'vm-1', conf: '/etc/ceph/ceph.conf' }), 'rbd:rbd/vm-1:conf=/etc/ceph/ceph.conf')
  assert.is(qemuRbdFilename({ pool: 'rbd', image: 'vm-1', snapshot: 's1', conf: '/a:b/c\\d.conf', id: 'blix', keyring: '/k' }),
    'rbd:rbd/vm-1@s1:conf=/a\\:b/c\\\\d.conf:id=blix:keyring=/k')
  throwsKind(() => qemuRbdFilename({ pool: 'rbd', image: 'a:b', conf: '/c' }), 'InvalidSpec')
  assert.equal(qemuRbdBlockdev({ pool: 'rbd', image: 'vm-1', conf: '/c', id: 'blix' }, 'd0'),
    { driver: 'rbd', 'node-name': 'd0', pool: 'rbd', image: 'vm-1', conf: '/c', user: 'blix' })
  throwsKind(() => qemuRbdBlockdev({ pool: 'rbd', image: 'vm-1', conf: '/c', keyring: '/k' }, 'd0'), 'InvalidSpec')
})

test('RbdClient: a missing CLI is Unavailable, a hung one is killed within the bound', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-rbd-spec-'))
  try {
    const missing = new RbdClient({ conf: '/nonexistent/ceph.conf', rbdBin: join(dir, 'no-such-rbd') })
    const e = await rejectsKind(missing.info('rbd', 'x'), 'Unavailable')
    assert.match(e.message, /not installed/)

    const hang = join(dir, 'hang')
    writeFileSync(hang, '#!/bin/sh\nexec sleep 30\n')
    chmodSync(hang, 0o755)
    const slow = new RbdClient({ conf: '/nonexistent/ceph.conf', rbdBin: hang, cephBin: hang, timeoutMs: 1000 })
    const t0 = performance.now()
    await Promise.all([rejectsKind(slow.info('rbd', 'x'), 'Unavailable'), rejectsKind(slow.blocklistLs(), 'Unavailable')])
    const ms = performance.now() - t0
    assert.ok(ms < 1000 + 2000 + 1500, `took ${ms} ms`)

    // checks run before any process: no CLI needed to refuse these
    await rejectsKind(missing.createImage('rbd', '-x', 1), 'InvalidSpec')
    await rejectsKind(missing.blocklistAdd('not-an-addr'), 'InvalidSpec')
    await rejectsKind(missing.resize('rbd', 'x', 0), 'InvalidSpec')
    throwsKind(() => new RbdClient({ conf: '' }), 'InvalidSpec')
    throwsKind(() => new RbdClient({ conf: '/c', id: '--help' }), 'InvalidSpec')
    throwsKind(() => new RbdClient({ conf: '/c', timeoutMs: 10 }), 'InvalidSpec')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test.run()
