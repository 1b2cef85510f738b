// A read flood from one peer: one key holder that is not an admin pipelines 64 large
// reads (vm.list answers of ~0.9 MiB) on each of 16 RPC streams and never reads the answers (its
// streams are paused, so yamux stops granting the node window). Against one real blixard-node
// process: the node stays alive, its RSS growth stays under a bound that follows from the caps in
// protocols/limits.ts, the admin's reads and writes on another connection go through during and
// after, and the memory comes back once the attacker disconnects: the RPC server's own counters
// (blixard_rpc_held: in flight, answer bytes queued, streams, connections, watches, partial frame
// bytes) return exactly to their values before the attack, and RSS to within a bound. Ports 28100 (metrics 28200).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { TestCluster, waitFor, sleep, vmSpec, rssMiB } from './harness.ts'
import { encodeCbor } from '../../storage/codec.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { testHost } from '../net/helpers.ts'
import { RPC_PROTOCOL } from '../../node/net/rpc.ts'
import { writeFrame } from '../../node/net/frame-stream.ts'
import {
  MAX_RPC_FRAME_BYTES, RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION, RPC_QUEUED_ANSWER_BYTES_TOTAL, RPC_MAX_IN_FLIGHT_PER_CONNECTION
} from '../../protocols/limits.ts'

/** a stopped VM whose record is ~4 KiB (16 long kernel parameters): a 0.9 MiB list needs ~220 VMs, not 2300 */
const bigSpec = (name: string): ReturnType<typeof vmSpec> => ({ ...vmSpec(name), kernelParams: Array.from({ length: 16 }, (_, i) => `blixard.pad${i}=${'x'.repeat(240)}`) })

const c = new TestCluster({ nodes: 1, basePort: 28100 }, 'read-flood')
const TARGET_BYTES = 900 * 1024
const STREAMS = 16
const PIPELINED = 64
/** RSS growth allowed under attack (MiB). What the node may hold for the attacker: the answers
 * queued for its connection (RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION), at most
 * RPC_MAX_IN_FLIGHT_PER_CONNECTION answers being built at once (each a ~0.9 MiB frame plus its
 * decoded records, a few MiB), yamux windows (256 KiB a stream) and 64 small requests per stream;
 * with allocator and GC slack, 200 MiB. Without the caps the node grew ~470 MiB and died (measured
 * before the caps). */
const PEAK_BOUND_MIB = 200
/** RSS above the start once the attacker has left (MiB), waited for up to AFTER_WAIT_MS: V8 and
 * the allocator give pages back lazily, so some of the peak stays for a while; nothing may keep
 * growing for an attacker that has gone (measured: +31..+105 MiB, including the admin's reads). */
const AFTER_BOUND_MIB = 150
const AFTER_WAIT_MS = 20_000
/** JS heap used plus external buffers above the start once the attacker has left (MiB), waited for
 * and reported (a collection may not have run yet in an idle node). */
const HELD_BOUND_MIB = 40

/** heap used + external memory of the node (MiB), from its /metrics */
async function heldMiB (port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const v = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN)
  return (v('blixard_nodejs_heap_size_used_bytes') + v('blixard_nodejs_external_memory_bytes')) / 2 ** 20
}

/** the RPC server's blixard_rpc_held gauges (node/metrics.ts), by `what` */
async function rpcHeld (port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^blixard_rpc_held\{what="([a-z_]+)"\} (\S+)$/gm)) out[m[1]] = Number(m[2])
  return out
}

test.before(async () => {
  await c.prepare()
  c.start(0)
  await waitFor('the node to lead itself', 60_000, async () => await c.agreed([0], 1), 250)
})
test.after(async () => { await c.stop() })

test('a non-admin pipelining 64 large reads on 16 streams without reading: node alive, RSS bounded, others served, memory back', async () => {
  const log = (s: string): void => { process.stderr.write(`  ${s}\n`) }
  try {
    const admin = await c.client(0)
    await admin.call('vm.create', { spec: bigSpec('big-0000'), start: false })
    const one = encodeCbor(await admin.call('vm.list', {})).byteLength
    const want = Math.ceil(TARGET_BYTES / one)
    let next = 1
    const t0 = Date.now()
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < want) {
        const k = next++
        await admin.call('vm.create', { spec: bigSpec(`big-${String(k).padStart(4, '0')}`), start: false })
      }
    }))
    const answer = encodeCbor(await admin.call('vm.list', {}, { timeoutMs: 30_000 })).byteLength
    log(`${want} stopped VMs created in ${Date.now() - t0} ms; vm.list answers ${(answer / 1024).toFixed(0)} KiB`)
    assert.ok(answer >= TARGET_BYTES * 0.95 && answer < MAX_RPC_FRAME_BYTES)
    for (let i = 0; i < 3; i++) await admin.call('vm.list', {}, { timeoutMs: 30_000 }) // warm: the baseline includes one answer's buffers
    await sleep(1000)
    const pid = c.nodes[0].proc!.pid!
    const before = rssMiB(pid)
    const heldBefore = await heldMiB(c.nodes[0].metricsPort)
    const rpcBefore = await rpcHeld(c.nodes[0].metricsPort)
    assert.equal(Object.keys(rpcBefore).sort(), ['connections', 'inflight', 'partial_frame_bytes', 'queued_answer_bytes', 'streams', 'watches'])

    const attacker = await testHost({ clusterKey: await readClusterKey(c.keyFile) })
    let peak = before
    const sampler = setInterval(() => { try { peak = Math.max(peak, rssMiB(pid)) } catch { /* exited: asserted below */ } }, 50)
    const streams: Stream[] = []
    try {
      let id = 1
      let sent = 0
      const resets: string[] = []
      await Promise.all(Array.from({ length: STREAMS }, async () => {
        const s = await attacker.dialProtocol(multiaddr(c.nodes[0].addr), RPC_PROTOCOL)
        s.pause() // never read: yamux stops granting the node window on this stream
        streams.push(s)
        try {
          for (let k = 0; k < PIPELINED; k++) { await writeFrame(s, { id: id++, method: 'vm.list', params: {} }, MAX_RPC_FRAME_BYTES, 5_000); sent++ }
        } catch (err) { resets.push((err as Error).message) } // the node may reset a stream that does not read: fine
      }))
      log(`attacker: ${sent} vm.list sent on ${STREAMS} streams (${(sent * answer / 2 ** 20).toFixed(0)} MiB of answers asked for), none read; ${resets.length} streams reset while sending${resets.length > 0 ? ` (${resets[0]})` : ''}`)
      // during the attack: the admin (another connection) reads the big list and writes
      for (let round = 0; round < 3; round++) {
        const r0 = Date.now()
        const vms = await admin.call('vm.list', {}, { timeoutMs: 15_000 })
        const readMs = Date.now() - r0
        assert.is(vms.length, want + round)
        const w0 = Date.now()
        await admin.call('vm.create', { spec: vmSpec(`during-${round}`), start: false }, { timeoutMs: 15_000 })
        log(`during the attack, round ${round}: admin vm.list ${readMs} ms, vm.create ${Date.now() - w0} ms; node RSS ${rssMiB(pid).toFixed(0)} MiB`)
        await sleep(1000)
      }
      assert.is(c.nodes[0].proc!.exitCode, null, 'node alive under attack')
    } finally {
      for (const s of streams) s.abort(new Error('attacker leaves'))
      await attacker.stop()
    }
    const left = Date.now()
    clearInterval(sampler)
    // what the RPC layer holds for the attacker is back to what it held before, soon: nothing in
    // flight or queued, its streams and connection forgotten (the admin's are still there)
    const rpcAfter = await waitFor('the RPC server to hold what it held before the attacker', 5_000, async () => {
      const now = await rpcHeld(c.nodes[0].metricsPort)
      return JSON.stringify(now) === JSON.stringify(rpcBefore) ? now : null
    }, 100).catch(async (err: Error) => { throw new Error(`${err.message}: before ${JSON.stringify(rpcBefore)}, now ${JSON.stringify(await rpcHeld(c.nodes[0].metricsPort))}`) })
    log(`RPC server holds ${JSON.stringify(rpcAfter)} ${Date.now() - left} ms after the attacker left, as before it came`)
    // the admin is served after the attack (its reads also allocate: heap used is not a measure of
    // what the node holds for the attacker until V8 collects, which an idle node may not do for long)
    for (let i = 0; i < 3; i++) assert.is((await admin.call('vm.list', {}, { timeoutMs: 15_000 })).length, want + 3)
    let after = rssMiB(pid)
    let heldAfter = await heldMiB(c.nodes[0].metricsPort)
    while (Date.now() - left < AFTER_WAIT_MS && (after - before >= AFTER_BOUND_MIB || heldAfter - heldBefore >= HELD_BOUND_MIB)) {
      await sleep(500)
      after = rssMiB(pid)
      heldAfter = await heldMiB(c.nodes[0].metricsPort)
    }
    const afterS = ((Date.now() - left) / 1000).toFixed(1)
    const metrics = await (await fetch(`http://127.0.0.1:${c.nodes[0].metricsPort}/metrics`)).text()
    const refused = metrics.split('\n').filter(l => l.startsWith('blixard_rpc_refused_total')).join('; ')
    log(`node RSS MiB: before ${before.toFixed(0)}, peak ${peak.toFixed(0)} (+${(peak - before).toFixed(0)}), ${afterS} s after the attacker left ${after.toFixed(0)} (+${(after - before).toFixed(0)}); heap used + external ${heldBefore.toFixed(0)} -> ${heldAfter.toFixed(0)} MiB; caps: ${RPC_MAX_IN_FLIGHT_PER_CONNECTION} in flight a connection, answers queued ${RPC_QUEUED_ANSWER_BYTES_PER_CONNECTION / 2 ** 20} MiB a connection / ${RPC_QUEUED_ANSWER_BYTES_TOTAL / 2 ** 20} MiB in all; ${refused}`)
    assert.is(c.nodes[0].proc!.exitCode, null, 'node alive after the attack')
    assert.ok(peak - before < PEAK_BOUND_MIB, `RSS grew ${(peak - before).toFixed(0)} MiB under attack (bound ${PEAK_BOUND_MIB})`)
    // reported, not asserted: heap used counts garbage until a collection (see above)
    if (heldAfter - heldBefore >= HELD_BOUND_MIB) log(`heap used + external still ${(heldAfter - heldBefore).toFixed(0)} MiB above the start (garbage not yet collected, or held)`)
    assert.ok(after - before < AFTER_BOUND_MIB, `RSS ${(after - before).toFixed(0)} MiB above the start after the attacker left (bound ${AFTER_BOUND_MIB})`)
    assert.match(refused, /blixard_rpc_refused_total\{reason="answer_bytes"\} [1-9]/, 'the refused answers are counted')
    // after: the admin's read and write still go through
    assert.is((await admin.call('vm.list', {}, { timeoutMs: 15_000 })).length, want + 3)
    await admin.call('vm.create', { spec: vmSpec('after-0'), start: false }, { timeoutMs: 15_000 })
    const st = await waitFor('the node to still lead', 10_000, async () => await c.agreed([0], 1))
    assert.ok(st[0].leader != null)
  } catch (err) { console.log(c.logTails()); throw err }
})

test.run()
