// The microvm.nix Hypervisor (node/hypervisor/microvm.ts) against a recording host: `nix build` and
// systemd cannot run here, so a fake executor records every command and file write, keeps files in a
// temp dir, and plays systemd's part (units started, stopped, failed; `systemctl show` answered as
// systemd does). Checked: the exact commands of a start (render → build → install → unit → TAPs on
// their bridges), what list() reports for each unit state (the agent's restart policy depends on a
// requested stop and a power-off being told apart), a failed build seen as a crash with its reason,
// cleanup, the name guard, and that the fence's own scan finds the guests this class renders.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MicrovmHypervisor, GUEST_META_FILE } from '../../node/hypervisor/microvm.ts'
import { RecordingHost } from './recording-host.ts'
import { microvmGuests } from '../../node/ha/microvm-fence.ts'
import { bridgeName } from '../../node/net-host/names.ts'
import type { VmRecord, VmSpec } from '../../protocols/model.ts'
import { nixAvailable, nixParse } from './nix-cli.ts'

const root = mkdtempSync(join(tmpdir(), 'blx-microvm-'))
const dataDir = join(root, 'data')
const stateDir = join(root, 'microvms')
const host = new RecordingHost(stateDir)
let t = 5_000
const hv = new MicrovmHypervisor({ dataDir, stateDir, exec: host.exec, now: () => t, volumeSizeGiB: () => 8 })

function vm (name: string, over: Partial<VmRecord> = {}, spec: Partial<VmSpec> = {}): VmRecord {
  return {
    id: `id-${name}`, generation: 1, desired: 'running', assignedNode: 'n', createdAt: 0, updatedAt: 0,
    status: { phase: 'scheduled', reason: '', node: 'n', at: 0 },
    spec: { name, vcpus: 2, memoryMiB: 256, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'flake', ref: 'github:acme/guests#web' }, volumes: ['data'], networks: ['lan'], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'always', requires: [], ...spec },
    ...over
  }
}

const web = vm('web')
const bindings = { nics: [{ tap: 'blxt0000web0n0', mac: '02:00:00:00:00:01' }], drives: [{ kind: 'rbd' as const, pool: 'rbd', image: 'data', conf: '/etc/blixard/ceph.conf', id: 'blixard' }] }

test('start: render the flake, build and install the runner, start microvm@NAME, put the TAP on its bridge — in that order', async () => {
  host.log.length = 0
  await hv.start({ vm: web, host: bindings })
  const g = join(dataDir, 'guests', 'web')
  const v = join(stateDir, 'web')
  const nix = 'nix --extra-experimental-features nix-command flakes build --out-link'
  assert.equal(host.log, [
    `write ${g}/${GUEST_META_FILE}`,
    `write ${g}/flake.nix`,
    `mkdir -p ${v}`,
    `${nix} ${v}/current path:${g}#nixosConfigurations.web.config.microvm.declaredRunner`,
    `${nix} ${v}/toplevel path:${g}#nixosConfigurations.web.config.system.build.toplevel`,
    `write ${v}/flake`,
    `chgrp -h kvm ${v} ${v}/current ${v}/toplevel ${v}/flake`,
    `chmod g+w ${v}`,
    'systemctl start microvm@web.service',
    `write ${g}/${GUEST_META_FILE}`,
    `ip link set dev blxt0000web0n0 master ${bridgeName('lan')}`,
    'ip link set dev blxt0000web0n0 up'
  ])
  const flake = readFileSync(join(g, 'flake.nix'), 'utf8')
  assert.match(flake, /url = "github:acme\/guests";/)
  assert.match(flake, /rbd:rbd\/data:conf=\/etc\/blixard\/ceph.conf:id=blixard/)
  assert.match(flake, /mac = "02:00:00:00:00:01";/)
  if (nixAvailable()) {
    const parsed = nixParse(join(g, 'flake.nix'))
    assert.ok(parsed.ok, parsed.stderr)
  }
})

test('list: a running unit is a ready guest of the VM and generation the agent started', async () => {
  assert.equal(await hv.list(), [{ state: 'running', vmId: 'id-web', generation: 1, ready: true, ip: null }])
  host.units.set('web', { active: 'activating', sub: 'start', result: 'success', pid: 4242 })
  assert.equal(await hv.list(), [{ state: 'running', vmId: 'id-web', generation: 1, ready: false, ip: null }])
  host.units.set('web', { active: 'active', sub: 'running', result: 'success', pid: 4242 })
})

test('the fence finds the guests this host rendered (node/ha/microvm-fence.ts scans the same directory)', async () => {
  assert.equal(await microvmGuests(dataDir), ['web'])
})

test('a guest that powers itself off is stopped with no request (the policy decides); a crash is crashed', async () => {
  host.units.set('web', { active: 'inactive', sub: 'dead', result: 'success', pid: 0 })
  assert.equal(await hv.list(), [{ state: 'stopped', vmId: 'id-web', generation: 1, exit: { reason: 'guest powered off', requested: null } }])
  host.units.set('web', { active: 'failed', sub: 'failed', result: 'exit-code', pid: 0 })
  assert.equal(await hv.list(), [{ state: 'crashed', vmId: 'id-web', generation: 1, exit: { reason: 'hypervisor exited with status 1', requested: null } }])
})

test('stop: systemctl stop, and the exit says it was asked for (a later start is no crash-loop restart)', async () => {
  await hv.start({ vm: web, host: bindings })
  host.log.length = 0
  assert.equal(await hv.stop('id-web'), { reason: 'stopped on request', requested: 'stop' })
  assert.equal(host.log.filter((l) => l.startsWith('systemctl')), ['systemctl stop microvm@web.service', 'systemctl show microvm@web.service -p LoadState,ActiveState,SubState,MainPID,ExecMainStatus,Result,ConditionResult,ConditionTimestampMonotonic'])
  assert.equal(await hv.list(), [{ state: 'stopped', vmId: 'id-web', generation: 1, exit: { reason: 'stopped on request', requested: 'stop' } }])
  // a new start clears the request
  await hv.start({ vm: web, host: bindings })
  assert.is((await hv.list())[0].state, 'running')
})

test('a failed nix build rejects naming the command, and is observed as a crash with the reason', async () => {
  host.failBuild = 'error: attribute \'web\' missing'
  const db = vm('db', { id: 'id-db', generation: 4 }, { volumes: [], networks: [] })
  const err = await hv.start({ vm: db, host: {} }).then(() => null, (e: unknown) => e as Error)
  host.failBuild = null
  assert.match(err?.message ?? '', /^nix .* build .*#nixosConfigurations\.db\.config\.microvm\.declaredRunner: error: attribute 'web' missing/)
  const st = (await hv.list()).find((s) => s.vmId === 'id-db')
  assert.equal(st, { state: 'crashed', vmId: 'id-db', generation: 4, exit: { reason: `guest not built: ${err?.message ?? ''}`, requested: null } })
  assert.not.ok(host.log.includes('systemctl start microvm@db.service'), 'no unit started without a runner')
})

test('a unit systemd refuses to start is a crash with the reason, not a guest that powered off', async () => {
  host.failStart = 'Access denied'
  const err = await hv.start({ vm: vm('db', { id: 'id-db', generation: 5 }, { volumes: [], networks: [] }), host: {} }).then(() => null, (e: unknown) => e as Error)
  host.failStart = null
  assert.match(err?.message ?? '', /^systemctl start microvm@db.service: Access denied/)
  const st = (await hv.list()).find((s) => s.vmId === 'id-db')
  assert.equal(st, { state: 'crashed', vmId: 'id-db', generation: 5, exit: { reason: `unit not started: ${err?.message ?? ''}`, requested: null } })
})

test('what microvm.nix cannot run is refused before any command: kernel images, local-file drives, a name still held', async () => {
  assert.match(hv.cannotLaunch(vm('k', {}, { image: { kind: 'kernel', kernel: '/boot/vmlinuz' } })) ?? '', /kernel image runs on the QEMU driver/)
  assert.is(hv.cannotLaunch(vm('t', {}, { image: { kind: 'tiny' } })), null)
  host.log.length = 0
  const file = await hv.start({ vm: vm('files'), host: { drives: [{ kind: 'file', path: '/tmp/disk.img' }] } }).then(() => null, (e: unknown) => e as Error)
  assert.match(file?.message ?? '', /local file; microvm.nix guests take Ceph volumes only/)
  const other = await hv.start({ vm: vm('web', { id: 'id-web-2' }), host: bindings }).then(() => null, (e: unknown) => e as { kind?: string, message: string })
  assert.is(other?.kind, 'Conflict')
  assert.match(other?.message ?? '', /guest name web is still held here by VM id-web/)
  assert.equal(host.log.filter((l) => !l.startsWith('write')), [], 'no command ran for either')
  // the refused spec is seen as a crash with its reason (the policy's backoff applies), the holder untouched
  const files = (await hv.list()).find((s) => s.vmId === 'id-files')
  assert.match(files?.state === 'crashed' ? files.exit.reason : '', /^guest not built: .*local file/)
  assert.is((await hv.list()).find((s) => s.vmId === 'id-web')?.state, 'running')
  await hv.cleanup('id-files')
})

test('console: journalctl of the unit, its tail in lines; NotFound for a VM with no guest here', async () => {
  const chunks: string[] = []
  for await (const c of hv.logs('id-web', { tailBytes: 800 })) chunks.push(c)
  assert.equal(chunks, ['console of journalctl --unit microvm@web.service --output cat --no-pager --lines 10\n'])
  const err = await hv.logs('id-nope').next().then(() => null, (e: unknown) => e as { kind?: string })
  assert.is(err?.kind, 'NotFound')
})

test('cleanup: stop, reset-failed (refused for a unit that never failed: fine), remove its state and flake dirs', async () => {
  host.log.length = 0
  await hv.cleanup('id-db') // never started: its unit is not loaded
  assert.equal(host.log, [
    'systemctl stop microvm@db.service',
    'systemctl reset-failed microvm@db.service',
    `rm -rf --one-file-system ${join(stateDir, 'db')}`,
    `rm -rf --one-file-system ${join(dataDir, 'guests', 'db')}`
  ])
  assert.equal((await hv.list()).map((s) => s.vmId), ['id-web'])
  await hv.cleanup('id-web')
  assert.equal(await hv.list(), [])
  assert.equal(await microvmGuests(dataDir), [])
  await hv.cleanup('id-web') // idempotent
})

test.after(() => { rmSync(root, { recursive: true, force: true }) })

test.run()
