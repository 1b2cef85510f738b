// Committed proposals per second of three replicas in one process, through the
// real Raft core (protocols/raft), the real LMDB log store and the real state
// machine on LMDB — with fsync on every Ready and without. Messages between
// replicas are handed over in memory, so this measures the core and the disk,
// not the network.
//
// npm run bench:raft-core [-- --proposals N] [--batch B] [--json]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RawNode } from '../protocols/raft/rawnode.ts'
import type { Message } from '../protocols/raft/types.ts'
import { LmdbLogStore } from '../storage/lmdb-log-store.ts'
import { LmdbKv } from '../storage/lmdb-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../storage/state-machine.ts'
import type { CommandEnvelope } from '../protocols/commands.ts'
import { generateKeyPairSync } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'

const args = process.argv.slice(2)
const flag = (name: string, dflt: number): number => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt }
const json = args.includes('--json')
const TOTAL = flag('--proposals', 20_000)
const BATCH = flag('--batch', 256) // proposals in flight at once (the client window)

interface Replica { id: string, node: RawNode, store: LmdbLogStore, kv: LmdbKv, sm: StateMachine }

// AddAdmin refuses anything but an Ed25519 peer id, so each proposal names a real key; the keys
// are made before the clock starts.
function realPeerId (): string {
  const der = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' })
  return peerIdFromPublicKey(publicKeyFromRaw(der.subarray(der.byteLength - 32))).toString()
}
const PEERS: string[] = Array.from({ length: TOTAL }, realPeerId)

function envelope (i: number): Uint8Array {
  const env: CommandEnvelope = {
    at: 0,
    key: `k${i}`,
    cmd: { type: 'AddAdmin', peerId: PEERS[i], name: 'x'.repeat(120) } // ~256 B encoded
  }
  return encodeEnvelope(env)
}

function run (sync: boolean): { seconds: number, perSec: number, readies: number } {
  const dir = mkdtempSync(join(tmpdir(), 'blixard-bench-raft-'))
  const ids = ['a', 'b', 'c']
  let seed = 1
  const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
  const reps: Replica[] = ids.map((id) => {
    const store = LmdbLogStore.open(join(dir, id, 'log'), { initialConf: { voters: ids, learners: [] }, noSync: !sync })
    const kv = LmdbKv.open(join(dir, id, 'state'), { sync: sync ? 'lazy' : 'never' })
    const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
    const node = new RawNode({ id, storage: store, electionTick: 10, heartbeatTick: 1, random, applied: sm.applied() })
    return { id, node, store, kv, sm }
  })
  const byId = new Map(reps.map((r) => [r.id, r]))
  let inbox: Message[] = []
  let readies = 0
  const pump = (): boolean => {
    let did = false
    for (const r of reps) {
      while (r.node.hasReady()) {
        did = true
        readies++
        const rd = r.node.ready()
        if (rd.snapshot != null) { r.store.save({ snapshot: rd.snapshot }); r.sm.restore(rd.snapshot.data, rd.snapshot.meta.index) }
        if (rd.hardState != null || rd.entries.length > 0) r.store.save({ hardState: rd.hardState, entries: rd.entries })
        if (rd.mustSync) r.store.sync()
        inbox.push(...rd.messages)
        for (const e of rd.committedEntries) if (e.type === 'normal' && e.index > r.sm.applied()) r.sm.apply(e.index, e.data)
        r.node.advance(rd)
      }
    }
    const msgs = inbox
    inbox = []
    for (const m of msgs) { byId.get(m.to)?.node.step(m); did = true }
    return did
  }
  reps[0].node.campaign()
  while (pump()) { /* elect */ }
  const leader = reps[0]
  if (leader.node.status().role !== 'leader') throw new Error('no leader')
  const base = leader.sm.applied()
  const t0 = process.hrtime.bigint()
  let proposed = 0
  while (leader.sm.applied() - base < TOTAL) {
    // keep BATCH proposals in flight, as concurrent clients would
    while (proposed < TOTAL && proposed - (leader.sm.applied() - base) < BATCH) leader.node.propose(envelope(proposed++))
    if (!pump()) leader.node.tick()
  }
  while (reps.some((r) => r.sm.applied() < leader.sm.applied())) if (!pump()) leader.node.tick()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const hashes = new Set(reps.map((r) => r.sm.stateHash()))
  if (hashes.size !== 1) throw new Error('replicas diverged')
  if (leader.sm.listAdmins().length !== TOTAL) throw new Error(`expected ${TOTAL} applied commands, found ${leader.sm.listAdmins().length}: commands were rejected`)
  for (const r of reps) { r.store.close(); r.kv.close() }
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
