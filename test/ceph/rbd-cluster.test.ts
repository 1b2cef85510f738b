// RbdClient against a real single-host Ceph 16 that this file starts (scripts/ceph.sh) and
// removes: volume lifecycle, named errors, bytes through librbd (rbd import/export and QEMU's
// rbd driver via qemu-io), fencing a lock holder.
// Then, on the same Ceph (its start costs more than most cases here), volumes through a real state
// machine, the real RPC handlers and the real volume reconciler (node/volumes/reconciler.ts): a
// handler only records the change; the reconciler on the node with Ceph makes the RBD image match
// and reports through the state machine. Create through a node without Ceph while another has it
// (image made, volume ready); create when no node has Ceph (refused, nothing recorded); resize,
// snapshot, clone, delete reach the image; an image someone else made under the volume's name is
// neither adopted nor removed; a crash between making the image and reporting converges on the next pass.
// Last, a guest's data survives its move to another host: the guest boots on host 1 with an RBD data
// disk (QEMU's own rbd driver), writes its boot counter (boots=1); host 1 is then cut off but its qemu
// still runs (the dangerous case), so before the VM starts on host 2 the old holder is fenced (`ceph
// osd blocklist add` of its client address, stale lock broken). Host 2 boots the same VM from the same
// image and reads the counter back (boots=2). The two hosts are two QEMU drivers with their own data dirs.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { launchSpecFromVm } from '../../node/qemu/launch-spec.ts'
import { buildTinyGuest, parseDiskBoots, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import type { DriveSpec } from '../../node/qemu/cmdline.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { RbdClient, RbdError } from '../../storage/rbd.ts'
import { GIB, MIB } from '../../storage/rbd-spec.ts'
import { qemuRbdBlockdev, qemuRbdFilename } from '../../storage/rbd-qemu.ts'
import { freeMonPort, startTestCeph } from './single-host-ceph.ts'
import type { TestCeph } from './single-host-ceph.ts'
import { createResourceApi } from '../../node/api-resources.ts'
import { VolumeReconciler, OWNER_KEY, ownerTag } from '../../node/volumes/reconciler.ts'
import type { ApplyResult, Command } from '../../protocols/commands.ts'
import type { HypervisorCapability } from '../../protocols/model.ts'
import { BlixardError } from '../../protocols/errors.ts'
import type { RpcCallContext } from '../../node/net/rpc.ts'
import { createLogger } from '../../node/log.ts'
import { harness, registerNode, spec } from '../storage/sm-fixtures.ts'
import { waitFor } from '../cluster/harness.ts'
import { qemuPidsFor } from '../vm/helpers.ts'

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

function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
    p.then((v) => { clearTimeout(t); resolve(v) }, (e: unknown) => { clearTimeout(t); reject(e) })
  })
}

// the guest's two hosts
const BOOT_WAIT_MS = 180_000
const IMAGE = 'vm-data-move'
const VM_ID = 'vm-rbd-move'
const root = mkdtempSync(join(tmpdir(), 'blx-guest-rbd-'))
let guest: TinyGuest
const drivers: QemuDriver[] = []

function vmRecord (generation: number): VmRecord {
  return {
    id: VM_ID, generation, desired: 'running', assignedNode: null, createdAt: 0, updatedAt: 0,
    status: { phase: 'scheduled', reason: '', node: null, at: 0 },
    spec: {
      name: 'data-mover', vcpus: 1, memoryMiB: 96, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' },
      volumes: [IMAGE], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [],
      spreadLabel: null, priority: 0, restartPolicy: 'never', requires: []
    }
  }
}

function host (name: string): QemuDriver {
  const d = new QemuDriver({ dataDir: join(root, name), accel: 'auto', stopTimeoutMs: 10_000 })
  drivers.push(d)
  return d
}

async function bootOn (d: QemuDriver, generation: number): Promise<{ boots: number | null, ms: number }> {
  if (ceph == null) throw new Error('no ceph')
  const drive: DriveSpec = { kind: 'rbd', pool: POOL, image: IMAGE, conf: ceph.conf, id: 'admin' }
  const spec = launchSpecFromVm(vmRecord(generation), { tinyGuest: guest, drives: [drive] })
  assert.ok(spec.boot.params?.includes('blix.disk=1'), 'a VM with a volume gets blix.disk=1')
  const ts = Date.now()
  const up = d.waitForEvent(VM_ID, (e) => e.type === 'running' || e.type === 'failed', BOOT_WAIT_MS)
  await d.start(spec)
  const e = await up
  assert.is(e.type, 'running', JSON.stringify(e))
  const log = readFileSync(join(d.dataDir, 'vms', VM_ID, 'serial.log'), 'utf8')
  return { boots: parseDiskBoots(log), ms: Date.now() - ts }
}

function killOurQemus (): void {
  for (const pid of qemuPidsFor(root)) { try { process.kill(pid, 'SIGKILL') } catch {} }
}
process.on('exit', () => { killOurQemus(); rmSync(root, { recursive: true, force: true }) })


// the volume API's state machine, handlers and reconcilers
const h = harness()
const write = async (cmd: Command): Promise<unknown> => {
  const r = h.run(cmd)
  if (!r.ok) throw new BlixardError(r.error.kind, r.error.message)
  return r.value
}
// every node's handlers are the same now: none of them touches Ceph
const api = createResourceApi({ sm: h.sm, read: async () => {}, barrier: async () => {}, write, defaultPool: () => 'rbd' })
// the handlers never look at the caller's connection
const ctx = { peer: 'test', signal: new AbortController().signal } as unknown as RpcCallContext
const log = createLogger({ test: 'volume-api' }, { level: 'warn' })
/** the reconciler of the node with Ceph ('n-ceph'), and one of a node without it: never acts */
let withCeph: VolumeReconciler
let bare: VolumeReconciler
const reports: Command[] = []
const propose = async (env: { cmd: Command }): Promise<ApplyResult> => { reports.push(env.cmd); return h.run(env.cmd) }

function node (id: string, caps: HypervisorCapability[]): Command {
  const c = registerNode(id) as Extract<Command, { type: 'RegisterNode' }>
  return { ...c, node: { ...c.node, capabilities: caps } }
}

async function kindOf (p: unknown): Promise<string> {
  try { await p; return 'ok' } catch (e) { return (e as { kind?: string }).kind ?? String(e) }
}

const phase = (name: string): string => h.sm.getVolume(name)?.phase ?? 'gone'

test.before(async () => {
  guest = await buildTinyGuest()
  ceph = await startTestCeph()
  console.log(`  ceph start took ${ceph.startSeconds.toFixed(1)} s`)
  rbd = new RbdClient({ conf: ceph.conf, keyring: ceph.keyring, id: 'admin', timeoutMs: 20_000 })
  withCeph = new VolumeReconciler({ self: () => 'n-ceph', sm: h.sm, rbd, propose, log })
  bare = new VolumeReconciler({ self: () => 'n-bare', sm: h.sm, rbd, propose, log })
})

test.after(async () => {
  for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
  await withCeph?.stop()
  for (const d of drivers) await d.close().catch(() => {})
  killOurQemus()
  if (ceph != null) await ceph.destroy()
  rmSync(root, { recursive: true, force: true })
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

// Volumes through the API and the reconciler

test('no node can reach Ceph: create and clone are refused at once, saying what to do, and nothing is recorded', async () => {
  assert.ok(h.run(node('n-bare', ['qemu'])).ok)
  let err: unknown = null
  try { await api['volume.create']!({ name: 'nowhere', sizeGiB: 1 }, ctx) } catch (e) { err = e }
  assert.ok(err instanceof BlixardError && err.kind === 'NoCapacity', String(err))
  assert.match((err as BlixardError).message, /no node in the cluster can reach Ceph.*nothing was recorded.*ceph\.conf.*--ceph-conf.*BLIXARD_CEPH_CONF/)
  assert.is(h.sm.getVolume('nowhere'), undefined)
  assert.equal(h.sm.listVolumes(), [])
  assert.not.ok(await rbd.exists('rbd', 'nowhere'))
})

test('created through a node without Ceph while another has it: the reconciler there makes the image, the volume is ready', async () => {
  assert.ok(h.run(node('n-ceph', ['qemu', 'rbd'])).ok)
  const t = Date.now()
  const v = await api['volume.create']!({ name: 'golden', sizeGiB: 1 }, ctx)
  assert.equal([v.name, v.pool, v.sizeGiB, v.phase], ['golden', 'rbd', 1, 'pending'])
  assert.not.ok(await rbd.exists('rbd', 'golden'), 'the handler itself makes no image')
  await bare.pass()
  assert.is(phase('golden'), 'pending', 'a node without Ceph does nothing')
  assert.not.ok(await rbd.exists('rbd', 'golden'))
  await withCeph.pass()
  assert.is(phase('golden'), 'ready')
  const info = await rbd.info('rbd', 'golden')
  assert.is(info.sizeBytes, 1024 ** 3)
  assert.ok(info.features.includes('exclusive-lock') && info.features.includes('layering'))
  assert.is(await rbd.metaGet('rbd', 'golden', OWNER_KEY), ownerTag(h.sm.getVolume('golden')!))
  assert.equal(reports.map((c) => c.type === 'ReportVolume' ? [c.name, c.node, c.outcome] : null), [['golden', 'n-ceph', 'ready']])
  console.log(`  create to ready in ${Date.now() - t} ms`)
})

test('resize, snapshot and clone reach the image; delete removes it and then the record', async () => {
  assert.is((await api['volume.resize']!({ volume: 'golden', sizeGiB: 2 }, ctx)).phase, 'pending')
  await withCeph.pass()
  assert.is(phase('golden'), 'ready')
  assert.is((await rbd.info('rbd', 'golden')).sizeBytes, 2 * 1024 ** 3)
  assert.is(await kindOf(api['volume.resize']!({ volume: 'golden', sizeGiB: 1 }, ctx)), 'InvalidSpec', 'shrink refused')
  await api['volume.snapshot']!({ volume: 'golden', snapshot: 'v1' }, ctx)
  // a clone recorded while its parent's snapshot is still pending waits for it
  const c = await api['volume.clone']!({ volume: 'golden', snapshot: 'v1', name: 'vm-disk-1', sizeGiB: 3 }, ctx)
  assert.equal([c.parent, c.phase], [{ volume: 'golden', snapshot: 'v1' }, 'pending'])
  await withCeph.pass() // golden's snapshot (the clone's task, planned while golden was pending, waits)
  assert.equal([phase('golden'), phase('vm-disk-1')], ['ready', 'pending'])
  await withCeph.pass()
  assert.equal([phase('golden'), phase('vm-disk-1')], ['ready', 'ready'])
  const snaps = await rbd.snapshotList('rbd', 'golden')
  assert.ok(snaps.length === 1 && snaps[0].name === 'v1' && snaps[0].protected, JSON.stringify(snaps))
  const ci = await rbd.info('rbd', 'vm-disk-1')
  assert.ok(ci.parent?.image === 'golden' && ci.parent.snapshot === 'v1' && ci.sizeBytes === 3 * 1024 ** 3, JSON.stringify(ci))
  assert.is(await kindOf(api['volume.delete']!({ volume: 'golden' }, ctx)), 'InUse', 'a volume with a clone stays')
  // attached to a VM: delete refused, image kept
  assert.ok(h.run({ type: 'CreateVm', id: 'vm-a', spec: spec('a', { volumes: ['vm-disk-1'] }) }).ok)
  assert.is(await kindOf(api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)), 'InUse')
  assert.ok(h.run({ type: 'DeleteVm', id: 'vm-a' }).ok)
  await api['volume.delete']!({ volume: 'vm-disk-1' }, ctx)
  assert.is(phase('vm-disk-1'), 'deleting')
  assert.ok(await rbd.exists('rbd', 'vm-disk-1'), 'the record goes only once the image is gone')
  assert.is(await kindOf(api['volume.delete']!({ volume: 'golden' }, ctx)), 'InUse', 'its clone is still being deleted')
  await withCeph.pass()
  assert.is(phase('vm-disk-1'), 'gone')
  assert.not.ok(await rbd.exists('rbd', 'vm-disk-1'))
  await api['volume.delete']!({ volume: 'golden' }, ctx)
  await withCeph.pass()
  assert.not.ok(await rbd.exists('rbd', 'golden'))
  assert.equal(h.sm.listVolumes(), [])
})

test('an image someone else made under the name: the volume fails with the reason, and its delete leaves that image alone', async () => {
  await rbd.createImage('rbd', 'taken2', 1)
  await rbd.metaSet('rbd', 'taken2', OWNER_KEY, 'someone-else@1')
  await api['volume.create']!({ name: 'taken2', sizeGiB: 1 }, ctx)
  await withCeph.pass()
  const v = h.sm.getVolume('taken2')!
  assert.is(v.phase, 'failed')
  assert.match(v.reason ?? '', /already has an RBD image taken2 that this volume did not make \(it was made for someone-else@1\).*rbd rm rbd\/taken2/)
  // a VM cannot be created on a volume whose image was never made
  assert.is(h.run({ type: 'CreateVm', id: 'vm-b', spec: spec('b', { volumes: ['taken2'] }) }).ok, false)
  await api['volume.delete']!({ volume: 'taken2' }, ctx)
  await withCeph.pass()
  assert.is(phase('taken2'), 'gone', 'the failed record is gone')
  assert.ok(await rbd.exists('rbd', 'taken2'), 'someone else\'s image is left alone')
  assert.match(JSON.stringify(reports.at(-1)), /was not made by this volume.*left alone/)
  await rbd.remove('rbd', 'taken2')
})

test('a crash after the image was made and before the report: the next pass adopts it (tagged) and reports ready', async () => {
  await api['volume.create']!({ name: 'crashy', sizeGiB: 1 }, ctx)
  const v = h.sm.getVolume('crashy')!
  // what the reconciler had done before it died: the image, its tag, no report
  await rbd.createImage('rbd', 'crashy', 1)
  await rbd.metaSet('rbd', 'crashy', OWNER_KEY, ownerTag(v))
  await withCeph.pass()
  assert.is(phase('crashy'), 'ready')
  assert.is((await rbd.info('rbd', 'crashy')).sizeBytes, 1024 ** 3)
  await api['volume.delete']!({ volume: 'crashy' }, ctx)
  await withCeph.pass()
  assert.not.ok(await rbd.exists('rbd', 'crashy'))
})

// A guest's data moves with it

test('a guest on an RBD disk moves to another host with its data; the old holder is fenced first', async () => {
  await rbd.createImage(POOL, IMAGE, 64 / 1024) // 64 MiB, layering + exclusive-lock
  assert.ok((await rbd.info(POOL, IMAGE)).features.includes('exclusive-lock'))
  const h1 = host('host-1')
  const first = await bootOn(h1, 1)
  console.log(`  host 1: booted from rbd:${POOL}/${IMAGE} in ${first.ms} ms, boots=${first.boots}`)
  assert.is(first.boots, 1, 'a blank image: the guest made a filesystem and counted its first boot')
  const holder = await rbd.lockHolder(POOL, IMAGE)
  assert.ok(holder != null && holder.watching, `host 1's qemu holds the exclusive lock: ${JSON.stringify(holder)}`)

  // host 1 is presumed dead but its qemu still runs: fence before host 2 starts the VM
  const fenced = await rbd.fence(POOL, IMAGE, 600)
  assert.ok(fenced.includes(holder.address), `fenced ${JSON.stringify(fenced)} includes the holder ${holder.address}`)
  const blocked = (await rbd.blocklistLs()).map((b) => b.addr)
  assert.ok(blocked.includes(holder.address), `blocklist ${JSON.stringify(blocked)}`)
  console.log(`  fenced the old holder ${holder.address} (ceph osd blocklist add), lock broken`)

  const h2 = host('host-2')
  const second = await bootOn(h2, 2)
  console.log(`  host 2: booted the same volume in ${second.ms} ms, boots=${second.boots}`)
  assert.is(second.boots, 2, 'the counter written on host 1 was read back on host 2: the data moved with the VM')
  const now = await rbd.lockHolder(POOL, IMAGE)
  assert.ok(now != null && now.address !== holder.address, `host 2 holds the lock now: ${JSON.stringify(now)}`)

  // the stale host's VM is deleted there; host 2's stop releases the image
  await h1.cleanup(VM_ID)
  await h2.stop(VM_ID)
  await h2.cleanup(VM_ID)
  await rbd.blocklistRm(holder.address)
  await rbd.remove(POOL, IMAGE)
  assert.not.ok(await rbd.exists(POOL, IMAGE))
})

test.run()
