// npm run bench:start [-- --samples 5] [--json]
//
// Issue 18 item 6 (in part: no warm pool yet). How fast a guest gets running, cold and from a
// memory snapshot, each pair measured in the same run and alternating so both see the same load:
// 1. bare QEMU (the driver alone, no Blixard): a cold boot of the tiny guest to its ready marker,
//    against a restore of a snapshot of the same guest (start with -incoming, stream the state,
//    cont) to QMP's RESUME;
// 2. through Blixard (1 blixard-node process): vm.create → the VM running (vm.watch), against
//    vm.restore → its host reported the restore done.
// Prints the medians and the ratios restore/cold (issue 18's target: ≤ 0.3 through Blixard).
import '../node/polyfill.ts'
import { mkdtempSync, rmSync } from 'node:fs'
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

const argv = process.argv.slice(2)
const get = (f: string, d: number): number => { const i = argv.indexOf(f); return i >= 0 ? Number(argv[i + 1]) : d }
const json = argv.includes('--json')
const SAMPLES = get('--samples', 5)
const MEMORY = 96 // MiB, the same for every guest here
const BOOT_TIMEOUT_MS = 150_000
/** issue 18: a restore through Blixard within 0.3 × the cold boot of the same guest */
const TARGET_RATIO = 0.3

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
  try {
    // the snapshot every restore starts from: a booted guest, saved once
    await d.start(spec('saved'))
    await d.waitForEvent('saved', (e) => e.type === 'running', BOOT_TIMEOUT_MS)
    const file = join(dir, 'saved.state')
    stateBytes = (await saveState(await d.qmp('saved'), file, join(dir, 'save.sock'))).sizeBytes
    await d.cleanup('saved')
    for (let i = 0; i < SAMPLES; i++) {
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
    await d.close()
    rmSync(dir, { recursive: true, force: true })
  }
  return { cold, restore, accel, stateBytes }
}

async function untilPhase (client: RpcClient, id: string, phase: string, timeoutMs: number): Promise<void> {
  await waitFor(`VM ${id} ${phase}`, timeoutMs, async () => {
    const v: VmRecord = await client.call('vm.show', { vm: id })
    if (v.status.phase === 'failed') throw new Error(`VM ${v.spec.name} failed: ${v.status.reason}`)
    return v.status.phase === phase
  }, 20)
}

async function blixardRun (): Promise<{ cold: number[], restore: number[], hostRestore: number[] }> {
  const c = new TestCluster({ nodes: 1, basePort: 17670 }, 'bench-start')
  const cold: number[] = []
  const restore: number[] = []
  const hostRestore: number[] = []
  try {
    await c.prepare()
    c.start(0)
    await waitFor('a 1-node cluster', 90_000, async () => await c.agreed([0], 1), 250)
    const client = await c.client(0)
    await waitFor('node registered', 30_000, async () => (await client.call('node.list', {})).length === 1, 200)
    const saved = await client.call('vm.create', { spec: { ...vmSpec('saved'), memoryMiB: MEMORY } })
    await untilPhase(client, saved.id, 'running', BOOT_TIMEOUT_MS)
    await client.call('vm.snapshot', { vm: saved.id, name: 'warm' })
    await waitFor('the snapshot ready', 60_000, async () => (await client.call('vm.snapshotList', { vm: saved.id }))[0]?.phase === 'ready', 50)
    for (let i = 0; i < SAMPLES; i++) {
      let t0 = performance.now()
      const vm = await client.call('vm.create', { spec: { ...vmSpec(`cold${i}`), memoryMiB: MEMORY } })
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
      say(`  Blixard sample ${i + 1}: create→running ${r0(cold[i])} ms, restore→done ${r0(restore[i])} ms (host ${s.restore?.ms ?? '?'} ms)`)
    }
  } finally { await c.stop() }
  return { cold, restore, hostRestore }
}

const t0 = Date.now()
const load = loadavg()[0]
const bare = await bareRun()
const blix = await blixardRun()
const m = { bareCold: median(bare.cold), bareRestore: median(bare.restore), blixCold: median(blix.cold), blixRestore: median(blix.restore) }
const result = {
  accel: bare.accel,
  load: r2(load),
  samples: SAMPLES,
  stateMiB: r2(bare.stateBytes / 1048576),
  bare: { coldMedianMs: r0(m.bareCold), restoreMedianMs: r0(m.bareRestore), ratio: r2(m.bareRestore / m.bareCold) },
  blixard: { coldMedianMs: r0(m.blixCold), restoreMedianMs: r0(m.blixRestore), hostRestoreMedianMs: r0(median(blix.hostRestore)), ratio: r2(m.blixRestore / m.blixCold), target: TARGET_RATIO, pass: m.blixRestore / m.blixCold <= TARGET_RATIO },
  warmPool: 'not measured: warm pools are not built yet',
  wallSeconds: Math.round((Date.now() - t0) / 1000)
}
if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
else {
  for (const [k, v] of [
    ['accelerator', `${result.accel} (load average ${result.load})`],
    [`bare QEMU: cold boot / restore, medians of ${SAMPLES}`, `${result.bare.coldMedianMs} / ${result.bare.restoreMedianMs} ms, ratio ${result.bare.ratio}`],
    [`Blixard: create→running / restore→done, medians of ${SAMPLES}`, `${result.blixard.coldMedianMs} / ${result.blixard.restoreMedianMs} ms, ratio ${result.blixard.ratio} (target ≤ ${TARGET_RATIO}: ${result.blixard.pass ? 'PASS' : 'MISS'})`]
  ]) process.stdout.write(`${k.padEnd(60)} ${v}\n`)
}
