// The pure parts of bench:raft's cost model and --learners: stage bucketing of a V8 profile, the
// strace -c summary, and the --learners argument. The bench itself runs real processes and is not a test.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bucketProfile, groupSyscalls, parseStraceSummary, scaleToCpu, threadCpuMsByName, threadDelta } from '../../bench/raft/cost.ts'
import { Worker } from 'node:worker_threads'
import { learnerCounts } from '../../bench/raft/learners.ts'

const node = (id: number, functionName: string, url: string, children: number[] = []): { id: number, callFrame: { functionName: string, url: string }, children: number[] } =>
  ({ id, callFrame: { functionName, url }, children })

// (root) → rpc handler → cbor decode (inherits rpc); (root) → raft step → pnet encrypt (own: transport)
// → native write (no url: inherits transport); GC; idle; a timer in node internals (other)
const profile = {
  nodes: [
    node(1, '(root)', '', [2, 4, 7, 8, 9]),
    node(2, 'handle', 'file:///x/dist/node/net/rpc.js', [3]),
    node(3, 'decode', 'file:///x/node_modules/cbor-x/decode.js'),
    node(4, 'step', 'file:///x/dist/protocols/raft/raft.js', [5]),
    node(5, 'encrypt', 'file:///x/dist/node/net/pnet.js', [6]),
    node(6, 'writev', ''),
    node(7, '(garbage collector)', ''),
    node(8, '(idle)', ''),
    node(9, 'listOnTimeout', 'node:internal/timers')
  ],
  startTime: 1_000_000,
  endTime: 1_000_000 + 9 * 1000,
  // one sample a millisecond
  samples: [2, 3, 3, 4, 5, 6, 7, 8, 9],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
}

test('bucketProfile: own stages win, libraries and natives inherit their caller, window bounds count', () => {
  const b = bucketProfile(profile, 0, Number.MAX_SAFE_INTEGER)
  assert.is(b.ms.rpc, 3) // handle + 2 × cbor decode called from the RPC handler
  assert.is(b.ms.raft, 1)
  assert.is(b.ms.transport, 2) // pnet + the native writev it called
  assert.is(b.ms.gc, 1)
  assert.is(b.idleMs, 1)
  assert.is(b.ms.other, 0.5) // the last sample stands for one sampling interval (500 µs)
  // only the samples at 1 001 000..1 003 000 µs: cbor, cbor, step
  const w = bucketProfile(profile, 1_001_000, 1_003_000)
  assert.is(w.ms.rpc, 2)
  assert.is(w.ms.raft, 1)
  assert.is(w.ms.transport, 0)
})

test('scaleToCpu: shares of non-idle samples times the main thread CPU', () => {
  const ms = scaleToCpu(bucketProfile(profile, 0, Number.MAX_SAFE_INTEGER), 15)
  assert.is(ms.rpc, 15 * 3 / 7.5)
  assert.is(Object.values(ms).reduce((a, x) => a + x, 0), 15)
})

test('parseStraceSummary and groupSyscalls: counts by name, the profiler signals out of the total', () => {
  const text = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.012345          10      3902       120 futex
 20.00    0.005000           7       643           write
  5.00    0.001000           5        32           fdatasync
  1.00    0.000100           1      1633           tgkill
  0.50    0.000050           2       455           pwrite64
------ ----------- ----------- --------- --------- ----------------
100.00    0.020000           3      6665       120 total
`
  const c = parseStraceSummary(text)
  assert.equal(c, { futex: 3902, write: 643, fdatasync: 32, tgkill: 1633, pwrite64: 455 })
  const g = groupSyscalls(c)
  assert.is(g['fsync (fsync, fdatasync, msync, sync_file_range)'], 32)
  assert.is(g['file writes (pwrite64, pwritev: WAL batches, LMDB pages)'], 455)
  assert.is(g.total, 3902 + 643 + 32 + 455)
})

test('threadDelta: per-name sums over threads matched by tid; a thread born in the window counts from 0', () => {
  const a = new Map([['libuv-worker (11)', 100], ['libuv-worker (12)', 50], ['V8 DefaultWorke (13)', 10]])
  const b = new Map([['libuv-worker (11)', 130], ['libuv-worker (12)', 55], ['V8 DefaultWorke (13)', 10], ['node (14)', 7]])
  assert.equal(threadDelta(a, b), { 'libuv-worker': 35, 'V8 DefaultWorke': 0, node: 7 })
})

test('threadCpuMsByName: this process\'s worker thread shows up by name, busy, and the main thread does not', async () => {
  const w = new Worker('const t = Date.now(); while (Date.now() - t < 300) {}', { eval: true })
  await new Promise((resolve) => setTimeout(resolve, 250))
  const seen = threadCpuMsByName(process.pid)
  await w.terminate()
  assert.not.ok([...seen.keys()].some((k) => k.endsWith(`(${process.pid})`)), 'the main thread is left out')
  assert.ok([...seen.values()].some((ms) => ms >= 50), `a thread with the worker's CPU: ${JSON.stringify([...seen])}`)
})

test('learnerCounts: 0 first, sorted, bounded, a clear error otherwise', () => {
  assert.equal(learnerCounts('15'), [0, 15])
  assert.equal(learnerCounts('15,5,0'), [0, 5, 15])
  assert.throws(() => learnerCounts('16'), /--learners/)
  assert.throws(() => learnerCounts(undefined), /--learners needs a count/)
})

test.run()
