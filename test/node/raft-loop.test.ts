// The shipped Ready loop's persist-and-send step (node/core/raft-loop.ts): when it may send before
// persisting, and when it defers a commit-only HardState. Events are recorded in order over the
// simulator's in-memory log store, so a reordering (a vote sent before it is saved) fails here.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryLogStore } from '../../sim/memory-log-store.ts'
import { ReadyPersistence } from '../../node/core/raft-loop.ts'
import type { Entry, HardState, Message, Ready } from '../../protocols/raft/types.ts'

const conf = { voters: ['1', '2', '3'], learners: [] }
const ent = (index: number, term: number): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode('x') })
const msg = (type: Message['type'], term: number): Message => ({ type, from: '1', to: '2', term })

class RecordingStore extends MemoryLogStore {
  readonly events: string[] = []
  override save (r: Parameters<MemoryLogStore['save']>[0]): void {
    this.events.push(`save hs=${r.hardState != null ? `${r.hardState.term}/${r.hardState.vote ?? '-'}/${r.hardState.commit}` : '-'} entries=${r.entries?.length ?? 0}`)
    super.save(r)
  }

  override sync (): void { this.events.push('sync'); super.sync() }
}

function ready (p: Partial<Ready>): Ready {
  return { softState: null, hardState: null, entries: [], snapshot: null, committedEntries: [], messages: [], readStates: [], mustSync: false, ...p }
}

function run (store: RecordingStore, p: ReadyPersistence, rd: Ready, leading: boolean): void {
  p.persistAndSend(rd, leading, {
    store,
    send: (ms) => { if (ms.length > 0) store.events.push(`send ${ms.map(m => m.type).join(',')}`) },
    installSnapshot: () => { store.events.push('install') }
  })
}

const hs = (term: number, vote: string | null, commit: number): HardState => ({ term, vote, commit })

test('a vote is saved and synced before the vote response leaves', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(1, null, 0))
  run(store, p, ready({ hardState: hs(2, '2', 0), messages: [msg('MsgVoteResp', 2)], mustSync: true }), false)
  assert.equal(store.events, ['save hs=2/2/0 entries=0', 'sync', 'send MsgVoteResp'])
})

test('a leader in a stable term sends its appends before writing its own entries', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(2, '1', 0))
  run(store, p, ready({ entries: [ent(1, 2)], messages: [msg('MsgApp', 2)], mustSync: true }), true)
  assert.equal(store.events, ['send MsgApp', 'save hs=- entries=1', 'sync'])
})

test('a new leader whose term or vote changed in this Ready persists first', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(1, null, 0))
  run(store, p, ready({ hardState: hs(2, '1', 0), entries: [ent(1, 2)], messages: [msg('MsgApp', 2)], mustSync: true }), true)
  assert.equal(store.events, ['save hs=2/1/0 entries=1', 'sync', 'send MsgApp'])
})

test('a commit-only HardState waits for the next save, or for flushDeferred', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(2, '1', 0))
  run(store, p, ready({ hardState: hs(2, '1', 1) }), false)
  assert.equal(store.events, [], 'no fsync for a commit-only change')
  run(store, p, ready({ entries: [ent(1, 2)], mustSync: true }), false)
  assert.equal(store.events, ['save hs=2/1/1 entries=1', 'sync'], 'the deferred commit rides on the next save')
  store.events.length = 0
  run(store, p, ready({ hardState: hs(2, '1', 2) }), false)
  p.flushDeferred(store)
  assert.equal(store.events, ['save hs=2/1/2 entries=0', 'sync'])
})

test('a crash right after a leader sends first leaves its entries off the disk', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(2, '1', 0))
  const done = p.persistAndSend(ready({ entries: [ent(1, 2)], messages: [msg('MsgApp', 2)], mustSync: true }), true, {
    store,
    send: (ms) => { store.events.push(`send ${ms.map(m => m.type).join(',')}`) },
    installSnapshot: () => {},
    afterSend: () => true
  })
  assert.is(done, false, 'the caller is told to stop')
  assert.equal(store.events, ['send MsgApp'])
})

// The planted loop bugs the simulator must catch (sim/run.ts BUGS): each reorders one
// acknowledgement ahead of the write it stands for.
test('planted vote-before-persist sends the vote response before saving the vote', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(1, null, 0), new Set(['vote-before-persist']))
  run(store, p, ready({ hardState: hs(2, '2', 0), messages: [msg('MsgVoteResp', 2)], mustSync: true }), false)
  assert.equal(store.events, ['send MsgVoteResp', 'save hs=2/2/0 entries=0', 'sync'])
})

test('planted ack-before-sync sends a follower\'s append response before the sync', () => {
  const store = new RecordingStore({ conf })
  const p = new ReadyPersistence(hs(2, '1', 0), new Set(['ack-before-sync']))
  run(store, p, ready({ entries: [ent(1, 2)], messages: [msg('MsgAppResp', 2)], mustSync: true }), false)
  assert.equal(store.events, ['save hs=- entries=1', 'send MsgAppResp', 'sync'])
})

test.run()
