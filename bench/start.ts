// npm run bench:start [-- --samples 5] [--json]
//
// How fast a guest gets running, cold, from a memory snapshot and from a warm pool,
// each measured in the same run and interleaved so all see the same load:
// 1. bare QEMU (the driver alone, no Blixard): a cold boot of the tiny guest to its ready marker,
//    against a restore of a snapshot of the same guest (start with -incoming, stream the state,
//    cont) to QMP's RESUME;
// 2. through Blixard (1 blixard-node process): vm.create → the VM running (its record read every
//    POLL_MS), against vm.restore → its host reported the restore done, against vm.create of the
//    warm pool's shape → running (handed a paused pool guest: no boot), against vm.clone of the
//    snapshot (vm create --from-snapshot) → the clone running (resumed from the saved state with its
//    own identity: no boot; the node has no Ceph, so the state is a local file and the clone is
//    pinned to the node that holds it). Each sample starts with the
//    pool full and idle (its paused guests take no CPU), so the cold boot does not share the host
//    with a refill. The cold VMs carry one inert kernel parameter (blix.nopool=1), which keeps them
//    out of the pool (protocols/pools.ts: a VM with kernel parameters is never served from one):
//    same kernel, initrd, vCPUs and memory.
// Prints the medians and the ratios against the cold boot (the targets, through Blixard:
// restore ≤ 0.3 × cold, warm-pool create→running ≤ 100 ms; the clone has no target of its own).
import '../node/polyfill.ts'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestCluster, vmSpec, waitFor } from '../test/cluster/harness.ts'
import { QemuDriver, type QemuLaunchSpec } from '../node/qemu/driver.ts'
import { runtimePaths } from '../node/qemu/paths.ts'
import { loadState, saveState } from '../node/qemu/snapshot.ts'
import { loadTinyGuest, tinyGuestBoot } from '../node/qemu/tiny-guest.ts'
import { probeKvm } from '../node/qemu/kvm-probe.ts'
import type { RpcClient } from '../node/net/rpc.ts'
import type { VmRecord } from '../protocols/model.ts'
import { qemuPidsFor } from '../test/vm/helpers.ts'

const argv = process.argv.slice(2)
const get = (f: string, d: number): number => { const i = argv.indexOf(f); return i >= 0 ? Number(argv[i + 1]) : d }
const json = argv.includes('--json')
const SAMPLES = get('--samples', 5)
const MEMORY = 96 // MiB, the same for every guest here
const BOOT_TIMEOUT_MS = 150_000
/** target: a restore through Blixard within 0.3 × the cold boot of the same guest */
const TARGET_RATIO = 0.3
/** target: a warm-pool create→running through Blixard within this, at the median */
const TARGET_WARM_MS = 100
/** how often the VM record is read while waiting for running (bounds the figures' resolution) */
const POLL_MS = 5
/** how long the pool may take to refill between samples (a TCG boot on a loaded host) */
const REFILL_TIMEOUT_MS = 300_000

const say = (s: string): void => { if (!json) process.stderr.write(s + '\n') }
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }
const r0 = (x: number): number => Math.round(x)
const r2 = (x: number): number => Math.round(x * 100) / 100

async function bareRun (): Promise<{ cold: number[], restore: number[], accel: string, stateBytes: number }> {
  const guest = await loadTinyGuest()
  const accel = (await probeKvm({ ...guest })).accel
  const dir = mkdtempSync(join(tmpdir(), 'blx-bench-start-'))
  const d = new QemuDriver({ dataDir: dir, accel })
  const spec = (vmId: string): QemuLaunchSpec => ({ vmId, generation: 1, vcpus: 1, memoryMiB: MEMORY, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: vmId }) })
  const cold: number[] = []
  const restore: number[] = []
  let stateBytes = 0
  const started = new Set<string>(['saved'])
  try {
    // the snapshot every restore starts from: a booted guest, saved once
    await d.start(spec('saved'))
    await d.waitForEvent('saved', (e) => e.type === 'running', BOOT_TIMEOUT_MS)
    const file = join(dir, 'saved.state')
    stateBytes = (await saveState(await d.qmp('saved'), file, join(dir, 'save.sock'))).sizeBytes
    await d.cleanup('saved')
    for (let i = 0; i < SAMPLES; i++) {
      started.add(`cold${i}`)
      let t0 = performance.now()
      await d.start(spec(`cold${i}`))
      await d.waitForEvent(`cold${i}`, (e) => e.type === 'running', BOOT_TIMEOUT_MS)
      cold.push(performance.now() - t0)
      await d.cleanup(`cold${i}`)
      // the same devices as the saved guest (its id is in its chardev paths, not in the state)
      const sock = join(runtimePaths(dir, 'saved').dir, 'restore.sock')
      t0 = performance.now()
      await d.start({ ...spec('saved'), readiness: 'qmp', incoming: sock })
      const running = d.waitForEvent('saved', (e) => e.type === 'running', BOOT_TIMEOUT_MS)
      await loadState(async () => await d.qmp('saved'), file, sock)
      await running
      restore.push(performance.now() - t0)
      await d.cleanup('saved')
      say(`  bare sample ${i + 1}: cold ${r0(cold[i])} ms, restore ${r0(restore[i])} ms`)
    }
  } finally {
    // a sample that failed half-way leaves its guest running: close() leaves guests alone
    for (const id of started) await d.cleanup(id).catch(() => {})
    await d.close()
    rmSync(dir, { recursive: true, force: true })
  }
  return { cold, restore, accel, stateBytes }
}

async function untilPhase (client: RpcClient, id: string, phase: string, timeoutMs: number): Promise<VmRecord> {
  return await waitFor(`VM ${id} ${phase}`, timeoutMs, async () => {
    // a local read: one node, so its applied state is the cluster's; no ReadIndex round in the figure
    const v: VmRecord = await client.call('vm.show', { vm: id, stale: true })
    if (v.status.phase === 'failed') throw new Error(`VM ${v.spec.name} failed: ${v.status.reason}`)
    return v.status.phase === phase ? v : null
  }, POLL_MS)
}

/** the node's pool is full: `size` pool guests, each paused (the node's log says so) */
function poolFull (c: TestCluster, size: number): boolean {
  let dirs: string[]
  try { dirs = readdirSync(join(c.nodes[0].dir, 'vms')).filter((d) => d.startsWith('warm.')) } catch { return false }
  const log = c.log(0).split('\n').filter((l) => l.includes('"msg":"warm pool guest: pause"'))
  return dirs.length === size && dirs.every((id) => log.some((l) => l.includes(`"${id}"`)))
}

/** the create's answer; the host's figures: QEMU start → the state in and resumed, and that plus the identity typed */
interface CloneSteps { createdMs: number, resumedMs: number, hostMs: number }

async function blixardRun (): Promise<{ cold: number[], restore: number[], hostRestore: number[], warm: number[], warmSteps: Array<{ createdMs: number, handedOverMs: number }>, clone: number[], cloneSteps: CloneSteps[] }> {
  const c = new TestCluster({ nodes: 1, basePort: 17670 }, 'bench-start')
  const cold: number[] = []
  const restore: number[] = []
  const hostRestore: number[] = []
  const warm: number[] = []
  const warmSteps: Array<{ createdMs: number, handedOverMs: number }> = []
  const clone: number[] = []
  const cloneSteps: CloneSteps[] = []
  /** every VM this run created: the snapshot's VM runs to the end, and a guest outlives its daemon */
  const ids: string[] = []
  try {
    await c.prepare()
    c.start(0)
    await waitFor('a 1-node cluster', 90_000, async () => await c.agreed([0], 1), 250)
    const client = await c.client(0)
    await waitFor('node registered', 30_000, async () => (await client.call('node.list', {})).length === 1, 200)
    const saved = await client.call('vm.create', { spec: { ...vmSpec('saved'), memoryMiB: MEMORY } })
    ids.push(saved.id)
    await untilPhase(client, saved.id, 'running', BOOT_TIMEOUT_MS)
    await client.call('vm.snapshot', { vm: saved.id, name: 'warm' })
    await waitFor('the snapshot ready', 60_000, async () => (await client.call('vm.snapshotList', { vm: saved.id }))[0]?.phase === 'ready', 50)
    // one warm guest: each sample takes it and the next waits for the refill
    await client.call('pool.set', { name: 'bench', vcpus: 1, memoryMiB: MEMORY, size: 1 })
    for (let i = 0; i < SAMPLES; i++) {
      await waitFor('the warm pool full', REFILL_TIMEOUT_MS, () => poolFull(c, 1), 50)
      let t0 = performance.now()
      const vm = await client.call('vm.create', { spec: { ...vmSpec(`cold${i}`), memoryMiB: MEMORY, kernelParams: ['blix.nopool=1'] } })
      ids.push(vm.id)
      await untilPhase(client, vm.id, 'running', BOOT_TIMEOUT_MS)
      cold.push(performance.now() - t0)
      await client.call('vm.delete', { vm: vm.id })
      t0 = performance.now()
      await client.call('vm.restore', { vm: saved.id, name: 'warm' })
      const s = await waitFor('the restore done', BOOT_TIMEOUT_MS, async () => {
        const r = (await client.call('vm.snapshotList', { vm: saved.id }))[0]
        if (r?.restore?.phase === 'failed') throw new Error(`restore failed: ${r.restore.reason ?? ''}`)
        return r?.restore?.phase === 'done' ? r : null
      }, 20)
      restore.push(performance.now() - t0)
      hostRestore.push(s.restore?.ms ?? NaN)
      // a clone of the same snapshot, before the warm claim: the pool is still full and idle
      t0 = performance.now()
      const k = await client.call('vm.clone', { name: `clone${i}`, vm: saved.id, snapshot: 'warm' })
      ids.push(k.id)
      const cloneCreated = performance.now() - t0
      const resumed = await untilPhase(client, k.id, 'running', BOOT_TIMEOUT_MS)
      clone.push(performance.now() - t0)
      cloneSteps.push({ createdMs: cloneCreated, ...cloneHostMs(c, k.id) })
      if (resumed.clonedFrom?.resumedAt == null) throw new Error(`clone${i} was not resumed from the snapshot: ${resumed.status.reason}`)
      await client.call('vm.delete', { vm: k.id })
      t0 = performance.now()
      const wall0 = Date.now()
      const w = await client.call('vm.create', { spec: { ...vmSpec(`warm${i}`), memoryMiB: MEMORY } })
      ids.push(w.id)
      const created = performance.now() - t0
      const running = await untilPhase(client, w.id, 'running', BOOT_TIMEOUT_MS)
      warm.push(performance.now() - t0)
      // where the time went: the create's answer (CreateVm committed), the node's log line of the
      // hand-over (AssignVm committed, the agent's round, rename + cont), then the running report
      const handed = handedOverAt(c, w.id)
      warmSteps.push({ createdMs: created, handedOverMs: handed == null ? NaN : handed - wall0 })
      if (!running.status.reason.startsWith('claimed warm guest')) throw new Error(`warm${i} was not served from the pool: ${running.status.reason}`)
      await client.call('vm.delete', { vm: w.id })
      say(`  Blixard sample ${i + 1}: create→running cold ${r0(cold[i])} ms, restore→done ${r0(restore[i])} ms (host ${s.restore?.ms ?? '?'} ms), clone create→running ${r0(clone[i])} ms (answered ${r0(cloneSteps[i].createdMs)}, host ${r0(cloneSteps[i].hostMs)}, of which resumed ${r0(cloneSteps[i].resumedMs)}), warm-pool create→running ${r0(warm[i])} ms (create answered ${r0(warmSteps[i].createdMs)}, handed over ${r0(warmSteps[i].handedOverMs)})`)
    }
  } finally {
    // guests outlive their daemon (the snapshot's VM was never deleted, a delete may not have
    // finished): none may outlive the bench, pool guests and claimed ones (named warm.bench.N) too
    await c.stop()
    for (const id of [...ids, 'warm.bench.']) for (const pid of qemuPidsFor(id)) process.kill(pid, 'SIGKILL')
  }
  return { cold, restore, hostRestore, warm, warmSteps, clone, cloneSteps }
}

/** the host's figures for a clone's resume (its log line), NaN where it said none */
function cloneHostMs (c: TestCluster, vmId: string): { resumedMs: number, hostMs: number } {
  const line = c.log(0).split('\n').find((l) => l.includes('"msg":"clone resumed from a snapshot"') && l.includes(`"${vmId}"`))
  let rec: { resumedMs?: unknown, ms?: unknown } = {}
  try { if (line != null) rec = JSON.parse(line) as typeof rec } catch {}
  return { resumedMs: typeof rec.resumedMs === 'number' ? rec.resumedMs : NaN, hostMs: typeof rec.ms === 'number' ? rec.ms : NaN }
}

/** wall-clock ms of the node's 'guest handed over' log line for this VM, or null */
function handedOverAt (c: TestCluster, vmId: string): number | null {
  const line = c.log(0).split('\n').find((l) => l.includes('"msg":"guest handed over"') && l.includes(`"${vmId}"`))
  if (line == null) return null
  try { return Date.parse((JSON.parse(line) as { ts: string }).ts) } catch { return null }
}


const t0 = Date.now()
const load = loadavg()[0]
const bare = await bareRun()
const blix = await blixardRun()
const m = { bareCold: median(bare.cold), bareRestore: median(bare.restore), blixCold: median(blix.cold), blixRestore: median(blix.restore), blixWarm: median(blix.warm), blixClone: median(blix.clone) }
const result = {
  accel: bare.accel,
  load: r2(load),
  samples: SAMPLES,
  stateMiB: r2(bare.stateBytes / 1048576),
  bare: { coldMedianMs: r0(m.bareCold), restoreMedianMs: r0(m.bareRestore), ratio: r2(m.bareRestore / m.bareCold) },
  blixard: { coldMedianMs: r0(m.blixCold), restoreMedianMs: r0(m.blixRestore), hostRestoreMedianMs: r0(median(blix.hostRestore)), ratio: r2(m.blixRestore / m.blixCold), target: TARGET_RATIO, pass: m.blixRestore / m.blixCold <= TARGET_RATIO },
  warmPool: { createToRunningMedianMs: r0(m.blixWarm), createAnsweredMedianMs: r0(median(blix.warmSteps.map((x) => x.createdMs))), handedOverMedianMs: r0(median(blix.warmSteps.map((x) => x.handedOverMs))), minMs: r0(Math.min(...blix.warm)), maxMs: r0(Math.max(...blix.warm)), ratioToCold: r2(m.blixWarm / m.blixCold), targetMs: TARGET_WARM_MS, pass: m.blixWarm <= TARGET_WARM_MS },
  clone: { createToRunningMedianMs: r0(m.blixClone), createAnsweredMedianMs: r0(median(blix.cloneSteps.map((x) => x.createdMs))), hostMedianMs: r0(median(blix.cloneSteps.map((x) => x.hostMs))), hostResumedMedianMs: r0(median(blix.cloneSteps.map((x) => x.resumedMs))), minMs: r0(Math.min(...blix.clone)), maxMs: r0(Math.max(...blix.clone)), ratioToCold: r2(m.blixClone / m.blixCold), state: 'local-file' },
  wallSeconds: Math.round((Date.now() - t0) / 1000)
}
if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
else {
  for (const [k, v] of [
    ['accelerator', `${result.accel} (load average ${result.load})`],
    [`bare QEMU: cold boot / restore, medians of ${SAMPLES}`, `${result.bare.coldMedianMs} / ${result.bare.restoreMedianMs} ms, ratio ${result.bare.ratio}`],
    [`Blixard: create→running / restore→done, medians of ${SAMPLES}`, `${result.blixard.coldMedianMs} / ${result.blixard.restoreMedianMs} ms, ratio ${result.blixard.ratio} (target ≤ ${TARGET_RATIO}: ${result.blixard.pass ? 'PASS' : 'MISS'})`],
    [`Blixard: clone (--from-snapshot) create→running, median of ${SAMPLES}`, `${result.clone.createToRunningMedianMs} ms (${result.clone.minMs}-${result.clone.maxMs}; create answered ${result.clone.createAnsweredMedianMs}, the host's part ${result.clone.hostMedianMs}, resumed at ${result.clone.hostResumedMedianMs}; state in a local file), ratio to cold ${result.clone.ratioToCold}`],
    [`Blixard: warm-pool create→running, median of ${SAMPLES}`, `${result.warmPool.createToRunningMedianMs} ms (${result.warmPool.minMs}-${result.warmPool.maxMs}; create answered ${result.warmPool.createAnsweredMedianMs}, guest handed over ${result.warmPool.handedOverMedianMs}), ratio to cold ${result.warmPool.ratioToCold} (target ≤ ${TARGET_WARM_MS} ms: ${result.warmPool.pass ? 'PASS' : 'MISS'})`]
  ]) process.stdout.write(`${k.padEnd(60)} ${v}\n`)
}
