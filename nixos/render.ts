// Renders a microvm.nix guest flake from a VM spec and the host's facts (TAPs, MACs,
// RBD attachments). Pure: the agent writes the files, nix builds them (microvm-host.ts).
import type { Hypervisor, VmSpec } from '../protocols/model.ts'
import { BlixardError } from '../protocols/errors.ts'
import { raw, toNix, nixString, NixRaw, type NixValue } from './nix-syntax.ts'

/** A TAP the agent created for the guest, and the bridge it joins (the host attaches it: microvm-host.ts). */
export interface GuestInterface {
  /** host interface name of the TAP (IFNAMSIZ: at most 15 characters) */
  id: string
  mac: string
  bridge: string
}

/** An RBD image the guest gets as a virtio block device. */
export interface RbdAttachment {
  /** drive id, also the virtio serial: the guest finds it as /dev/disk/by-id/virtio-ID */
  id: string
  pool: string
  image: string
  /** ceph.conf on the host */
  cephConf: string
  /** cephx user without the `client.` prefix */
  cephUser?: string
  keyringFile?: string
  sizeGiB: number
  readOnly?: boolean
  /**
   * Host block device of the image mapped by the kernel (`rbd map`), for hypervisors
   * without librbd (cloud-hypervisor, firecracker). QEMU opens the image itself.
   */
  devicePath?: string
}

export interface GuestShare {
  tag: string
  source: string
  mountPoint: string
  proto: '9p' | 'virtiofs'
  readOnly?: boolean
}

/** The guest's own NixOS configuration: inline module source, or a module exported by a flake. */
export type UserModule =
  | { kind: 'inline', text: string }
  /** `URL#NAME` means `(getFlake URL).nixosModules.NAME`; without `#NAME`, `nixosModules.default` */
  | { kind: 'flake', ref: string }

export interface GuestFlakeInput {
  spec: VmSpec
  interfaces: GuestInterface[]
  volumes: RbdAttachment[]
  shares?: GuestShare[]
  /** overrides spec.image: an inline module, or a flake module */
  userModule?: UserModule
  system?: 'x86_64-linux' | 'aarch64-linux'
  stateVersion?: string
  /** flake URLs of nixpkgs and microvm.nix; hosts should pin their own revisions */
  inputs?: { nixpkgs?: string, microvm?: string }
}

export interface GuestFlakeFiles {
  'flake.nix': string
  /** present for an inline user module: kept in its own file so its text can never change our flake's syntax */
  'user-module.nix'?: string
}

export const DEFAULT_NIXPKGS = 'github:NixOS/nixpkgs/nixos-24.11'
export const DEFAULT_MICROVM = 'github:microvm-nix/microvm.nix'
/** Nix expression of the guest's QEMU, in the guest module's `pkgs`. */
export const QEMU_PACKAGE = 'pkgs.qemu_kvm.override { cephSupport = true; }'
export const HYPERVISORS: readonly Hypervisor[] = ['qemu', 'cloud-hypervisor', 'firecracker']

const VM_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/ // a hostname label: it becomes networking.hostName
const IFNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/
// RBD names and paths go into QEMU's `-drive file=rbd:POOL/IMAGE:opt=val,...`: no `:`, `,`, `@` or `/` inside a name.
const RBD_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const QEMU_ID = /^[A-Za-z][A-Za-z0-9_.-]{0,19}$/
const SAFE_PATH = /^\/[A-Za-z0-9_.@+\/-]*$/
const SHARE_TAG = /^[A-Za-z0-9_-]{1,36}$/
const STATE_VERSION = /^\d\d\.\d\d$/
const FLAKE_ATTR = /^[A-Za-z_][A-Za-z0-9_-]*$/

function invalid (what: string): never {
  throw new BlixardError('InvalidSpec', what)
}

function check (ok: boolean, what: string): void {
  if (!ok) invalid(what)
}

function validate (input: GuestFlakeInput): void {
  const s = input.spec
  check(typeof s.name === 'string' && VM_NAME.test(s.name), `vm name ${JSON.stringify(s.name)} must be a hostname label (a-z, 0-9, -; at most 63)`)
  check(HYPERVISORS.includes(s.hypervisor), `hypervisor ${JSON.stringify(s.hypervisor)} is not one of ${HYPERVISORS.join(', ')}`)
  check(Number.isSafeInteger(s.vcpus) && s.vcpus >= 1 && s.vcpus <= 255, `vcpus ${s.vcpus} must be an integer in 1..255`)
  check(Number.isSafeInteger(s.memoryMiB) && s.memoryMiB >= 64 && s.memoryMiB <= 4 * 1024 * 1024, `memoryMiB ${s.memoryMiB} must be an integer in 64..4194304`)
  for (const p of s.kernelParams) {
    // microvm.nix joins kernel parameters with spaces: one containing whitespace would become several.
    check(typeof p === 'string' && p.length > 0 && p.length <= 4096 && !/[\s\0]/.test(p), `kernel parameter ${JSON.stringify(p)} must be non-empty without whitespace`)
  }
  const taps = new Set<string>()
  for (const i of input.interfaces) {
    check(IFNAME.test(i.id), `tap id ${JSON.stringify(i.id)} must be an interface name of at most 15 characters`)
    check(!taps.has(i.id), `tap id ${i.id} is used twice`)
    taps.add(i.id)
    check(MAC.test(i.mac) && (parseInt(i.mac.slice(0, 2), 16) & 1) === 0, `mac ${JSON.stringify(i.mac)} must be a unicast MAC aa:bb:cc:dd:ee:ff`)
    check(IFNAME.test(i.bridge), `bridge ${JSON.stringify(i.bridge)} must be an interface name of at most 15 characters`)
  }
  const ids = new Set<string>()
  for (const v of input.volumes) {
    check(QEMU_ID.test(v.id), `volume id ${JSON.stringify(v.id)} must start with a letter, at most 20 of A-Z a-z 0-9 _ . -`)
    check(!ids.has(v.id), `volume id ${v.id} is used twice`)
    ids.add(v.id)
    check(RBD_NAME.test(v.pool), `rbd pool ${JSON.stringify(v.pool)} has characters QEMU's rbd: syntax cannot carry`)
    check(RBD_NAME.test(v.image), `rbd image ${JSON.stringify(v.image)} has characters QEMU's rbd: syntax cannot carry`)
    check(SAFE_PATH.test(v.cephConf), `ceph conf ${JSON.stringify(v.cephConf)} must be an absolute path of plain characters`)
    if (v.cephUser != null) check(RBD_NAME.test(v.cephUser), `ceph user ${JSON.stringify(v.cephUser)} is not a plain name`)
    if (v.keyringFile != null) check(SAFE_PATH.test(v.keyringFile), `keyring ${JSON.stringify(v.keyringFile)} must be an absolute path of plain characters`)
    if (v.devicePath != null) check(SAFE_PATH.test(v.devicePath), `device ${JSON.stringify(v.devicePath)} must be an absolute path of plain characters`)
    check(Number.isSafeInteger(v.sizeGiB) && v.sizeGiB >= 1, `volume ${v.id} size must be a positive integer of GiB`)
    if (s.hypervisor !== 'qemu') {
      check(v.devicePath != null, `${s.hypervisor} has no librbd: volume ${v.id} needs the image mapped on the host (devicePath)`)
    }
  }
  const tags = new Set<string>()
  const shares = input.shares ?? []
  check(!(s.hypervisor === 'firecracker' && shares.length > 0), 'firecracker cannot share directories with the guest')
  for (const sh of shares) {
    check(!(s.hypervisor === 'cloud-hypervisor' && sh.proto !== 'virtiofs'), `cloud-hypervisor shares only virtiofs, not ${sh.proto} (share ${sh.tag})`)
    check(SHARE_TAG.test(sh.tag), `share tag ${JSON.stringify(sh.tag)} must be 1..36 of A-Z a-z 0-9 _ -`)
    check(!tags.has(sh.tag), `share tag ${sh.tag} is used twice`)
    tags.add(sh.tag)
    // microvm.nix puts the source into QEMU's -fsdev path=...: a comma would split it.
    check(sh.source.startsWith('/') && !/[,\s\0]/.test(sh.source), `share source ${JSON.stringify(sh.source)} must be an absolute path without commas or whitespace`)
    check(sh.mountPoint.startsWith('/') && !/[\0\n]/.test(sh.mountPoint), `share mount point ${JSON.stringify(sh.mountPoint)} must be an absolute path`)
    check(sh.proto === '9p' || sh.proto === 'virtiofs', `share proto ${JSON.stringify(sh.proto)} must be 9p or virtiofs`)
  }
  if (input.system != null) check(input.system === 'x86_64-linux' || input.system === 'aarch64-linux', `system ${JSON.stringify(input.system)} is not supported`)
  if (input.stateVersion != null) check(STATE_VERSION.test(input.stateVersion), `stateVersion ${JSON.stringify(input.stateVersion)} must look like 24.11`)
  const um = userModuleOf(input)
  if (um?.kind === 'flake') parseFlakeRef(um.ref)
  if (um?.kind === 'inline') check(!um.text.includes('\0'), 'inline module contains a NUL byte')
}

function userModuleOf (input: GuestFlakeInput): UserModule | null {
  if (input.userModule != null) return input.userModule
  const img = input.spec.image
  if (img.kind === 'flake') return { kind: 'flake', ref: img.ref }
  // 'tiny' means the smallest guest: here, microvm.nix's minimal NixOS with no user module.
  if (img.kind === 'tiny') return null
  return invalid('a kernel image runs on the QEMU driver; the NixOS path builds its kernel from the guest configuration (use a flake or an inline module)')
}

function parseFlakeRef (ref: string): { url: string, attr: string } {
  check(typeof ref === 'string' && ref.length > 0 && ref.length <= 2048 && !/[\s\0]/.test(ref), `flake ref ${JSON.stringify(ref)} must be non-empty without whitespace`)
  const hash = ref.lastIndexOf('#')
  const url = hash < 0 ? ref : ref.slice(0, hash)
  const attr = hash < 0 ? 'default' : ref.slice(hash + 1)
  check(url.length > 0, `flake ref ${JSON.stringify(ref)} has no URL before '#'`)
  check(FLAKE_ATTR.test(attr), `flake ref ${JSON.stringify(ref)}: module name ${JSON.stringify(attr)} must be a plain name`)
  return { url, attr }
}

/** `"a" + b + "c"` from literal strings and our own expressions. */
function concat (...parts: Array<string | NixRaw>): NixRaw {
  return raw(parts.map((p) => p instanceof NixRaw ? p.nixRaw : nixString(p)).join(' + '))
}

/** QEMU arguments that open each RBD image through librbd (qemu-block-extra / qemu's rbd driver). */
function qemuRbdArgs (volumes: RbdAttachment[]): NixValue[] {
  const args: NixValue[] = []
  for (const v of volumes) {
    let file = `rbd:${v.pool}/${v.image}:conf=${v.cephConf}`
    if (v.cephUser != null) file += `:id=${v.cephUser}`
    if (v.keyringFile != null) file += `:keyring=${v.keyringFile}`
    args.push('-drive', `id=${v.id},format=raw,if=none,file=${file},cache=writeback,discard=unmap,read-only=${v.readOnly === true ? 'on' : 'off'}`)
    // The bus (virtio-mmio "device" or "pci") must match microvm.nix's own choice, computed below in Nix.
    args.push('-device', concat('virtio-blk-', raw('devType'), `,drive=${v.id},serial=${v.id}`))
  }
  return args
}

function microvmBlock (input: GuestFlakeInput): Record<string, NixValue | undefined> {
  const s = input.spec
  const mappedVolumes = s.hypervisor === 'qemu'
    ? []
    : input.volumes.map((v) => ({
      image: v.devicePath as string,
      // the image already exists in Ceph: microvm.nix must neither create nor format nor mount it
      autoCreate: false,
      mountPoint: null,
      size: v.sizeGiB * 1024,
      readOnly: v.readOnly === true ? true : undefined
    }))
  return {
    hypervisor: s.hypervisor,
    vcpu: s.vcpus,
    mem: s.memoryMiB,
    interfaces: input.interfaces.map((i) => ({ type: 'tap', id: i.id, mac: i.mac.toLowerCase() })),
    volumes: mappedVolumes,
    shares: (input.shares ?? []).map((sh) => ({
      proto: sh.proto,
      tag: sh.tag,
      source: sh.source,
      mountPoint: sh.mountPoint,
      readOnly: sh.readOnly === true ? true : undefined
    })),
    kernelParams: s.kernelParams,
    qemu: s.hypervisor === 'qemu'
      ? {
          // the QEMU the host module gives the daemon (services.blixard.qemuPackage's default): nixpkgs'
          // own is built without librbd, and the guest's nixpkgs is the host's pinned one, so it is the same build
          package: raw(QEMU_PACKAGE),
          extraArgs: input.volumes.length > 0 ? qemuRbdArgs(input.volumes) : undefined
        }
      : undefined
  }
}

/**
 * The guest flake for `nix build DIR#nixosConfigurations.NAME.config.microvm.declaredRunner`.
 * Throws BlixardError('InvalidSpec') on any name or value it cannot render safely.
 */
export function renderGuestFlake (input: GuestFlakeInput): GuestFlakeFiles {
  validate(input)
  const s = input.spec
  const um = userModuleOf(input)
  const flakeRef = um?.kind === 'flake' ? parseFlakeRef(um.ref) : null
  const system = input.system ?? 'x86_64-linux'

  const inputs: Record<string, NixValue> = {
    nixpkgs: { url: input.inputs?.nixpkgs ?? DEFAULT_NIXPKGS },
    microvm: { url: input.inputs?.microvm ?? DEFAULT_MICROVM, inputs: { nixpkgs: { follows: 'nixpkgs' } } }
  }
  if (flakeRef != null) inputs.guest = { url: flakeRef.url }

  const guestModule = toNix({
    networking: { hostName: s.name },
    // the user's own module usually sets its stateVersion: theirs wins
    system: { stateVersion: raw(`lib.mkDefault ${nixString(input.stateVersion ?? '24.11')}`) },
    microvm: microvmBlock(input)
  }, 4)

  const modules: string[] = ['microvm.nixosModules.microvm', 'blixardGuest']
  if (um?.kind === 'inline') modules.push('./user-module.nix')
  if (flakeRef != null) modules.push(`inputs.guest.nixosModules.${flakeRef.attr}`)

  const flake = `# Generated by Blixard for VM ${JSON.stringify(s.name)}. Do not edit: the agent rewrites it on every spec change.
{
  description = ${nixString(`Blixard guest ${s.name}`)};

  inputs = ${toNix(inputs, 1)};

  outputs = { self, nixpkgs, microvm, ... }@inputs:
    let
      # What Blixard decides for this guest; the user's own module comes after it.
      blixardGuest = { config, lib, pkgs, ... }:
        let
          # microvm.nix's rule for its QEMU bus: PCI once shares, PCI devices, graphics or a
          # non-microvm machine need it, virtio-mmio otherwise. Our RBD drives must use the same.
          devType =
            if config.microvm.shares != [ ]
              || config.microvm.graphics.enable
              || lib.any (d: d.bus == "pci") config.microvm.devices
              || !(lib.hasPrefix "microvm" config.microvm.qemu.machine)
            then "pci" else "device";
        in ${guestModule};
    in {
      nixosConfigurations.${nixString(s.name)} = nixpkgs.lib.nixosSystem {
        system = ${nixString(system)};
        modules = [
${modules.map((m) => '          ' + m).join('\n')}
        ];
      };
    };
}
`
  const files: GuestFlakeFiles = { 'flake.nix': flake }
  if (um?.kind === 'inline') files['user-module.nix'] = um.text.endsWith('\n') ? um.text : um.text + '\n'
  return files
}
