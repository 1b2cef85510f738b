// Committed proposals per second of three replicas in one process, through the
// node core that ships (node/core/raft-node.ts: the daemon's Ready loop over the real Raft core),
// the real LMDB log store and the real state machine on LMDB — with fsync on every Ready and
// without. Messages between replicas are handed over in memory and time is virtual (ticks only
// when nothing else is left to do), so this measures the core, the loop and the disk, not the
// network.
//
// npm run bench:raft-core [-- --proposals N] [--batch B] [--json]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Message } from '../protocols/raft/types.ts'
import { WalLogStore } from '../storage/wal-log-store.ts'
import { LmdbKv } from '../storage/lmdb-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY } from '../storage/state-machine.ts'
import type { CommandEnvelope } from '../protocols/commands.ts'
import { RaftNode } from '../node/core/raft-node.ts'
import { seededSigner } from '../protocols/auth.ts'

const args = process.argv.slice(2)
if (args.includes('--help')) {
  console.log('usage: npm run bench:raft-core [-- --proposals N] [--batch B] [--json]')
  process.exit(0)
}
const flag = (name: string, dflt: number): number => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt }
const json = args.includes('--json')
const TOTAL = flag('--proposals', 20_000)
const BATCH = flag('--batch', 256) // proposals in flight at once (the client window)
/** virtual ms per Raft tick (time only moves when the replicas have nothing else to do) */
const TICK_MS = 10
/** Ready passes per drain before the next replica's turn, as node/core/raft-node.ts yields to the event loop */
const READIES_PER_DRAIN = 64

interface Replica { id: string, core: RaftNode, store: WalLogStore, kv: LmdbKv, sm: StateMachine }

/** AddAdmin needs a real Ed25519 peer id (storage/apply-admins.ts checks it): one per proposal,
 * derived from its number and made before the clock starts. */
function peerIds (n: number): string[] {
  const out: string[] = []
  const seed = new Uint8Array(32)
  for (let i = 0; i < n; i++) {
    new DataView(seed.buffer).setUint32(0, i)
    out.push(seededSigner(seed).peerId)
  }
  return out
}

function envelope (i: number, peerId: string): CommandEnvelope & { key: string } {
  return {
    at: 0,
    key: `k${i}`,
    cmd: { type: 'AddAdmin', peerId, name: 'x'.repeat(120) } // ~256 B encoded
  }
}

const PEER_IDS = peerIds(TOTAL)

function run (sync: boolean): { seconds: number, perSec: number, readies: number } {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-bench-raft-'))
  const ids = ['a', 'b', 'c']
  let seed = 1
  const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
  // The environment: an in-memory inbox for the transport, a queue of deferred drains standing in
  // for setImmediate, and virtual timers that fire only when both are empty.
  let inbox: Message[] = []
  let deferred: Array<() => void> = []
  let now = 0
  let timers: Array<{ at: number, run: () => void, live: boolean }> = []
  let readies = 0
  const reps: Replica[] = ids.map((id) => {
    const store = WalLogStore.open(join(dir, id, 'log'), { initialConf: { voters: ids, learners: [] }, noSync: !sync })
    const kv = LmdbKv.open(join(dir, id, 'state'), { sync: sync ? 'lazy' : 'never' })
    const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
    const core = new RaftNode({
      id,
      store,
      sm,
      send: (msgs) => { for (const m of msgs) inbox.push(m) },
      timers: { after: (ms, run) => { const t = { at: now + ms, run, live: true }; timers.push(t); return () => { t.live = false } } },
      defer: (run) => { deferred.push(run) },
      random,
      readContextPrefix: id,
      tickMs: TICK_MS,
      electionTick: 10,
      heartbeatTick: 1,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1 << 20,
      maxInflightMsgs: 256,
      proposalTimeoutMs: null,
      compaction: { due: () => false, keep: () => 0 },
      applyEachEntryAlone: false,
      readiesPerDrain: READIES_PER_DRAIN,
      hooks: { onReadyStart: () => { readies++ } }
    })
    return { id, core, store, kv, sm }
  })
  const byId = new Map(reps.map((r) => [r.id, r]))
  /** One round: every deferred drain, then every message in flight. False when there was nothing. */
  const pump = (): boolean => {
    const work = deferred
    deferred = []
    for (const d of work) d()
    const msgs = inbox
    inbox = []
    for (const m of msgs) byId.get(m.to)?.core.receive(m, m.from)
    return work.length > 0 || msgs.length > 0
  }
  /** Nothing else to do: move virtual time to the next timer and fire what is due. */
  const tick = (): void => {
    timers = timers.filter((t) => t.live)
    if (timers.length === 0) return
    now = Math.min(...timers.map((t) => t.at))
    const due = timers.filter((t) => t.at <= now)
    timers = timers.filter((t) => t.at > now)
    for (const t of due) { t.live = false; t.run() }
  }
  for (const r of reps) r.core.start()
  reps[0].core.campaign()
  while (pump()) { /* elect */ }
  const leader = reps[0]
  if (!leader.core.isLeader()) throw new Error('no leader')
  const base = leader.sm.applied()
  const t0 = process.hrtime.bigint()
  let proposed = 0
  let applied = 0
  let refused = 0
  while (applied < TOTAL) {
    // keep BATCH proposals in flight, as concurrent clients would
    while (proposed < TOTAL && proposed - applied < BATCH) {
      const i = proposed++
      leader.core.propose(envelope(i, PEER_IDS[i]), (o) => { if (o.ok) applied++; else refused++ })
    }
    if (refused > 0) throw new Error(`${refused} proposals refused: the leader lost its office`)
    if (!pump()) tick()
  }
  while (reps.some((r) => r.sm.applied() < leader.sm.applied())) if (!pump()) tick()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const hashes = new Set(reps.map((r) => r.sm.stateHash()))
  if (hashes.size !== 1) throw new Error('replicas diverged')
  if (leader.sm.applied() - base < TOTAL) throw new Error('fewer entries applied than proposed')
  if (leader.sm.listAdmins().length !== TOTAL) throw new Error(`expected ${TOTAL} applied commands, found ${leader.sm.listAdmins().length}: commands were rejected`)
  for (const r of reps) { r.core.stop(true); r.store.close(); r.kv.close() }
  rmSync(dir, { recursive: true, force: true })
  return { seconds, perSec: TOTAL / seconds, readies }
}

const withSync = run(true)
const noSync = run(false)
const result = {
  proposals: TOTAL,
  window: BATCH,
  sync: { seconds: +withSync.seconds.toFixed(3), perSec: Math.round(withSync.perSec), readies: withSync.readies },
  noSync: { seconds: +noSync.seconds.toFixed(3), perSec: Math.round(noSync.perSec), readies: noSync.readies },
  syncOverNoSync: +(withSync.perSec / noSync.perSec).toFixed(3)
}
if (json) {
  console.log(JSON.stringify(result))
} else {
  console.log(`raft-core: ${TOTAL} committed proposals (~256 B), 3 replicas in one process, ${BATCH} in flight`)
  console.log(`  with fsync:    ${result.sync.perSec.toLocaleString('en')} proposals/s  (${result.sync.seconds}s, ${result.sync.readies} Readies)`)
  console.log(`  without fsync: ${result.noSync.perSec.toLocaleString('en')} proposals/s  (${result.noSync.seconds}s, ${result.noSync.readies} Readies)`)
  console.log(`  ratio sync/no-sync: ${result.syncOverNoSync}`)
}
