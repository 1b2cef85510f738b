// WalLogStore (the daemon's) against a plain-array model, and MemoryLogStore (the simulator's disk)
// beside it, on random sequences of appends (with truncation), hard states, compactions, snapshot
// installs and reopens; the WAL with tiny segments, so that rolling to a new segment and deleting
// dead ones happen all the time. And the migration from the LMDB layout of earlier releases
// (storage/log-migrate.ts): the model's final state written in that layout migrates to a WAL that
// matches it.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import type { ConfState, Entry, HardState, Snapshot } from '../../protocols/raft/types.ts'
import type { LogStore } from '../../protocols/raft/storage.ts'
import { RaftError } from '../../protocols/raft/types.ts'
import { applyConfChange, encodeConfChange, decodeConfChange } from '../../protocols/raft/confchange.ts'
import { migrateLmdbLog } from '../../storage/log-migrate.ts'
import { writeLmdbLog } from './lmdb-log-fixture.ts'
import { WalLogStore } from '../../storage/wal-log-store.ts'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { tempDir, removeDir } from './tmpdir.ts'

const CONF0: ConfState = { voters: ['a'], learners: [] }

/** The model: the log as a plain array of entries after `offset`, and the snapshot beside it. */
class Model {
  hard: HardState = { term: 0, vote: null, commit: 0 }
  snap: Snapshot = { meta: { index: 0, term: 0, conf: CONF0 }, data: new Uint8Array(0) }
  offset = 0
  offsetTerm = 0
  log: Entry[] = [] // log[k].index === offset + 1 + k

  last (): number { return Math.max(this.offset + this.log.length, this.snap.meta.index) }
  termOf (i: number): number | undefined {
    if (i === this.snap.meta.index) return this.snap.meta.term
    if (i === this.offset) return this.offsetTerm
    return this.log.find(e => e.index === i)?.term
  }

  append (es: Entry[]): void {
    const fresh = es.filter(e => e.index > this.offset)
    if (fresh.length === 0) return
    this.log = this.log.filter(e => e.index < fresh[0].index).concat(fresh)
  }

  install (s: Snapshot): void {
    if (s.meta.index < this.snap.meta.index) return
    const agrees = this.termOf(s.meta.index) === s.meta.term
    this.log = agrees ? this.log.filter(e => e.index > s.meta.index) : []
    this.offset = s.meta.index
    this.offsetTerm = s.meta.term
    this.snap = s
  }

  compact (index: number, conf: ConfState, data: Uint8Array, keep: number): void {
    const term = this.termOf(index)
    if (index <= this.snap.meta.index || term === undefined) return
    this.snap = { meta: { index, term, conf }, data }
    const through = Math.max(this.offset, index - keep)
    this.offsetTerm = this.termOf(through) ?? this.offsetTerm
    this.log = this.log.filter(e => e.index > through)
    this.offset = through
  }

  /** Only committed conf entries count at start-up: an uncommitted one may yet be truncated. */
  conf (): ConfState {
    let c = this.snap.meta.conf
    for (const e of this.log) if (e.type === 'conf' && e.index > this.snap.meta.index && e.index <= this.hard.commit) c = applyConfChange(c, decodeConfChange(e.data))
    return c
  }
}

type Op =
  | { k: 'append', at: number, n: number, bump: number, conf: boolean }
  | { k: 'hard', term: number, commit: number }
  | { k: 'compact', at: number, keep: number }
  | { k: 'snap', delta: number, agree: boolean }
  | { k: 'reopen' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('append' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), n: fc.integer({ min: 1, max: 6 }), bump: fc.integer({ min: 0, max: 2 }), conf: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('hard' as const), term: fc.integer({ min: 0, max: 50 }), commit: fc.integer({ min: 0, max: 100 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('compact' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), keep: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('snap' as const), delta: fc.integer({ min: -3, max: 3 }), agree: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reopen' as const) }) }
)

function dataFor (index: number, term: number): Uint8Array {
  return new Uint8Array([index & 255, term & 255, (index * 7) & 255, 42].slice(0, 1 + (index % 4)))
}

function errorKind (f: () => unknown): string {
  try { f() } catch (e) { return e instanceof RaftError ? e.kind : 'other' }
  return 'none'
}

/** Everything observable through RaftStorage must match the model. */
function check (s: LogStore, m: Model, label: string): void {
  const first = m.offset + 1
  const last = m.last()
  assert.is(s.firstIndex(), first, `${label} firstIndex`)
  assert.is(s.lastIndex(), last, `${label} lastIndex`)
  assert.equal(s.initialState().hardState, m.hard, `${label} hardState`)
  assert.equal(s.initialState().conf, m.conf(), `${label} conf`)
  assert.equal(s.snapshot().meta, m.snap.meta, `${label} snapshot meta`)
  assert.equal([...s.snapshot().data], [...m.snap.data], `${label} snapshot data`)
  for (let i = m.offset; i <= last; i++) assert.is(s.term(i), m.termOf(i), `${label} term(${i})`)
  assert.is(errorKind(() => s.term(last + 1)), 'Unavailable', `${label} term beyond last`)
  if (m.offset > 0) assert.is(errorKind(() => s.term(m.offset - 1)), 'Compacted', `${label} term below first`)
  assert.is(errorKind(() => s.entries(m.offset, last + 1)), 'Compacted', `${label} entries at compacted`)
  assert.is(errorKind(() => s.entries(first, last + 2)), 'Unavailable', `${label} entries beyond last`)
  const got = s.entries(first, last + 1)
  assert.equal(got.map(e => ({ ...e, data: [...e.data] })), m.log.map(e => ({ ...e, data: [...e.data] })), `${label} entries`)
  if (m.log.length > 1) {
    const limited = s.entries(first, last + 1, 1)
    assert.ok(limited.length >= 1 && limited.length < m.log.length + 1, `${label} maxBytes returns a non-empty prefix`)
  }
}

interface Subject { store: LogStore, reopen: () => LogStore }

export function runOps (ops: Op[], subjects: Subject[]): Model {
  const m = new Model()
  let term = 1
  for (const op of ops) {
    const last = m.last()
    switch (op.k) {
      case 'append': {
        // Raft never rewrites entries at or below a snapshot (they are committed): appends start above it.
        const from = Math.max(m.snap.meta.index + 1, Math.min(last + 1, m.offset + 1 + Math.floor(op.at * (last - m.offset + 1))))
        term += op.bump
        const es: Entry[] = []
        for (let i = 0; i < op.n; i++) {
          const index = from + i
          const conf = op.conf && i === 0
          es.push({ index, term, type: conf ? 'conf' : 'normal', data: conf ? encodeConfChange({ type: 'addLearner', node: `n${index}` }) : dataFor(index, term) })
        }
        m.append(es)
        for (const s of subjects) { s.store.save({ entries: es }); s.store.sync() }
        break
      }
      case 'hard': {
        const hs: HardState = { term: op.term, vote: op.term % 2 === 0 ? null : 'b', commit: op.commit }
        m.hard = hs
        for (const s of subjects) { s.store.save({ hardState: hs }); s.store.sync() }
        break
      }
      case 'compact': {
        const index = Math.min(last, m.snap.meta.index + Math.floor(op.at * (last - m.snap.meta.index + 1)))
        const conf: ConfState = { voters: ['a', `c${index}`], learners: [] }
        const data = new Uint8Array([index & 255, 1, 2])
        m.compact(index, conf, data, op.keep)
        for (const s of subjects) s.store.compact(index, conf, data, op.keep)
        break
      }
      case 'snap': {
        const index = Math.max(1, last + op.delta)
        const t = op.agree ? (m.termOf(index) ?? term) : term + 100
        term = Math.max(term, t)
        const snap: Snapshot = { meta: { index, term: t, conf: { voters: ['a', 'b'], learners: [`s${index}`] } }, data: new Uint8Array([9, index & 255]) }
        m.install(snap)
        for (const s of subjects) { s.store.save({ snapshot: snap }); s.store.sync() }
        break
      }
      case 'reopen':
        for (const s of subjects) s.store = s.reopen()
        break
    }
    for (const s of subjects) check(s.store, m, `${s.store.constructor.name} after ${op.k}`)
  }
  return m
}

/** What a migration keeps of `m`: entries kept behind the snapshot are not carried over. */
function migrated (m: Model): Model {
  const out = new Model()
  out.hard = m.hard
  out.snap = m.snap
  out.offset = m.snap.meta.index
  out.offsetTerm = m.snap.meta.term
  out.log = m.log.filter((e) => e.index > m.snap.meta.index)
  return out
}

// noSync: reopening after close() is what is checked here; durability is the crash test's job.
test('WalLogStore and MemoryLogStore match the model on random sequences; the same log in the LMDB layout migrates to a WAL that matches it', () => {
  fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 60, max: 400 }), (ops, segmentBytes) => {
    const dir = tempDir()
    const wdir = tempDir()
    const wal: Subject = { store: WalLogStore.open(wdir, { initialConf: CONF0, noSync: true, segmentBytes }), reopen: () => { wal.store.close(); return WalLogStore.open(wdir, { noSync: true, segmentBytes }) } }
    const mem = new MemoryLogStore({ conf: CONF0 })
    const memory: Subject = { store: mem, reopen: () => { mem.crash(); return mem } }
    try {
      const m = runOps(ops, [wal, memory])
      writeLmdbLog(dir, { snapshot: m.snap, offset: m.offset, offsetTerm: m.offsetTerm, hardState: m.hard, entries: m.log })
      migrateLmdbLog(dir)
      const after = WalLogStore.open(dir, { noSync: true, segmentBytes })
      try { check(after, migrated(m), 'the WAL migrated from the LMDB layout') } finally { after.close() }
    } catch (e) {
      if (process.env.DEBUG_PROP) console.error(e instanceof Error ? e.message : e, JSON.stringify(ops))
      throw new Error(`${e instanceof Error ? e.message : String(e)}`)
    } finally {
      wal.store.close()
      removeDir(dir)
      removeDir(wdir)
    }
  }), { numRuns: Number(process.env.PROP_RUNS ?? 200) })
})

type Opener = (dir: string, opts?: { noSync?: boolean, initialConf?: ConfState }) => LogStore
const STORES: Array<[string, Opener]> = [
  ['WalLogStore', (dir, opts) => WalLogStore.open(dir, { ...opts, segmentBytes: 64 * 1024 })]
]
for (const [name, openStore] of STORES) {

test(`${name}: append at a gap is refused (Unavailable) and changes nothing`, () => {
  const dir = tempDir()
  const s = openStore(dir)
  s.save({ entries: [{ index: 1, term: 1, type: 'normal', data: new Uint8Array([1]) }] })
  assert.is(errorKind(() => s.save({ entries: [{ index: 3, term: 1, type: 'normal', data: new Uint8Array([3]) }] })), 'Unavailable')
  assert.is(s.lastIndex(), 1)
  const e = (index: number): Entry => ({ index, term: 1, type: 'normal', data: new Uint8Array([index]) })
  assert.is(errorKind(() => s.save({ entries: [e(2), e(4)] })), 'Unavailable')
  assert.is(s.lastIndex(), 1)
  s.close()
})

test(`${name}: an append that would rewrite entries kept behind the snapshot is refused (Compacted) and changes nothing`, () => {
  const dir = tempDir()
  const s = openStore(dir)
  const e = (index: number, term = 1): Entry => ({ index, term, type: 'normal', data: new Uint8Array([index]) })
  s.save({ entries: [1, 2, 3, 4, 5, 6].map((i) => e(i)) })
  s.compact(5, { voters: ['a'], learners: [] }, new Uint8Array([9]), 3) // entries 3..6 stay, snapshot at 5
  assert.is(s.firstIndex(), 3)
  assert.is(errorKind(() => s.save({ entries: [e(4, 2), e(5, 2)] })), 'Compacted')
  assert.is(errorKind(() => s.save({ entries: [e(5, 2)] })), 'Compacted')
  assert.equal(s.entries(3, 7).map((x) => [x.index, x.term]), [[3, 1], [4, 1], [5, 1], [6, 1]], 'the log is untouched')
  s.save({ entries: [e(6, 2), e(7, 2)] }) // above the snapshot: an ordinary rewrite
  assert.equal(s.entries(5, 8).map((x) => [x.index, x.term]), [[5, 1], [6, 2], [7, 2]])
  s.close()
})

test(`${name}: reads across the in-memory tail and the disk agree`, () => {
  const dir = tempDir()
  const s = openStore(dir, { noSync: true })
  let next = 1
  for (let b = 0; b < 5; b++) {
    const es: Entry[] = []
    for (let k = 0; k < 1500; k++, next++) es.push({ index: next, term: 1 + b, type: 'normal', data: dataFor(next, 1 + b) })
    s.save({ entries: es })
  }
  // truncate into the middle, then read everything from both places
  s.save({ entries: [{ index: 7000, term: 9, type: 'normal', data: dataFor(7000, 9) }] })
  const all = s.entries(1, 7001)
  assert.is(all.length, 7000)
  all.forEach((e, k) => {
    assert.is(e.index, k + 1)
    assert.equal([...e.data], [...dataFor(e.index, e.term)])
  })
  assert.is(all[6999].term, 9)
  s.close()
  const r = openStore(dir, { noSync: true })
  assert.equal(r.entries(1, 7001).map(e => [e.index, e.term, [...e.data]]), all.map(e => [e.index, e.term, [...e.data]]))
  r.close()
})

test(`${name}: one entry per save, 10 000 times (the in-place append path): reads, terms, conf entries and a reopen agree`, () => {
  const dir = tempDir()
  const s = openStore(dir, { noSync: true, initialConf: { voters: ['a'], learners: [] } })
  const cc = encodeConfChange({ type: 'addLearner', node: 'b' })
  for (let i = 1; i <= 10_000; i++) {
    const term = 1 + Math.floor(i / 3000)
    s.save({ entries: [i === 5000 ? { index: i, term, type: 'conf', data: cc } : { index: i, term, type: 'normal', data: dataFor(i, term) }] })
  }
  assert.is(s.lastIndex(), 10_000)
  assert.is(s.term(2999), 1)
  assert.is(s.term(3000), 2)
  assert.is(s.term(10_000), 4)
  assert.equal(s.initialState().conf, { voters: ['a'], learners: [] }, 'an uncommitted conf entry does not count')
  s.save({ hardState: { term: 4, vote: null, commit: 5000 } })
  const check = (st: LogStore): void => {
    const all = st.entries(1, 10_001)
    assert.is(all.length, 10_000)
    all.forEach((e, k) => { assert.is(e.index, k + 1); if (e.index !== 5000) assert.equal([...e.data], [...dataFor(e.index, e.term)]) })
    assert.is(all[4999].type, 'conf')
    assert.equal(st.initialState().conf, { voters: ['a'], learners: ['b'] })
  }
  check(s)
  // an overwrite in the middle after the in-place appends, then the appends again
  s.save({ entries: [{ index: 9000, term: 7, type: 'normal', data: dataFor(9000, 7) }] })
  s.save({ entries: [{ index: 9001, term: 7, type: 'normal', data: dataFor(9001, 7) }] })
  assert.is(s.lastIndex(), 9001)
  assert.equal(s.entries(8999, 9002).map((e) => [e.index, e.term]), [[8999, 3], [9000, 7], [9001, 7]])
  s.close()
  const r = openStore(dir, { noSync: true })
  assert.is(r.lastIndex(), 9001)
  assert.equal(r.entries(8999, 9002).map((e) => [e.index, e.term]), [[8999, 3], [9000, 7], [9001, 7]])
  assert.equal(r.initialState().conf, { voters: ['a'], learners: ['b'] })
  r.close()
})

test(`${name}: a closed store refuses writes (Unavailable)`, () => {
  const dir = tempDir()
  const s = openStore(dir)
  s.close()
  assert.is(errorKind(() => s.save({ hardState: { term: 1, vote: null, commit: 0 } })), 'Unavailable')
})

test(`${name}: initialConf is persisted on first open and kept on reopen`, () => {
  const dir = tempDir()
  openStore(dir, { initialConf: { voters: ['x', 'y'], learners: ['z'] } }).close()
  const s = openStore(dir, { initialConf: { voters: ['other'], learners: [] } })
  assert.equal(s.initialState().conf, { voters: ['x', 'y'], learners: ['z'] })
  s.close()
})

test(`${name}: entries survive a reopen byte for byte, large payloads included`, () => {
  const dir = tempDir()
  let s = openStore(dir)
  const big = new Uint8Array(300_000).map((_, i) => i * 31)
  s.save({ entries: [{ index: 1, term: 2, type: 'normal', data: big }, { index: 2, term: 2, type: 'normal', data: new Uint8Array(0) }] })
  s.sync()
  s.close()
  s = openStore(dir)
  const es = s.entries(1, 3)
  assert.is(es.length, 2)
  assert.ok(Buffer.from(es[0].data).equals(big))
  assert.is(es[0].data.constructor, Uint8Array)
  assert.is(es[1].data.byteLength, 0)
  s.close()
})

}

test.run()
