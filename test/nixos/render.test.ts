// The guest flake renderer: Nix string escaping round-trips through the real Nix
// evaluator, every rendered flake passes `nix-instantiate --parse`, and what it
// declares is read back by evaluating it against stand-in inputs (eval-guest.nix).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { VmSpec } from '../../protocols/model.ts'
import { BlixardError } from '../../protocols/errors.ts'
import { nixString, toNix, raw } from '../../nixos/nix-syntax.ts'
import { renderGuestFlake, type GuestFlakeInput, type GuestFlakeFiles } from '../../nixos/render.ts'
import { nixParse, nixEvalJson } from './nix-cli.ts'

const EVAL_GUEST = fileURLToPath(new URL('./eval-guest.nix', import.meta.url))
const dirs: string[] = []

function spec (over: Partial<VmSpec> = {}): VmSpec {
  return {
    name: 'web-1', vcpus: 2, memoryMiB: 512, diskGiB: 10, hypervisor: 'qemu', image: { kind: 'tiny' },
    volumes: [], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [],
    spreadLabel: null, priority: 0, restartPolicy: 'always', requires: [], ...over
  }
}

function input (over: Partial<GuestFlakeInput> = {}, s: Partial<VmSpec> = {}): GuestFlakeInput {
  return { spec: spec(s), interfaces: [{ id: 'bx-web1-0', mac: '02:00:00:00:00:01', bridge: 'br0' }], volumes: [], ...over }
}

function write (files: GuestFlakeFiles): string {
  const dir = mkdtempSync(join(tmpdir(), 'blix-guest-'))
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text as string)
  return dir
}

interface GuestEval {
  description: string
  inputs: Record<string, { url: string }>
  names: string[]
  system: string
  modules: Array<{ marker?: string, path?: string, guest?: { networking: { hostName: string }, microvm: Record<string, any> } }>
}

function evalGuest (dir: string, machine = 'microvm'): GuestEval {
  return nixEvalJson(`import ${EVAL_GUEST} { flakeDir = ${dir}; machine = ${nixString(machine)}; }`) as GuestEval
}

function guestOf (e: GuestEval): { networking: { hostName: string }, microvm: Record<string, any> } {
  const g = e.modules.find((m) => m.guest != null)?.guest
  assert.ok(g, 'the Blixard guest module is in the modules list')
  return g!
}

const HOSTILE = [
  '"', '\\', '${', '$${x}', '\\${x}', '${builtins.abort "x"}', '"; } ; evil = { a = "', '\n', '\r\n', '\t',
  "''", "''${x}", '$', '$$', '\\"', 'a\\', '\\n', '}', '{', '#', '/*', '*/', 'ünïcødé 🚀', '\u0001\u007f',
  'x = "${a}" \\ y'
]

test('nixString: hostile strings evaluate back to themselves in Nix', () => {
  const list = '[\n' + HOSTILE.map((s) => nixString(s)).join('\n') + '\n]'
  assert.equal(nixEvalJson(list), HOSTILE)
})

test('nixString: random unicode strings round-trip through the Nix evaluator (300 cases, one nix call)', () => {
  const cases = fc.sample(fc.string({ unit: 'binary', maxLength: 40 }), { numRuns: 300, seed: 7 })
    .concat(fc.sample(fc.string({ unit: fc.constantFrom('$', '{', '}', '\\', '"', '\n', "'", 'a'), maxLength: 12 }), { numRuns: 300, seed: 8 }))
    .filter((s) => !s.includes('\0') && !/\p{Surrogate}/u.test(s))
  assert.ok(cases.length > 500)
  assert.equal(nixEvalJson('[\n' + cases.map(nixString).join('\n') + '\n]'), cases)
})

test('nixString refuses NUL (Nix strings cannot hold it)', () => {
  assert.throws(() => nixString('a\0b'), (e: unknown) => e instanceof BlixardError && e.kind === 'InvalidSpec')
})

test('toNix: attribute names that are not identifiers are quoted and escaped', () => {
  const v = { 'a b': 1, if: 2, 'x"${y}': 3, ok: [raw('1 + 1'), -4, true, null] }
  assert.equal(nixEvalJson(toNix(v)), { 'a b': 1, if: 2, 'x"${y}': 3, ok: [2, -4, true, null] })
  // an object that merely looks like raw code is data
  assert.equal(nixEvalJson(toNix({ nixRaw: 'builtins.abort "x"' })), { nixRaw: 'builtins.abort "x"' })
})

test('a qemu guest with RBD, a share, a flake module: parses, and declares what the spec says', () => {
  const files = renderGuestFlake(input({
    volumes: [{ id: 'root', pool: 'rbd', image: 'web-1', cephConf: '/etc/ceph/ceph.conf', cephUser: 'blixard', keyringFile: '/etc/ceph/ceph.client.blixard.keyring', sizeGiB: 10 }],
    shares: [{ tag: 'ro-store', source: '/nix/store', mountPoint: '/nix/.ro-store', proto: 'virtiofs', readOnly: true }]
  }, { image: { kind: 'flake', ref: 'github:me/cfg#web' }, kernelParams: ['blix.ip=10.0.0.2/24'] }))
  assert.equal(Object.keys(files), ['flake.nix'])
  const dir = write(files)
  const p = nixParse(join(dir, 'flake.nix'))
  assert.ok(p.ok, p.stderr)
  const e = evalGuest(dir)
  assert.equal(e.names, ['web-1'])
  assert.equal(e.system, 'x86_64-linux')
  assert.equal(e.inputs.guest.url, 'github:me/cfg')
  assert.equal(e.modules[0], { marker: 'microvm.nixosModules.microvm' })
  assert.equal(e.modules[2], { marker: 'guest.nixosModules.web' })
  const g = guestOf(e)
  assert.equal(g.networking.hostName, 'web-1')
  assert.equal((g as Record<string, any>).system.stateVersion, { _type: 'override', priority: 1000, content: '24.11' })
  assert.equal(g.microvm.hypervisor, 'qemu')
  // librbd: the Ceph-enabled QEMU, the same expression as the host module's qemuPackage default
  assert.equal(g.microvm.qemu.package, { overrideOf: 'qemu_kvm', args: { cephSupport: true } })
  assert.equal(g.microvm.vcpu, 2)
  assert.equal(g.microvm.mem, 512)
  assert.equal(g.microvm.interfaces, [{ type: 'tap', id: 'bx-web1-0', mac: '02:00:00:00:00:01' }])
  assert.equal(g.microvm.volumes, [])
  assert.equal(g.microvm.shares, [{ proto: 'virtiofs', tag: 'ro-store', source: '/nix/store', mountPoint: '/nix/.ro-store', readOnly: true }])
  assert.equal(g.microvm.kernelParams, ['blix.ip=10.0.0.2/24'])
  // with a share microvm.nix puts QEMU on PCI: our drive must follow
  assert.equal(g.microvm.qemu.extraArgs, [
    '-drive', 'id=root,format=raw,if=none,file=rbd:rbd/web-1:conf=/etc/ceph/ceph.conf:id=blixard:keyring=/etc/ceph/ceph.client.blixard.keyring,cache=writeback,discard=unmap,read-only=off',
    '-device', 'virtio-blk-pci,drive=root,serial=root'
  ])
})

test('RBD drive bus follows microvm.nix: virtio-mmio without shares on -M microvm, PCI on q35', () => {
  const dir = write(renderGuestFlake(input({ volumes: [{ id: 'd0', pool: 'rbd', image: 'a', cephConf: '/etc/ceph/ceph.conf', sizeGiB: 1, readOnly: true }] })))
  assert.equal(guestOf(evalGuest(dir)).microvm.qemu.extraArgs[3], 'virtio-blk-device,drive=d0,serial=d0')
  assert.match(guestOf(evalGuest(dir)).microvm.qemu.extraArgs[1], /read-only=on$/)
  assert.equal(guestOf(evalGuest(dir, 'q35')).microvm.qemu.extraArgs[3], 'virtio-blk-pci,drive=d0,serial=d0')
})

test('hostile kernel parameters and flake URL reach the guest unchanged', () => {
  const params = ['x="${builtins.abort"pwned"}"', 'a\\b', "q=''${y}", 'z=";}evil={"', 'ünï=🚀']
  const url = 'git+https://example.org/r"${x}.git?ref=main'
  const dir = write(renderGuestFlake(input({}, { kernelParams: params, image: { kind: 'flake', ref: `${url}#myvm` } })))
  assert.ok(nixParse(join(dir, 'flake.nix')).ok)
  const e = evalGuest(dir)
  assert.equal(guestOf(e).microvm.kernelParams, params)
  assert.equal(e.inputs.guest.url, url)
  assert.equal(e.modules[2], { marker: 'guest.nixosModules.myvm' })
})

test('an inline module goes to its own file: its text cannot change the flake, and the flake imports it', () => {
  const text = '{ pkgs, ... }: { environment.systemPackages = [ pkgs.htop ]; services.openssh.enable = true; }'
  const files = renderGuestFlake(input({ userModule: { kind: 'inline', text } }))
  assert.equal(files['user-module.nix'], text + '\n')
  const dir = write(files)
  assert.ok(nixParse(join(dir, 'flake.nix')).ok)
  assert.ok(nixParse(join(dir, 'user-module.nix')).ok)
  const e = evalGuest(dir)
  assert.equal(e.modules[2], { path: 'user-module.nix' })
  assert.equal(e.inputs.guest, undefined)
  // hostile inline text: the flake is byte-identical to one with a harmless module
  const evil = renderGuestFlake(input({ userModule: { kind: 'inline', text: '"; }; } ${abort "x"} #' } }))
  assert.equal(evil['flake.nix'], files['flake.nix'])
})

test('cloud-hypervisor and firecracker take the kernel-mapped RBD device as a volume microvm.nix must not create', () => {
  for (const hv of ['cloud-hypervisor', 'firecracker'] as const) {
    const dir = write(renderGuestFlake(input({
      volumes: [{ id: 'root', pool: 'rbd', image: 'vm-a', cephConf: '/etc/ceph/ceph.conf', sizeGiB: 4, devicePath: '/dev/rbd/rbd/vm-a' }]
    }, { hypervisor: hv, vcpus: 1, memoryMiB: 256 })))
    const g = guestOf(evalGuest(dir))
    assert.equal(g.microvm.hypervisor, hv)
    assert.equal(g.microvm.volumes, [{ image: '/dev/rbd/rbd/vm-a', autoCreate: false, mountPoint: null, size: 4096 }])
    assert.equal(g.microvm.qemu, undefined)
  }
})

test('a range of specs all render to flakes that parse', () => {
  let n = 0
  const hvs = ['qemu', 'cloud-hypervisor', 'firecracker'] as const
  for (let i = 0; i < 24; i++) {
    const hv = hvs[i % 3]
    const nIf = i % 4
    const files = renderGuestFlake(input({
      interfaces: Array.from({ length: nIf }, (_, k) => ({ id: `t${i}-${k}`, mac: `02:00:00:00:${(i).toString(16).padStart(2, '0')}:0${k}`, bridge: `br${k}` })),
      volumes: Array.from({ length: i % 3 }, (_, k) => ({ id: `v${k}`, pool: 'rbd', image: `img-${i}-${k}`, cephConf: '/etc/ceph/ceph.conf', sizeGiB: k + 1, devicePath: `/dev/rbd/rbd/img-${i}-${k}` })),
      shares: hv === 'firecracker' || i % 2 === 0 ? [] : [{ tag: 'ro-store', source: '/nix/store', mountPoint: '/nix/.ro-store', proto: 'virtiofs' }],
      system: i % 5 === 0 ? 'aarch64-linux' : 'x86_64-linux',
      stateVersion: '25.05',
      inputs: { nixpkgs: `path:/nix/store/${'a'.repeat(32)}-source`, microvm: 'github:microvm-nix/microvm.nix/v0.5.0' },
      userModule: i % 3 === 1 ? { kind: 'inline', text: '{ ... }: { }' } : undefined
    }, { name: `vm-${i}`, hypervisor: hv, vcpus: 1 + (i % 8), memoryMiB: 128 * (1 + i), kernelParams: i % 2 === 0 ? [] : ['console=ttyS0', `x${'$'.repeat(i)}{\\"`] }))
    const dir = write(files)
    const p = nixParse(join(dir, 'flake.nix'))
    assert.ok(p.ok, `vm-${i}: ${p.stderr}`)
    n++
  }
  assert.is(n, 24)
})

function invalidSpec (f: () => unknown, re: RegExp): void {
  try {
    f()
  } catch (e) {
    assert.ok(e instanceof BlixardError, String(e))
    assert.is(e.kind, 'InvalidSpec')
    assert.match(e.message, re)
    return
  }
  assert.unreachable(`no InvalidSpec for ${re}`)
}

test('names and values that cannot be rendered safely are refused as InvalidSpec', () => {
  invalidSpec(() => renderGuestFlake(input({}, { name: 'Web"1' })), /vm name/)
  invalidSpec(() => renderGuestFlake(input({}, { name: 'a'.repeat(64) })), /vm name/)
  invalidSpec(() => renderGuestFlake(input({}, { hypervisor: 'crosvm' as never })), /hypervisor/)
  invalidSpec(() => renderGuestFlake(input({}, { vcpus: 0 })), /vcpus/)
  invalidSpec(() => renderGuestFlake(input({}, { memoryMiB: 1.5 })), /memoryMiB/)
  invalidSpec(() => renderGuestFlake(input({}, { kernelParams: ['a b'] })), /kernel parameter/)
  invalidSpec(() => renderGuestFlake(input({ interfaces: [{ id: 'tap-name-way-too-long', mac: '02:00:00:00:00:01', bridge: 'br0' }] })), /tap id/)
  invalidSpec(() => renderGuestFlake(input({ interfaces: [{ id: 't0', mac: '03:00:00:00:00:01', bridge: 'br0' }] })), /unicast MAC/)
  invalidSpec(() => renderGuestFlake(input({ interfaces: [{ id: 't0', mac: '02:00:00:00:00:01', bridge: 'br 0' }] })), /bridge/)
  const vol = { id: 'd0', pool: 'rbd', image: 'a', cephConf: '/etc/ceph/ceph.conf', sizeGiB: 1 }
  invalidSpec(() => renderGuestFlake(input({ volumes: [{ ...vol, image: 'a:conf=/tmp/x' }] })), /rbd image/)
  invalidSpec(() => renderGuestFlake(input({ volumes: [{ ...vol, pool: 'p,file=/etc/shadow' }] })), /rbd pool/)
  invalidSpec(() => renderGuestFlake(input({ volumes: [{ ...vol, cephConf: 'ceph.conf' }] })), /ceph conf/)
  invalidSpec(() => renderGuestFlake(input({ volumes: [vol, vol] })), /used twice/)
  invalidSpec(() => renderGuestFlake(input({ volumes: [vol] }, { hypervisor: 'firecracker' })), /no librbd/)
  invalidSpec(() => renderGuestFlake(input({ shares: [{ tag: 's', source: '/a,b', mountPoint: '/m', proto: '9p' }] })), /share source/)
  invalidSpec(() => renderGuestFlake(input({ shares: [{ tag: 's', source: '/a', mountPoint: '/m', proto: '9p' }] }, { hypervisor: 'cloud-hypervisor' })), /only virtiofs/)
  invalidSpec(() => renderGuestFlake(input({}, { image: { kind: 'flake', ref: 'github:a/b#x.y' } })), /module name/)
  invalidSpec(() => renderGuestFlake(input({}, { image: { kind: 'kernel', kernel: '/boot/vmlinuz' } })), /QEMU driver/)
  invalidSpec(() => renderGuestFlake(input({ stateVersion: '24.11"' })), /stateVersion/)
})

test.after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

test('every qemu guest runs the Ceph-enabled QEMU, with or without volumes', () => {
  const g = guestOf(evalGuest(write(renderGuestFlake(input({ volumes: [] })))))
  assert.equal(g.microvm.qemu, { package: { overrideOf: 'qemu_kvm', args: { cephSupport: true } } })
})

test.run()
