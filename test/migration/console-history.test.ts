// A live move's console hand-over (internal.consoleHistory) over real libp2p hosts and the real RPC
// server with the node's own authorization rules, the source's console read by a real QEMU driver
// from its runtime dir. Only the target recorded for the VM's migration in flight, once switched
// over, gets the history; attackers are refused: a member that is the target of another VM's move
// asking for this VM's console, the same member with its own VM but another attempt's start, a key
// holder that is no member, and the right target before the switchover. The history is the last
// MAX_CONSOLE_HISTORY_BYTES, in frame-sized pieces; a source that sends more is refused by the
// target. The driver's logs() reads the history first, a tail across both files; a follow of a
// guest that ended here goes on with its new host only when the replica shows it moved live there.
// No fixed ports (tcp/0).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { testHost } from '../net/helpers.ts'
import { rpcServer, RpcClient, type RpcServer } from '../../node/net/rpc.ts'
import { dialableAddr } from '../../node/net/host.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { mayCall } from '../../node/core/membership-rules.ts'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { pullConsoleHistory, serveConsoleHistory } from '../../node/migration/console-history.ts'
import { vmConsole } from '../../node/console-proxy.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { CONSOLE_PIECE_UNITS, MAX_CONSOLE_HISTORY_BYTES } from '../../protocols/limits.ts'
import type { MigrationRecord } from '../../protocols/migration-phases.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { vmSpec } from '../cluster/harness.ts'
import { silentLogger } from '../../node/log.ts'

const dir = mkdtempSync(join(tmpdir(), 'blx-console-history-'))
const driver = new QemuDriver({ dataDir: dir, accel: 'tcg', tscKhz: null })
const vms = new Map<string, VmRecord>()
let source: BlixardHost<{ rpc: RpcServer }>
let target: BlixardHost
let attacker: BlixardHost
let outsider: BlixardHost
const clients: RpcClient[] = []

/** A VM record whose migration runs from the source to `to`, in `phase`. */
function migrating (id: string, to: string, phase: MigrationRecord['phase'], started: number): VmRecord {
  const from = source.peerId.toString()
  return {
    id, spec: vmSpec(id), generation: 1, desired: 'running', assignedNode: phase === 'switched' ? to : from, createdAt: 0, updatedAt: 0,
    status: { phase: 'running', reason: '', node: from, at: 0 },
    migration: { vm: id, source: from, target: to, generation: 1, phase, started, owner: phase === 'switched' ? to : from }
  }
}

/** A runtime dir as the driver leaves it: the launch record, the console, and a history. */
function runtime (id: string, serial: string | Buffer, history?: string): void {
  const p = runtimePaths(dir, id)
  mkdirSync(p.dir, { recursive: true })
  writeFileSync(p.specFile, '{}')
  writeFileSync(p.serialLog, serial)
  if (history != null) writeFileSync(p.consoleHistory, history)
}

async function connect (from: BlixardHost, to: BlixardHost): Promise<RpcClient> {
  const c = await RpcClient.connect(from, dialableAddr(to), { timeoutMs: 5_000 })
  clients.push(c)
  return c
}

async function refused (p: Promise<unknown>, kind: string, re: RegExp): Promise<void> {
  try { await p } catch (err) {
    assert.ok(err instanceof BlixardError, String(err))
    assert.is(err.kind, kind, err.message)
    assert.match(err.message, re)
    return
  }
  assert.unreachable('not refused')
}

test.before(async () => {
  target = await testHost()
  attacker = await testHost()
  outsider = await testHost()
  const members = () => ({ voters: [target.peerId.toString(), attacker.peerId.toString()], learners: [] })
  source = await testHost<{ rpc: RpcServer }>({
    services: {
      rpc: rpcServer({
        handlers: {
          'internal.consoleHistory': (p, ctx) => serveConsoleHistory({ self: () => source.peerId.toString(), getVm: (id) => vms.get(id) ?? null, driver }, ctx.peer, p)
        },
        // the daemon's rule (node/host-services.ts): internal.* only from members
        authorize: (peer, method) => mayCall(peer, method, members() as never, () => false, () => false),
        log: silentLogger
      })
    }
  })
})
test.after(async () => {
  for (const c of clients) await c.close().catch(() => {})
  await Promise.all([source, target, attacker, outsider].map(async (h) => await h.stop()))
  await driver.close()
  rmSync(dir, { recursive: true, force: true })
})

test('the target of a switched-over move gets the source\'s history and console, in order, the last MAX_CONSOLE_HISTORY_BYTES in frame-sized pieces', async () => {
  vms.set('vm-x', migrating('vm-x', target.peerId.toString(), 'switched', 1000))
  // from an earlier move (a chain A -> B -> C: B hands on what A gave it), then B's own console
  const history = 'boot on A\n' + 'a'.repeat(500_000) + '\nbeat 1\n'
  const serial = 'beat 2\n' + 'é'.repeat(300_000) + '\nbeat 3\n' // 2 bytes each: more than the cap in all, cut in A's part
  runtime('vm-x', serial, history)
  const all = Buffer.from(history + serial)
  const want = all.subarray(all.length - MAX_CONSOLE_HISTORY_BYTES).toString('utf8')
  const c = await connect(target, source)
  const pieces: string[] = []
  for await (const item of c.watch('internal.consoleHistory', { vm: 'vm-x', started: 1000 })) pieces.push(item.text)
  assert.ok(pieces.length >= 2 && pieces.every((p) => p.length <= CONSOLE_PIECE_UNITS), `pieces: ${pieces.map((p) => p.length).join(',')}`)
  assert.is(pieces.join(''), want)
  assert.ok(want.startsWith('aaa') && want.endsWith('\nbeat 3\n') && want.includes('\nbeat 1\nbeat 2\n'), 'the cut falls in the history; the rest is whole')
  // the target's side of the call: the same text
  assert.is(await pullConsoleHistory(c, { vm: 'vm-x', started: 1000 }), want)
})

test('attackers: another VM\'s target, another attempt, a key holder that is no member, the target before the switchover: all refused', async () => {
  vms.set('vm-x', migrating('vm-x', target.peerId.toString(), 'switched', 1000))
  vms.set('vm-y', migrating('vm-y', attacker.peerId.toString(), 'switched', 2000))
  runtime('vm-x', 'secret of x\n')
  runtime('vm-y', 'y\n')
  const a = await connect(attacker, source)
  // a member, the legitimate target of vm-y's move, asks for vm-x's console
  await refused(pullConsoleHistory(a, { vm: 'vm-x', started: 1000 }), 'Unauthorized', /is not the target of VM vm-x's migration/)
  // its own VM, but not the attempt in flight
  await refused(pullConsoleHistory(a, { vm: 'vm-y', started: 1999 }), 'Conflict', /no live migration started at 1999 in flight/)
  // a VM with no migration, and one that does not exist
  vms.set('vm-z', { ...migrating('vm-z', attacker.peerId.toString(), 'switched', 3000), migration: undefined })
  await refused(pullConsoleHistory(a, { vm: 'vm-z', started: 3000 }), 'Conflict', /no live migration/)
  await refused(pullConsoleHistory(a, { vm: 'nope', started: 1 }), 'NotFound', /no such VM/)
  // a key holder that is not a member: the member rule, before any record is looked at
  const o = await connect(outsider, source)
  await refused(pullConsoleHistory(o, { vm: 'vm-x', started: 1000 }), 'Unauthorized', /internal\.consoleHistory/)
  // the right target, but memory still moves: the history is not complete yet
  vms.set('vm-x', migrating('vm-x', target.peerId.toString(), 'transferring', 1000))
  const t = await connect(target, source)
  await refused(pullConsoleHistory(t, { vm: 'vm-x', started: 1000 }), 'Conflict', /is transferring/)
  // and the legitimate one still works
  assert.is(await pullConsoleHistory(a, { vm: 'vm-y', started: 2000 }), 'y\n')
})

test('a source that sends more than MAX_CONSOLE_HISTORY_BYTES is refused by the target', async () => {
  const rogue = await testHost<{ rpc: RpcServer }>({
    services: {
      rpc: rpcServer({
        handlers: {
          'internal.consoleHistory': async function * () { for (;;) yield { text: 'x'.repeat(CONSOLE_PIECE_UNITS) } }
        },
        log: silentLogger
      })
    }
  })
  try {
    const c = await connect(target, rogue)
    await refused(pullConsoleHistory(c, { vm: 'vm-x', started: 1000 }), 'TooLarge', /more than 1048576 bytes/)
  } finally { await rogue.stop() }
})

test('the driver\'s logs(): the history first, then this host\'s console; a tail across both', async () => {
  runtime('vm-l', 'on B: 3\non B: 4\n', 'on A: 1\non A: 2\n')
  const read = async (o: { tailBytes?: number }): Promise<string> => { let s = ''; for await (const t of driver.logs('vm-l', o)) s += t; return s }
  assert.is(await read({}), 'on A: 1\non A: 2\non B: 3\non B: 4\n')
  assert.is(await read({ tailBytes: 8 + 16 }), 'on A: 2\non B: 3\non B: 4\n')
  assert.is(await read({ tailBytes: 8 }), 'on B: 4\n')
  // what the source hands on: the same
  assert.is((await driver.consoleHistory('vm-l', 1 << 20)).toString(), 'on A: 1\non A: 2\non B: 3\non B: 4\n')
  assert.is((await driver.consoleHistory('vm-l', 20)).toString(), ': 2\non B: 3\non B: 4\n')
})

test('a follow here whose guest ended: continued on the new host only when the replica shows the live move that took it there', async () => {
  runtime('vm-f', 'here 1\nhere 2\n')
  const self = source.peerId.toString()
  const b = target.peerId.toString()
  const follow = async (rec: VmRecord): Promise<{ text: string, dialled: string[], err: string | null }> => {
    const dialled: string[] = []
    let text = ''
    let err: string | null = null
    const deps = {
      selfId: () => self, selfName: 'a', hypervisor: () => driver, qemu: () => driver, vm: () => rec,
      client: async (peer: string): Promise<RpcClient> => { dialled.push(peer); throw new Error('dialled') }
    }
    try { for await (const t of vmConsole(deps, { ...rec, assignedNode: self }, { follow: true }, new AbortController().signal)) text += t } catch (e) { err = (e as Error).message }
    return { text, dialled, err }
  }
  // no QEMU runs vm-f here: the driver's follow reads the log and ends, as at a guest's exit
  const done = migrating('vm-f', b, 'done', 5000)
  const moved = { ...done, assignedNode: b, migration: { ...done.migration!, owner: b } }
  assert.equal(await follow(moved), { text: 'here 1\nhere 2\n', dialled: [b], err: 'dialled' }, 'goes on with the new host')
  // the same record, but the VM is back here since (moved cold, or rescheduled): the follow ends
  assert.equal(await follow({ ...moved, assignedNode: self }), { text: 'here 1\nhere 2\n', dialled: [], err: null })
  // still before the switchover as this replica has it: waited for a moment, then it ends
  const t0 = Date.now()
  assert.equal((await follow({ ...migrating('vm-f', b, 'transferring', 5000), assignedNode: self })).dialled, [])
  assert.ok(Date.now() - t0 >= 4_000, 'waited for the replica to catch up')
  // an aborted move, and none at all: it ends
  assert.equal((await follow({ ...migrating('vm-f', b, 'aborted', 5000), assignedNode: self })).dialled, [])
  assert.equal((await follow({ ...moved, migration: undefined, assignedNode: self })).dialled, [])
})

test.run()
