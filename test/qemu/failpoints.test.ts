// QEMU failpoints (storage/failpoints.ts): qemu.qmp makes a real qemu's QMP command time out through
// the client's own timer; qemu.spawn makes the driver's start fail as SpawnFailed, recorded as crashed.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QmpClient } from '../../node/qemu/qmp.ts'
import { QemuDriver, type QemuLaunchSpec } from '../../node/qemu/driver.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { setFailpoints } from '../../storage/failpoints.ts'

const root = mkdtempSync(join(tmpdir(), 'blx-qfp-'))
let qemu: ChildProcess | null = null

test.after.each(() => { setFailpoints('') })
test.after(() => { qemu?.kill('SIGKILL'); rmSync(root, { recursive: true, force: true }) })

test('qemu.qmp: a real qemu\'s command gets no reply and times out as Timeout; the next command works', async () => {
  const sock = join(root, 'qmp.sock')
  // the cheapest real qemu with a QMP socket: no machine, no devices, no guest
  qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: 'ignore' })
  const t0 = Date.now()
  while (!existsSync(sock)) {
    if (Date.now() - t0 > 10_000) throw new Error('qemu made no QMP socket in 10 s')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const qmp = await QmpClient.connect(sock, { timeoutMs: 5_000 })
  try {
    setFailpoints('qemu.qmp=1*timeout')
    const err = await qmp.execute('query-status', undefined, { timeoutMs: 300 }).then(() => null, (e: unknown) => e)
    assert.ok(err instanceof QemuError && err.kind === 'Timeout' && /QMP query-status: no reply within 300 ms/.test(err.message), String(err))
    const st = await qmp.execute('query-status', undefined, { timeoutMs: 3_000 }) as { status: string }
    assert.type(st.status, 'string')
  } finally { await qmp.close() }
})

test('qemu.spawn: start fails as SpawnFailed and the VM is recorded as crashed', async () => {
  const d = new QemuDriver({ dataDir: join(root, 'data'), accel: 'tcg', tscKhz: null, qemuBinary: 'qemu-system-x86_64' })
  const spec: QemuLaunchSpec = { vmId: 'v1', generation: 1, vcpus: 1, memoryMiB: 96, readiness: 'marker', boot: { kernel: '/nonexistent/vmlinuz' } }
  setFailpoints('qemu.spawn=1*error')
  const err = await d.start(spec).then(() => null, (e: unknown) => e)
  assert.ok(err instanceof QemuError && err.kind === 'SpawnFailed' && /failpoint-qemu\.spawn/.test(err.message), String(err))
  const st = await d.status('v1')
  assert.ok(st.state === 'crashed' && /cannot run/.test(st.exit.reason), JSON.stringify(st))
  await d.close()
})

test.run()
