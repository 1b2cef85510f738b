import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { buildQemuArgv, isQemuFor, kernelParams, optValue, tscKhzFromCpuinfo, type QemuMachine, type HostFacts } from '../../node/qemu/cmdline.ts'
import { QemuError } from '../../node/qemu/errors.ts'
import { runtimePaths } from '../../node/qemu/paths.ts'
import { tinyGuestParams, parseReadyMarker, parseDiskBoots, parseHeartbeats, parsePongs } from '../../node/qemu/tiny-guest.ts'

const rt = runtimePaths('/var/lib/blixard', 'vm-1')
const vm: QemuMachine = { vmId: 'vm-1', vcpus: 2, memoryMiB: 128, boot: { kernel: '/boot/vmlinuz', initrd: '/g/tiny.cpio.gz', params: ['blix.ip=10.0.0.2/24'] } }
const tcg: HostFacts = { accel: 'tcg', tscKhz: 2445406 }

/** the value after a flag (the n-th occurrence) */
function after (args: string[], flag: string, n = 0): string | undefined {
  const idx = args.map((a, i) => a === flag ? i : -1).filter((i) => i >= 0)
  return idx[n] != null ? args[idx[n] + 1] : undefined
}

function invalid (fn: () => unknown, re: RegExp): void {
  try { fn() } catch (e) {
    assert.instance(e, QemuError)
    assert.is((e as QemuError).kind, 'InvalidSpec')
    assert.match((e as Error).message, re)
    return
  }
  assert.unreachable('expected InvalidSpec')
}

test('TCG: tcg accel with a bounded translation cache and -cpu max, microvm machine', () => {
  const { binary, args } = buildQemuArgv(vm, tcg, rt)
  assert.is(binary, 'qemu-system-x86_64')
  assert.is(after(args, '-accel'), 'tcg,tb-size=32')
  assert.is(after(args, '-cpu'), 'max')
  assert.is(after(args, '-M'), 'microvm,x-option-roms=off,rtc=on')
  assert.is(after(args, '-m'), '128')
  assert.is(after(args, '-smp'), '2')
  for (const f of ['-nodefaults', '-no-user-config', '-no-reboot']) assert.ok(args.includes(f), f)
  assert.is(after(args, '-display'), 'none')
  assert.is(after(args, '-name'), 'guest=vm-1')
})

test('KVM: kvm accel with -cpu host', () => {
  const { args } = buildQemuArgv(vm, { accel: 'kvm', tscKhz: null, qemuBinary: '/opt/q' }, rt)
  assert.is(after(args, '-accel'), 'kvm')
  assert.is(after(args, '-cpu'), 'host')
  assert.not.ok(args.some((a) => a.includes('tcg')))
})

test('serial chardev logs to the runtime dir, QMP on its socket, kernel and initrd', () => {
  const { args } = buildQemuArgv(vm, tcg, rt)
  assert.is(after(args, '-chardev'), 'socket,id=ser0,path=/var/lib/blixard/vms/vm-1/serial.sock,server=on,wait=off,logfile=/var/lib/blixard/vms/vm-1/serial.log')
  assert.is(after(args, '-serial'), 'chardev:ser0')
  assert.is(after(args, '-qmp'), 'unix:/var/lib/blixard/vms/vm-1/qmp.sock,server=on,wait=off')
  assert.is(after(args, '-kernel'), '/boot/vmlinuz')
  assert.is(after(args, '-initrd'), '/g/tiny.cpio.gz')
  assert.is(after(args, '-append'), 'console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2445406 blix.ip=10.0.0.2/24')
})

test('no initrd flag without an initrd; no tsc_early_khz when the host TSC is unknown', () => {
  const { args } = buildQemuArgv({ ...vm, boot: { kernel: '/k' } }, { accel: 'tcg', tscKhz: null }, rt)
  assert.not.ok(args.includes('-initrd'))
  assert.is(after(args, '-append'), 'console=ttyS0 reboot=t panic=-1 quiet')
})

test('file and rbd drives become virtio-blk devices; commas in paths are doubled', () => {
  const { args } = buildQemuArgv({
    ...vm,
    drives: [
      { kind: 'file', path: '/data/a,b.img' },
      { kind: 'rbd', pool: 'rbd', image: 'vm-1-root', conf: '/etc/ceph/ceph.conf', id: 'blixard', readOnly: true },
      { kind: 'rbd', pool: 'rbd', image: 'data', conf: '/c.conf', cache: 'none' }
    ]
  }, tcg, rt)
  assert.is(after(args, '-drive', 0), 'id=d0,file=/data/a,,b.img,format=raw,if=none,cache=none,aio=threads')
  assert.is(after(args, '-device', 0), 'virtio-blk-device,drive=d0')
  assert.is(after(args, '-drive', 1), 'id=d1,file=rbd:rbd/vm-1-root:conf=/etc/ceph/ceph.conf:id=blixard,format=raw,if=none,cache=writeback,aio=threads,readonly=on')
  assert.is(after(args, '-device', 1), 'virtio-blk-device,drive=d1')
  assert.is(after(args, '-drive', 2), 'id=d2,file=rbd:rbd/data:conf=/c.conf,format=raw,if=none,cache=none,aio=threads')
})

test('NICs: virtio-net-device on a TAP without scripts or vhost, MAC lower-cased', () => {
  const { args } = buildQemuArgv({ ...vm, nics: [{ tap: 'blx-vm1-0', mac: '02:AB:00:00:00:01' }, { tap: 'tap1', mac: '52:54:00:12:34:56' }] }, tcg, rt)
  assert.is(after(args, '-netdev', 0), 'tap,id=n0,ifname=blx-vm1-0,script=no,downscript=no')
  assert.is(after(args, '-device', 0), 'virtio-net-device,netdev=n0,mac=02:ab:00:00:00:01')
  assert.is(after(args, '-netdev', 1), 'tap,id=n1,ifname=tap1,script=no,downscript=no')
  assert.not.ok(args.some((a) => a.includes('vhost')))
})

test('invalid specs are refused with InvalidSpec before anything runs', () => {
  invalid(() => buildQemuArgv({ ...vm, vmId: '../etc' }, tcg, rt), /vm id/)
  invalid(() => buildQemuArgv({ ...vm, vmId: 'a,b' }, tcg, rt), /vm id/)
  invalid(() => buildQemuArgv({ ...vm, vcpus: 0 }, tcg, rt), /vcpus/)
  invalid(() => buildQemuArgv({ ...vm, vcpus: 1.5 }, tcg, rt), /vcpus/)
  invalid(() => buildQemuArgv({ ...vm, memoryMiB: 64 }, tcg, rt), /memoryMiB/)
  invalid(() => buildQemuArgv({ ...vm, nics: [{ tap: 'a-name-longer-than-15', mac: '02:00:00:00:00:01' }] }, tcg, rt), /TAP/)
  invalid(() => buildQemuArgv({ ...vm, nics: [{ tap: 't0', mac: '02:00:00:00:01' }] }, tcg, rt), /MAC/)
  invalid(() => buildQemuArgv({ ...vm, nics: [{ tap: 't0', mac: '03:00:00:00:00:01' }] }, tcg, rt), /unicast/)
  invalid(() => buildQemuArgv({ ...vm, drives: [{ kind: 'rbd', pool: 'rbd', image: 'a:b', conf: '/c' }] }, tcg, rt), /image/)
  invalid(() => buildQemuArgv({ ...vm, drives: [{ kind: 'rbd', pool: 'rbd', image: 'a', conf: '/c:d' }] }, tcg, rt), /conf/)
  invalid(() => buildQemuArgv({ ...vm, boot: { kernel: '/k', params: ['two words'] } }, tcg, rt), /kernel parameter/)
  invalid(() => buildQemuArgv(vm, tcg, runtimePaths('/' + 'x'.repeat(100), 'vm-1')), /longer than 107/)
})

test('isQemuFor: our qemu for this VM only', () => {
  const { binary, args } = buildQemuArgv(vm, tcg, rt)
  assert.ok(isQemuFor(['/usr/bin/' + binary, ...args], 'vm-1', rt.qmpSock))
  assert.not.ok(isQemuFor(['/usr/bin/' + binary, ...args], 'vm-2', rt.qmpSock), 'other vm id')
  assert.not.ok(isQemuFor(['/usr/bin/' + binary, ...args], 'vm-1', '/elsewhere/qmp.sock'), 'other data dir')
  assert.not.ok(isQemuFor(['/bin/sleep', ...args], 'vm-1', rt.qmpSock), 'not qemu')
  assert.not.ok(isQemuFor([], 'vm-1', rt.qmpSock), 'zombie')
})

test('tsc_early_khz from /proc/cpuinfo; helpers', () => {
  assert.is(tscKhzFromCpuinfo('processor\t: 0\ncpu MHz\t\t: 2445.406\ncache size\t: 512 KB\n'), 2445406)
  assert.is(tscKhzFromCpuinfo('processor\t: 0\n'), null)
  assert.is(optValue('a,b,,c'), 'a,,b,,,,c')
  assert.is(kernelParams({ tscKhz: 1000 }, ['x=1']), 'console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=1000 x=1')
})

test('tiny guest parameters and console lines', () => {
  assert.equal(tinyGuestParams({ hostname: 'web', ip: '10.1.0.5/24', gw: '10.1.0.1', disk: true }),
    ['blix.hostname=web', 'blix.ip=10.1.0.5/24', 'blix.gw=10.1.0.1', 'blix.disk=1'])
  assert.equal(tinyGuestParams({}), [])
  invalid(() => tinyGuestParams({ hostname: 'a b' }), /blix.hostname/)
  assert.equal(tinyGuestParams({ heartbeatMs: 50 }), ['blix.heartbeat=50'])
  invalid(() => tinyGuestParams({ heartbeatMs: 5 }), /blix.heartbeat must be 10..60000 ms: 5/)
  assert.equal(tinyGuestParams({ pingLoop: '10.60.0.2' }), ['blix.pingloop=10.60.0.2'])
  invalid(() => tinyGuestParams({ pingLoop: '10.60.0.2 x' }), /blix.pingloop/)
  // replies of the ping loop by try, one target's only, whole lines only
  assert.equal(parsePongs('BLIXARD-PONG 10.0.0.2 1\nBLIXARD-PONG 10.0.0.3 2\r\nBLIXARD-PONG 10.0.0.2 4\r\nBLIXARD-PONG 10.0.0.2 5', '10.0.0.2'), [1, 4])
  // whole lines only: the line being written at the end is not counted yet
  assert.equal(parseHeartbeats('x\nBLIXARD-HEARTBEAT 1\r\nBLIXARD-HEARTBEAT 2\nBLIXARD-HEARTBEAT 3'), [1, 2])
  assert.equal(parseReadyMarker('junk\nBLIXARD-GUEST-UP web 10.1.0.5 uptime=2.1 eth0=02:00:00:00:00:01 disks=[]\n'), { hostname: 'web', ip: '10.1.0.5' })
  assert.equal(parseReadyMarker('BLIXARD-GUEST-UP vm none uptime=1\r\n'), { hostname: 'vm', ip: null })
  assert.is(parseReadyMarker('BLIXARD-GUEST-U'), null)
  // a line still being written is not a marker yet (its ip could be cut short)
  assert.is(parseReadyMarker('BLIXARD-GUEST-UP vm 10.77.9'), null)
  assert.is(parseDiskBoots('BLIXARD-DISK vm boots=3\r\n'), 3)
  assert.is(parseDiskBoots('BLIXARD-DISK vm boots=1'), null)
})

test.run()
