// A warm pool's hand-over through the QEMU driver with a real tiny guest printing a heartbeat counter
// (node/qemu/driver.ts claim): a booted guest paused by QMP stops counting; claim() gives it another
// id and generation and resumes it: the counter goes on in the same QEMU, its console and status under
// the new id, nothing left under the old; a new driver on the same data dir (a daemon restart)
// re-adopts it by the id it was launched under; cleanup ends it. One guest; about 15 s under TCG.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QemuDriver } from '../../node/qemu/driver.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { buildTinyGuest, parseHeartbeats, tinyGuestBoot } from '../../node/qemu/tiny-guest.ts'
import { silentLogger } from '../../node/log.ts'
import { waitFor } from '../cluster/harness.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'blx-claim-'))
const WARM = 'warm.p.1'
const VM = '0f6b1d2e-5c1a-4c8e-9a57-3d1f0c2b7a11'
let d = new QemuDriver({ dataDir, accel: 'tcg', log: silentLogger })

const beats = (id: string): number[] => { try { return parseHeartbeats(readFileSync(runtimePaths(dataDir, id).serialLog, 'utf8')) } catch { return [] } }
const top = (id: string): number => Math.max(0, ...beats(id))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
async function failsWith (p: Promise<unknown>, kind: string): Promise<void> {
  try { await p } catch (e) { assert.ok(e instanceof QemuError && e.kind === kind, `${kind}: ${String(e)}`); return }
  assert.unreachable(`expected ${kind}`)
}

test.after(async () => {
  await d.cleanup(VM).catch(() => {})
  await d.cleanup(WARM).catch(() => {})
  await d.close()
  rmSync(dataDir, { recursive: true, force: true })
})

test('claim: a paused pool guest runs on under the VM\'s id, and is re-adopted by a new driver', async () => {
  const guest = await buildTinyGuest()
  await failsWith(d.claim(WARM, VM, 1), 'NotRunning')
  const started = await d.start({ vmId: WARM, generation: 0, vcpus: 1, memoryMiB: 96, readiness: 'marker', boot: tinyGuestBoot(guest, { hostname: 'p', heartbeatMs: 100 }) })
  await d.waitForEvent(WARM, (e) => e.type === 'running', 150_000)
  await waitFor('heartbeats', 30_000, () => beats(WARM).length >= 3)
  await (await d.qmp(WARM)).execute('stop')
  await sleep(300) // a beat already on its way may land
  const atPause = top(WARM)
  await sleep(1500)
  assert.is(top(WARM), atPause, 'a paused guest does not count')

  const r = await d.claim(WARM, VM, 3)
  assert.is(r.pid, started.pid, 'the same QEMU')
  assert.not.ok(existsSync(runtimePaths(dataDir, WARM).dir), 'nothing left under the pool guest\'s id')
  const st = await d.status(VM)
  assert.is(st.state, 'running')
  if (st.state === 'running') { assert.is(st.generation, 3); assert.is(st.pid, started.pid); assert.ok(st.ready) }
  await waitFor('the counter to go on under the new id', 30_000, () => top(VM) >= atPause + 5)
  await failsWith(d.status(WARM), 'NotFound')

  // a daemon restart: a new driver finds it by the id its command line names
  await d.close()
  d = new QemuDriver({ dataDir, accel: 'tcg', log: silentLogger })
  const listed = await d.list()
  assert.equal(listed.map((s) => [s.vmId, s.state, s.state === 'running' ? s.pid : null, s.generation]), [[VM, 'running', started.pid, 3]])
  await d.cleanup(VM)
  await waitFor('the QEMU gone', 10_000, () => { try { process.kill(started.pid, 0); return false } catch { return true } })
})

test.run()
