// Failpoints (storage/failpoints.ts): the spec parser's errors, and what each storage point does to
// the real code: the daemon's Raft log, a real WAL (write error, torn batch, fsync error) and the Ceph CLI runner
// (timeout, EBLOCKLISTED). Each point is armed in-process with setFailpoints.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { failpoint, parseFailpoints, setFailpoints, FailpointSpecError } from '../../storage/failpoints.ts'
import { LogDurabilityError, WalLogStore } from '../../storage/wal-log-store.ts'
import { RbdClient } from '../../storage/rbd.ts'
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { RbdError, Errno } from '../../storage/ceph-errors.ts'
import type { Entry } from '../../protocols/raft/types.ts'
import { tempDir } from './tmpdir.ts'

test.after.each(() => { setFailpoints('') })

test('the spec parser: points, actions, arguments and counts', () => {
  const t = parseFailpoints(' raft.log.fsync=error ; raft.transport.send=drop(0.2);qemu.qmp=2*timeout')
  assert.equal(t.get('raft.log.fsync'), { action: 'error', arg: null, left: Infinity })
  assert.equal(t.get('raft.transport.send'), { action: 'drop', arg: 0.2, left: Infinity })
  assert.equal(t.get('qemu.qmp'), { action: 'timeout', arg: null, left: 2 })
  assert.is(parseFailpoints('').size, 0)
})

test('a bad spec names what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['raft.log.fsinc=error', /unknown point "raft\.log\.fsinc".*known: raft\.log\.write/],
    ['raft.log.fsync=drop(0.1)', /point raft\.log\.fsync has no action "drop" \(it has: error\)/],
    ['raft.transport.send=drop', /raft\.transport\.send=drop needs a probability in \[0, 1\]/],
    ['raft.transport.send=drop(1.5)', /drop\(1\.5\): expected a probability in \[0, 1\]/],
    ['raft.transport.send=delay(abc)', /delay\(abc\): expected a delay in ms/],
    ['raft.log.write=error(3)', /takes no argument, got \(3\)/],
    ['raft.log.write', /"raft\.log\.write" is not point=action/],
    ['raft.log.write=error;raft.log.write=error', /given twice/],
    ['qemu.qmp=0*timeout', /count must be at least 1/]
  ]
  for (const [spec, re] of cases) {
    assert.throws(() => parseFailpoints(spec), (e: unknown) => e instanceof FailpointSpecError && re.test(e.message) && e.message.startsWith('BLIXARD_FAILPOINTS: '), spec)
  }
})

test('off by default; a count fires that many times; drop fires with its probability', () => {
  setFailpoints('')
  assert.is(failpoint('raft.log.fsync'), null)
  setFailpoints('raft.log.fsync=2*error;raft.transport.send=drop(0.5)')
  assert.ok(failpoint('raft.log.fsync') != null)
  assert.ok(failpoint('raft.log.fsync') != null)
  assert.is(failpoint('raft.log.fsync'), null)
  assert.is(failpoint('raft.transport.send', () => 0.7), null)
  assert.is(failpoint('raft.transport.send', () => 0.3)?.action, 'drop')
  assert.is(failpoint('kv.commit'), null)
})

const ents = (from: number, n: number, term = 1): Entry[] => Array.from({ length: n }, (_, k) => ({ term, index: from + k, type: 'normal' as const, data: new Uint8Array([from + k]) }))

function reopened (dir: string): { last: number, commit: number } {
  const s = WalLogStore.open(dir)
  try { return { last: s.lastIndex(), commit: s.initialState().hardState.commit } } finally { s.close() }
}

test('raft.log.write: nothing reaches the log, the store refuses further writes, a restart has the old log', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir)
  s.save({ entries: ents(1, 3), hardState: { term: 1, vote: '', commit: 3 } })
  setFailpoints('raft.log.write=1*error')
  assert.throws(() => { s.save({ entries: ents(4, 2) }) }, (e: unknown) => e instanceof LogDurabilityError && /write failed/.test((e as Error).message))
  assert.throws(() => { s.save({ entries: ents(4, 2) }) }, (e: unknown) => e instanceof LogDurabilityError && /restart to recover/.test((e as Error).message))
  s.close()
  assert.equal(reopened(dir), { last: 3, commit: 3 })
})

test('raft.log.torn: a crash half-way leaves a prefix of the batch, never a hole; the restart continues from it', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir)
  s.save({ entries: ents(1, 2) })
  setFailpoints('raft.log.torn=1*torn')
  assert.throws(() => { s.save({ entries: ents(3, 4) }) }, (e: unknown) => e instanceof LogDurabilityError && /torn after 2 of 4/.test((e as Error).message))
  s.close()
  const again = WalLogStore.open(dir)
  assert.is(again.lastIndex(), 4)
  assert.equal(again.entries(1, 5).map((e) => e.index), [1, 2, 3, 4])
  again.save({ entries: ents(5, 2) }) // Raft re-sends the rest
  assert.is(again.lastIndex(), 6)
  again.close()
})

test('raft.log.fsync: the save is an error (never success) although the bytes may be there; no further writes', () => {
  const dir = tempDir()
  const s = WalLogStore.open(dir)
  setFailpoints('raft.log.fsync=1*error')
  assert.throws(() => { s.save({ entries: ents(1, 2), hardState: { term: 1, vote: '', commit: 0 } }) }, (e: unknown) => e instanceof LogDurabilityError && /fsync failed/.test((e as Error).message))
  assert.throws(() => { s.save({ entries: ents(3, 1) }) }, (e: unknown) => e instanceof LogDurabilityError)
  s.close()
})

test('kv.commit: the state machine\'s commit fails and none of it is written; the next commit works', () => {
  const kv = LmdbKv.open(tempDir())
  try {
    kv.put('meta', 'a', 1)
    setFailpoints('kv.commit=1*error')
    assert.throws(() => { kv.transaction(() => { kv.put('meta', 'a', 2); kv.put('meta', 'b', 2) }) }, /state machine commit failed \(failpoint kv\.commit\)/)
    assert.is(kv.get<number>('meta', 'a'), 1)
    assert.is(kv.get<number>('meta', 'b'), undefined)
    kv.put('meta', 'b', 3)
    assert.is(kv.get<number>('meta', 'b'), 3)
  } finally { kv.close() }
})

test('ceph.rbd: a timeout is Unavailable; EBLOCKLISTED is classified as a fenced client (errno 108)', async () => {
  const c = new RbdClient({ conf: '/nonexistent/ceph.conf', rbdBin: '/nonexistent/rbd', cephBin: '/nonexistent/ceph' })
  setFailpoints('ceph.rbd=1*timeout')
  const t = await c.list('rbd').then(() => null, (e: unknown) => e)
  assert.ok(t instanceof RbdError && t.kind === 'Unavailable' && /no answer within .*failpoint ceph\.rbd/.test(t.message), String(t))
  setFailpoints('ceph.rbd=1*blocklisted')
  const b = await c.info('rbd', 'img').then(() => null, (e: unknown) => e)
  assert.ok(b instanceof RbdError && b.kind === 'Unavailable' && b.errno === Errno.ESHUTDOWN, String(b))
  // the failpoint is spent: the next call reaches the (missing) binary for real
  const real = await c.list('rbd').then(() => null, (e: unknown) => e)
  assert.ok(real instanceof RbdError && /not installed/.test(real.message), String(real))
})

test.run()
