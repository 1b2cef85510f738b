// RbdClient against a real single-host Ceph 16 that this file starts (scripts/ceph.sh) and
// removes: volume lifecycle, named errors, bytes through librbd (rbd import/export and QEMU's
// rbd driver via qemu-io), fencing a lock holder.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { RbdClient, RbdError } from '../../storage/rbd.ts'
import { GIB, MIB } from '../../storage/rbd-spec.ts'
import { qemuRbdBlockdev, qemuRbdFilename } from '../../storage/rbd-qemu.ts'
import { freeMonPort, startTestCeph } from './single-host-ceph.ts'
import type { TestCeph } from './single-host-ceph.ts'

const POOL = 'rbd'
let ceph: TestCeph
let rbd: RbdClient
const children: ChildProcess[] = []

async function rejectsKind (p: Promise<unknown>, kind: string, message?: RegExp): Promise<RbdError> {
  try {
    await p
  } catch (e) {
    assert.instance(e, RbdError, String(e))
    assert.is((e as RbdError).kind, kind, (e as Error).message)
    if (message != null) assert.match((e as Error).message, message)
    return e as RbdError
  }
  assert.unreachable(`expected ${kind}`)
  throw new Error('unreachable')
}

function rbdCli (args: string[]): Promise<{ code: number, stderr: string }> {
  return new Promise((resolve) => {
    execFile('rbd', ['--conf', ceph.conf, '--client-mount-timeout', '10', ...args], { timeout: 30_000 }, (err, _out, stderr) => {
      resolve({ code: err == null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stderr })
    })
  })
}

const MISSING_QEMU_IO = 'qemu-io could not run: scripts/setup.sh installs it (qemu-utils, qemu-block-extra)'

function qemuIo (args: string[], raw = true): Promise<{ code: number, out: string }> {
  return new Promise((resolve) => {
    execFile('qemu-io', [...(raw ? ['-f', 'raw'] : []), ...args], { timeout: 30_000 }, (err, out, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') { resolve({ code: -1, out: MISSING_QEMU_IO }); return }
      resolve({ code: err == null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, out: `${out}${stderr}` })
    })
  })
}

/** qemu-io in interactive mode: commands on stdin, one image held open throughout. */
function startQemuIo (file: string): { send: (cmd: string) => void, waitOutput: (re: RegExp, ms: number) => Promise<void>, output: () => string, kill: () => void, exited: Promise<number | null> } {
  const proc = spawn('qemu-io', ['-f', 'raw', file], { stdio: ['pipe', 'pipe', 'pipe'] })
  children.push(proc)
  let out = ''
  proc.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  proc.on('error', (e) => { out += `${MISSING_QEMU_IO} (${e.message})` })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  return {
    send: (cmd) => { proc.stdin?.write(`${cmd}\n`) },
    waitOutput: async (re, ms) => {
      await waitFor(`qemu-io output ${String(re)} (so far: ${JSON.stringify(out.slice(-300))})`, ms, async () => re.test(out) ? true : null)
    },
    output: () => out,
    kill: () => { proc.kill('SIGKILL') },
    exited
  }
}

/** A long-running librbd writer: it takes the image's exclusive lock on its first write. */
function startWriter (image: string): { proc: ChildProcess, exited: Promise<{ code: number | null, stderr: string }> } {
  const proc = spawn('rbd', ['--conf', ceph.conf, '--client-mount-timeout', '10', 'bench', '--io-type', 'write',
    '--io-size', '4K', '--io-threads', '1', '--io-total', '10G', '--io-pattern', 'rand', `${POOL}/${image}`],
  { stdio: ['ignore', 'ignore', 'pipe'] })
  children.push(proc)
  let stderr = ''
  proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<{ code: number | null, stderr: string }>((resolve) => {
    proc.on('exit', (code) => resolve({ code, stderr }))
  })
  return { proc, exited }
}

async function waitFor<T> (what: string, ms: number, fn: () => Promise<T | null>): Promise<T> {
  const end = performance.now() + ms
  for (;;) {
    const v = await fn()
    if (v != null) return v
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
    p.then((v) => { clearTimeout(t); resolve(v) }, (e: unknown) => { clearTimeout(t); reject(e) })
  })
}

test.before(async () => {
  ceph = await startTestCeph()
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
})

test.after(async () => {
  for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
  if (ceph != null) await ceph.destroy()
})

test('cluster: healthy, start time printed', async () => {
  const h = await rbd.health()
  assert.ok(['HEALTH_OK', 'HEALTH_WARN'].includes(h.status), h.status)
  assert.ok(ceph.startSeconds > 0)
})

test('volume lifecycle: create, info, list, grow, no silent shrink', async () => {
  const info = await rbd.createImage(POOL, 'vol-a', 1)
  assert.is(info.name, 'vol-a')
  assert.is(info.sizeBytes, GIB)
  assert.ok(info.features.includes('layering') && info.features.includes('exclusive-lock'), info.features.join(','))
  assert.is(info.parent, null)
  await rejectsKind(rbd.createImage(POOL, 'vol-a', 1), 'AlreadyExists', /exists/)
  assert.ok((await rbd.list(POOL)).some((e) => e.name === 'vol-a' && e.sizeBytes === GIB))
  assert.ok(await rbd.exists(POOL, 'vol-a'))

  assert.is((await rbd.resize(POOL, 'vol-a', 2)).sizeBytes, 2 * GIB)
  await rejectsKind(rbd.resize(POOL, 'vol-a', 1), 'InvalidSpec', /shrink/)
  assert.is((await rbd.info(POOL, 'vol-a')).sizeBytes, 2 * GIB)
  assert.is((await rbd.resize(POOL, 'vol-a', 1.5, { allowShrink: true })).sizeBytes, 1.5 * GIB)

  await rbd.remove(POOL, 'vol-a')
  assert.not.ok(await rbd.exists(POOL, 'vol-a'))
})

test('golden image: snapshot, protect, clone, flatten, and delete refusals until it is safe', async () => {
  const dir = ceph.dir
  const golden = randomBytes(5 * MIB) // spans two 4 MiB objects
  writeFileSync(join(dir, 'golden.img'), golden)
  await rbd.importFile(join(dir, 'golden.img'), POOL, 'golden')
  const snap = await rbd.snapshotCreate(POOL, 'golden', 'base')
  assert.is(snap.name, 'base')
  assert.is(snap.protected, false)
  await rejectsKind(rbd.snapshotCreate(POOL, 'golden', 'base'), 'AlreadyExists')

  // Ceph 16 with luminous clients clones only protected snapshots
  await rejectsKind(rbd.clone({ pool: POOL, image: 'golden', snapshot: 'base' }, { pool: POOL, image: 'vm-1' }), 'InvalidSpec', /protected/)
  await rbd.snapshotProtect(POOL, 'golden', 'base')
  await rbd.snapshotProtect(POOL, 'golden', 'base') // no-op
  assert.ok((await rbd.snapshotList(POOL, 'golden')).find((s) => s.name === 'base')?.protected)

  const clone = await rbd.clone({ pool: POOL, image: 'golden', snapshot: 'base' }, { pool: POOL, image: 'vm-1' })
  assert.equal(clone.parent && { pool: clone.parent.pool, image: clone.parent.image, snapshot: clone.parent.snapshot }, { pool: POOL, image: 'golden', snapshot: 'base' })
  assert.ok(clone.features.includes('exclusive-lock'))
  assert.equal(await rbd.children(POOL, 'golden', 'base'), [{ pool: POOL, image: 'vm-1' }])
  await rbd.exportFile(POOL, 'vm-1', join(dir, 'vm-1.img'))
  assert.ok(readFileSync(join(dir, 'vm-1.img')).equals(golden), 'a clone reads its parent snapshot\'s bytes')

  await rejectsKind(rbd.remove(POOL, 'golden'), 'InUse', /base \(clones: rbd\/vm-1\)/)
  await rejectsKind(rbd.snapshotUnprotect(POOL, 'golden', 'base'), 'InUse')
  await rejectsKind(rbd.snapshotRemove(POOL, 'golden', 'base'), 'InUse', /protected/)

  const flat = await rbd.flatten(POOL, 'vm-1')
  assert.is(flat.parent, null)
  assert.equal(await rbd.children(POOL, 'golden', 'base'), [])
  await rbd.snapshotUnprotect(POOL, 'golden', 'base')
  await rejectsKind(rbd.remove(POOL, 'golden'), 'InUse', /snapshots: base/)
  await rbd.snapshotRemove(POOL, 'golden', 'base')
  await rbd.remove(POOL, 'golden')
  await rejectsKind(rbd.info(POOL, 'golden'), 'NotFound')

  await rbd.exportFile(POOL, 'vm-1', join(dir, 'vm-1-flat.img'))
  assert.ok(readFileSync(join(dir, 'vm-1-flat.img')).equals(golden), 'a flattened clone keeps its bytes without the parent')
  await rbd.remove(POOL, 'vm-1')
})

test('named errors: NotFound, InvalidSpec before any call', async () => {
  await Promise.all([
    rejectsKind(rbd.info(POOL, 'no-such-image'), 'NotFound', /no-such-image/),
    rejectsKind(rbd.remove(POOL, 'no-such-image'), 'NotFound'),
    rejectsKind(rbd.resize(POOL, 'no-such-image', 2), 'NotFound'),
    rejectsKind(rbd.info('no-such-pool', 'x'), 'NotFound'),
    rejectsKind(rbd.snapshotCreate(POOL, 'no-such-image', 's'), 'NotFound'),
    rejectsKind(rbd.clone({ pool: POOL, image: 'no-such-image', snapshot: 's' }, { pool: POOL, image: 'c' }), 'NotFound'),
    rejectsKind(rbd.createImage(POOL, 'bad@name', 1), 'InvalidSpec'),
    rejectsKind(rbd.createImage(POOL, 'zero', 0), 'InvalidSpec')
  ])
  assert.not.ok(await rbd.exists(POOL, 'zero'))
})

test('Unavailable: no monitor at the configured address, within the timeout', async () => {
  const port = await freeMonPort() // nothing listens there
  const conf = join(ceph.dir, 'bogus.conf')
  writeFileSync(conf, `[global]\nmon host = [v2:127.0.0.1:${port},v1:127.0.0.1:${port + 1}]\nkeyring = ${ceph.keyring}\n`)
  const dead = new RbdClient({ conf, timeoutMs: 2000 })
  const t0 = performance.now()
  const [a, b] = await Promise.all([
    rejectsKind(dead.info(POOL, 'x'), 'Unavailable'),
    rejectsKind(dead.blocklistLs(), 'Unavailable')
  ])
  const ms = performance.now() - t0
  assert.ok(ms < 2000 + 2000 + 1000, `Unavailable after ${ms.toFixed(0)} ms`)
  assert.ok(a.stderr.length > 0 && b.message.length > 0)
})

test('bytes written through librbd read back; a snapshot keeps the old bytes', async () => {
  const dir = ceph.dir
  const data = randomBytes(6 * MIB + 4096) // not a multiple of the 4 MiB object size
  writeFileSync(join(dir, 'data.in'), data)
  const info = await rbd.importFile(join(dir, 'data.in'), POOL, 'data')
  assert.is(info.sizeBytes, data.length)
  await rbd.exportFile(POOL, 'data', join(dir, 'data.out'))
  assert.ok(readFileSync(join(dir, 'data.out')).equals(data))

  // QEMU's own rbd driver (what the guests use) writes 64 KiB of 0xab across an object boundary
  await rbd.snapshotCreate(POOL, 'data', 'before')
  const at = 4 * MIB - 32 * 1024
  const w = await qemuIo(['-c', `write -P 0xab ${at} 64k`, qemuRbdFilename({ pool: POOL, image: 'data', conf: ceph.conf })])
  assert.is(w.code, 0, w.out)
  assert.match(w.out, /wrote 65536\/65536 bytes/)
  // and reads it back through the -blockdev form the QEMU driver may use instead
  const node = qemuRbdBlockdev({ pool: POOL, image: 'data', conf: ceph.conf }, 'd0')
  const r = await qemuIo(['-c', `read -P 0xab ${at} 64k`, `json:${JSON.stringify({ driver: 'raw', file: node })}`], false)
  assert.is(r.code, 0, r.out)
  assert.match(r.out, /read 65536\/65536 bytes/)
  await rbd.exportFile(POOL, 'data', join(dir, 'data.after'))
  const expected = Buffer.from(data)
  expected.fill(0xab, at, at + 64 * 1024)
  assert.ok(readFileSync(join(dir, 'data.after')).equals(expected), 'exactly the written range changed')
  await rbd.exportFile(POOL, 'data', join(dir, 'data.before'), { snapshot: 'before' })
  assert.ok(readFileSync(join(dir, 'data.before')).equals(data), 'the snapshot still has the imported bytes')
  await rbd.snapshotRemove(POOL, 'data', 'before')
  await rbd.remove(POOL, 'data')
})

test('fencing: a blocklisted lock holder can no longer write; blocklistRm lifts it', async () => {
  await rbd.createImage(POOL, 'fenced', 1 / 16) // 64 MiB: the check below exports it whole
  // one qemu-io process, as a guest's QEMU would hold the disk: it writes, is fenced, writes again
  const q = startQemuIo(qemuRbdFilename({ pool: POOL, image: 'fenced', conf: ceph.conf }))
  q.send('write -P 0x11 0 4k')
  await q.waitOutput(/wrote 4096\/4096 bytes at offset 0/, 15_000)
  const holder = await rbd.lockHolder(POOL, 'fenced')
  assert.ok(holder != null && holder.exclusive && holder.watching, JSON.stringify(holder))
  assert.match(holder.locker, /^client\.\d+$/)
  await rejectsKind(rbd.remove(POOL, 'fenced'), 'InUse', /open by/)

  await rbd.blocklistAdd(holder.address, 600)
  assert.ok((await rbd.blocklistLs()).some((e) => e.addr === holder.address))
  q.send('write -P 0x22 4096 4k')
  await q.waitOutput(/write failed: Cannot send after transport endpoint shutdown/, 20_000)
  assert.not.match(q.output(), /wrote 4096\/4096 bytes at offset 4096/)
  q.kill() // a fenced guest is stopped hard (a clean close would only time out releasing the lock)
  await within(q.exited, 10_000, 'the fenced qemu-io to exit')

  await rbd.blocklistRm(holder.address)
  const [list] = await Promise.all([rbd.blocklistLs(), rbd.blocklistRm(holder.address)]) // lifting an absent entry is a no-op
  assert.not.ok(list.some((e) => e.addr === holder.address))

  // the next writer takes over the stale lock; the fenced write never landed
  const next = await qemuIo(['-c', 'write -P 0x33 8192 4k', qemuRbdFilename({ pool: POOL, image: 'fenced', conf: ceph.conf })])
  assert.is(next.code, 0, next.out)
  await rbd.exportFile(POOL, 'fenced', join(ceph.dir, 'fenced.out'))
  const out = readFileSync(join(ceph.dir, 'fenced.out')).subarray(0, 12288)
  assert.ok(out.subarray(0, 4096).every((b) => b === 0x11), 'the write before the fence landed')
  assert.ok(out.subarray(4096, 8192).every((b) => b === 0), 'the write after the fence did not')
  assert.ok(out.subarray(8192, 12288).every((b) => b === 0x33), 'the new holder writes')
  assert.is(await rbd.lockHolder(POOL, 'fenced'), null, 'a writer that exits releases the lock')
})

test('fence(): blocklists the holder and breaks its lock in one call', async () => {
  const w = startWriter('fenced')
  const holder = await waitFor('the writer to take the exclusive lock', 15_000, async () => await rbd.lockHolder(POOL, 'fenced'))
  const fenced = await rbd.fence(POOL, 'fenced', 600)
  assert.equal(fenced, [holder.address])
  const { code } = await within(w.exited, 20_000, 'the fenced writer to fail')
  assert.is.not(code, 0)
  assert.is(await rbd.lockHolder(POOL, 'fenced'), null, 'the stale lock is gone')
  assert.equal(await rbd.fence(POOL, 'fenced', 600), [], 'nothing left to fence')
  await rbd.blocklistRm(holder.address)
  await rbd.remove(POOL, 'fenced')
  await rejectsKind(rbd.blocklistAdd('garbage'), 'InvalidSpec')
})

test.run()
