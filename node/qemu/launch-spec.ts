// From the replicated VM record to what the QEMU driver launches. Pure: the
// agent supplies what only the host knows (TAPs, disks, the tiny guest's files).
import type { VmRecord } from '../../protocols/model.ts'
import type { DriveSpec, NicSpec } from './cmdline.ts'
import type { QemuLaunchSpec } from './driver.ts'
import { QemuError } from './errors.ts'
import { tinyGuestParams, type TinyGuest } from './tiny-guest.ts'

export interface HostBindings {
  /** needed for image kind 'tiny' */
  tinyGuest?: TinyGuest
  nics?: NicSpec[]
  drives?: DriveSpec[]
  /** eth0 of the tiny guest: ADDR/PFX and gateway, from the network's allocation */
  ip?: string
  gw?: string
  /** this host's node name: the tiny guest's disk writer records it (blix.host) */
  hostName?: string
}

export function launchSpecFromVm (vm: VmRecord, host: HostBindings = {}): QemuLaunchSpec {
  const { spec } = vm
  if (spec.hypervisor !== 'qemu') throw new QemuError('InvalidSpec', `${vm.id}: hypervisor ${spec.hypervisor} is not run by the QEMU driver`)
  const base = { vmId: vm.id, generation: vm.generation, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, drives: host.drives ?? [], nics: host.nics ?? [] }
  const image = spec.image
  switch (image.kind) {
    case 'tiny': {
      if (host.tinyGuest == null) throw new QemuError('NotFound', `${vm.id}: no tiny guest on this host (scripts/build-tiny-guest.sh)`)
      const params = [...tinyGuestParams({ hostname: spec.name, ip: host.ip, gw: host.gw, host: host.hostName, disk: (host.drives ?? []).length > 0 }), ...spec.kernelParams]
      return { ...base, readiness: 'marker', boot: { kernel: host.tinyGuest.kernel, initrd: host.tinyGuest.initrd, params } }
    }
    case 'kernel': {
      const params = [...(image.cmdline ?? '').split(/\s+/).filter((p) => p !== ''), ...spec.kernelParams]
      return { ...base, readiness: 'qmp', boot: { kernel: image.kernel, ...(image.initrd != null ? { initrd: image.initrd } : {}), params } }
    }
    case 'flake':
      throw new QemuError('InvalidSpec', `${vm.id}: flake images run through microvm.nix on NixOS hosts, not the QEMU driver`)
  }
}
