import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { loadGossip, type LoadGossip, type LoadSample } from '../../node/net/load-gossip.ts'
import { LOAD_TOPIC, validateLoadReport } from '../../protocols/load.ts'
import { encodePayload} from '../../protocols/framing.ts'
import { isWireError } from '../../protocols/errors.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { dialableAddr } from '../../node/net/host.ts'
import { testHost, until } from './helpers.ts'
import { recordingLogger, type LogRecord } from '../../node/log.ts'

type H = BlixardHost<{ load: LoadGossip }>
const hosts: H[] = []
let clock = 1_000_000
const records: LogRecord[] = []
const logs = (): string[] => records.map(r => `${r.msg} ${String(r.fields.error)} ${String(r.fields.message)}`)

function sample (i: number): () => LoadSample {
  return () => ({ cpuPct: 10 * i, memPct: 20, diskPct: 30.5, vmCount: i, appliedIndex: 100 + i })
}

test.before(async () => {
  for (let i = 0; i < 3; i++) {
    hosts.push(await testHost<{ load: LoadGossip }>({
      services: {
        load: loadGossip({ sample: sample(i), intervalMs: 100, now: () => clock, staleMs: 3000, log: recordingLogger(records).log })
      }
    }))
  }
  await hosts[1].dial(dialableAddr(hosts[0]))
  await hosts[2].dial(dialableAddr(hosts[0]))
  await hosts[2].dial(dialableAddr(hosts[1]))
})
test.after(async () => { await Promise.all(hosts.map(async h => { await h.stop() })) })

test('reports from every node arrive once the mesh has formed', async () => {
  const t0 = Date.now()
  await Promise.all(hosts.map(async h => { await h.services.load.waitForSubscribers(2, 10_000) }))
  const meshMs = Date.now() - t0
  await until(() => hosts.every(h => h.services.load.reports().length === 3), 5000, 'all reports everywhere')
  console.log(`  topic joined by both peers in ${meshMs} ms; all 3x3 reports present after ${Date.now() - t0} ms`)
  const at0 = hosts[0].services.load.get(hosts[2].peerId.toString())!
  assert.is(at0.cpuPct, 20)
  assert.is(at0.vmCount, 2)
  assert.is(at0.appliedIndex, 102)
  assert.is(at0.at, clock)
  assert.ok(at0.seq >= 1)
  assert.is(at0.ageMs, 0)
  assert.not.ok(at0.stale)
})

test('a publish reaches the peers, and the freshest report replaces older ones', async () => {
  const before = hosts[0].services.load.get(hosts[1].peerId.toString())!.seq
  const recipients = await hosts[1].services.load.publishNow()
  assert.ok(recipients >= 1, `recipients ${recipients}`)
  await until(() => hosts[0].services.load.get(hosts[1].peerId.toString())!.seq > before, 3000, 'newer seq')
})

test('reports age on the receiver clock and turn stale', async () => {
  // stop the timers' effect by freezing what we look at: advance the clock past staleMs
  const id = hosts[2].peerId.toString()
  await hosts[2].stop() // no more reports from node 2
  const base = hosts[0].services.load.get(id)!
  clock += 4000
  const aged = hosts[0].services.load.get(id)!
  assert.is(aged.ageMs, base.ageMs + 4000)
  assert.ok(aged.stale)
  // the live nodes publish again with the new clock and are fresh
  await until(() => !hosts[0].services.load.get(hosts[1].peerId.toString())!.stale, 3000, 'fresh report from node 1')
})

test('forged and malformed reports are rejected with a named error and change nothing', async () => {
  const a = hosts[0]
  const b = hosts[1]
  const victim = a.peerId.toString()
  const before = a.services.load.get(victim)
  const rejected = a.services.load.rejected()
  const forged = { node: victim, cpuPct: 99, memPct: 99, diskPct: 99, vmCount: 9, appliedIndex: 1, at: clock + 10, seq: 1e9 }
  // publish straight on the topic, bypassing b's own validation (pubsub validates our own publish too, so
  // remove b's validator first)
  const pubsub = b.services.pubsub
  assert.ok(pubsub != null, 'a node host runs gossipsub')
  pubsub.topicValidators.delete(LOAD_TOPIC)
  await pubsub.publish(LOAD_TOPIC, encodePayload(forged))
  await pubsub.publish(LOAD_TOPIC, Uint8Array.from([0xff, 0x00, 0x13]))
  await pubsub.publish(LOAD_TOPIC, encodePayload({ ...forged, node: b.peerId.toString(), cpuPct: 250 }))
  await until(() => a.services.load.rejected() >= rejected + 3, 3000, 'three rejections')
  assert.ok(before != null)
  assert.is(a.services.load.get(victim)!.cpuPct, 0) // a's own figures, not the forged 99
  assert.ok(a.services.load.get(victim)!.seq < 1e9)
  assert.is(a.services.load.get(b.peerId.toString())!.cpuPct, 10)
  assert.ok(logs().some(l => l.includes('load.report.rejected BadMessage') && l.includes('is not the signer')), logs().join('\n'))
  assert.ok(logs().some(l => l.includes('load.report.rejected BadMessage') && l.includes('undecodable')))
  assert.ok(logs().some(l => l.includes('load.cpuPct')))
})

test('the schema names the bad field', () => {
  const ok = { node: 'n', cpuPct: 1, memPct: 2, diskPct: 3, vmCount: 0, appliedIndex: 0, at: 1, seq: 1 }
  assert.equal(validateLoadReport(ok), ok)
  const warm = { ...ok, warm: [{ pool: 'fn', guests: 2, paused: 1 }] }
  assert.equal(validateLoadReport(warm), warm)
  // a peer's warm-pool counts are bounded: per pool by the pool size limit, pools by their limit
  const many = Array.from({ length: 33 }, (_, i) => ({ pool: `p${i}`, guests: 0, paused: 0 }))
  for (const [bad, field] of [[{ ...ok, memPct: -1 }, 'load.memPct'], [{ ...ok, seq: 'x' }, 'load.seq'], [{ ...ok, x: 1 }, "'x'"], [{ ...ok, node: '' }, 'load.node'],
    [{ ...ok, warm: [{ pool: 'fn', guests: 1e9, paused: 0 }] }, 'load.warm[0].guests'], [{ ...ok, warm: [{ pool: 'fn', guests: 1 }] }, 'load.warm[0]'],
    [{ ...ok, warm: many }, 'load.warm'], [{ ...ok, warm: [{ pool: 'x'.repeat(64), guests: 1, paused: 1 }] }, 'load.warm[0].pool']] as const) {
    try { validateLoadReport(bad); assert.unreachable() } catch (err) {
      assert.ok(isWireError(err), String(err))
      assert.ok((err as Error).message.includes(field), (err as Error).message)
    }
  }
})

test.run()
