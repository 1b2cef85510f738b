// Memory snapshots through the QEMU driver with a real tiny guest printing a heartbeat counter:
// saveState pauses the guest, writes its state to a file and resumes it (the counter goes on);
// a QEMU started with the same devices and -incoming, fed that file by loadState, resumes the
// guest at the snapshot's point (its first counter after the restore follows the one at the save,
// well below where the killed guest had got to), and is reported running with the address it was
// given to resume with (resumedIp: a live migration's target knows it from the source). One guest
// at a time; about 15 s under TCG.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver, type QemuLaunchSpec } from '../../node/qemu/driver.ts'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { buildTinyGuest, parseHeartbeats, tinyGuestBoot, type TinyGuest } from '../../node/qemu/tiny-guest.ts'
import { loadState, saveState } from '../../node/qemu/snapshot.ts'
import { silentLogger } from '../../node/log.ts'
import { waitFor } from '../cluster/harness.ts'

const HEARTBEAT_MS = 100
const dataDir = mkdtempSync(join(tmpdir(), 'blx-snap-'))
const VM = 'snap-a'
let guest: TinyGuest
let d: QemuDriver

const beats = (): number[] => {
  try { return parseHeartbeats(readFileSync(runtimePaths(dataDir, VM).serialLog, 'utf8')) } catch { return [] }
}

test.before(async () => {
  guest = await buildTinyGuest()
  d = new QemuDriver({ dataDir, accel: 'tcg', log: silentLogger })
})
test.after(async () => {
  await d.cleanup(VM).catch(() => {})
  await d.close()
  rmSync(dataDir, { recursive: true, force: true })
})

test('save to a file and restore: the guest resumes at the snapshot point', async () => {
  const spec: QemuLaunchSpec = { vmId: VM, generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: VM, heartbeatMs: HEARTBEAT_MS }) }
  await d.start(spec)
  await d.waitForEvent(VM, (e) => e.type === 'running', 150_000)
  await waitFor('heartbeats', 30_000, () => beats().length >= 5)
  const file = join(dataDir, 'state.bin')
  const saved = await saveState(await d.qmp(VM), file, join(dataDir, 'save.sock'))
  const atSave = Math.max(...beats())
  assert.ok(saved.sizeBytes > 1024 * 1024 && saved.sizeBytes === statSync(file).size, `state file of ${saved.sizeBytes} bytes`)
  // resumed after the save: the counter goes on in the same QEMU
  const later = await waitFor('the counter to go on after the save', 30_000, () => { const m = Math.max(...beats()); return m >= atSave + 15 ? m : null })
  await d.kill(VM)

  const sock = join(runtimePaths(dataDir, VM).dir, 'restore.sock')
  const t0 = Date.now()
  // resumedIp: the address the guest had where it booted (it prints no ready marker when resumed)
  await d.start({ ...spec, readiness: 'qmp', incoming: sock, resumedIp: '10.64.0.9' })
  const running = d.waitForEvent(VM, (e) => e.type === 'running', 60_000)
  await loadState(async () => await d.qmp(VM), file, sock)
  const ev = await running
  assert.equal(ev.type === 'running' ? ev.ip : 'no running event', '10.64.0.9', 'the resumed guest is reported with the address it had')
  const st = await d.status(VM)
  assert.equal(st.state === 'running' ? [st.ready, st.ip] : st.state, [true, '10.64.0.9'])
  const restoreMs = Date.now() - t0
  const after = await waitFor('heartbeats after the restore', 30_000, () => { const b = beats(); return b.length >= 3 ? b : null })
  console.log(`  state ${(saved.sizeBytes / 1048576).toFixed(1)} MiB, paused ${saved.pausedMs} ms; counter ${atSave} at save, ${later} at kill, ${after[0]} first after restore; restore to running ${restoreMs} ms`)
  assert.ok(after[0] >= atSave && after[0] <= atSave + 3, `restored counter ${after[0]} follows the snapshot's ${atSave}`)
  assert.ok(after[0] < later, `and is below where the killed guest was (${later})`)
})

test.run()
