// What a guest image can do beyond booting, decided per image where a spec names it (the `image`
// of VM_SPEC, protocols/command-schema.ts): the tiny image is the one Blixard builds itself
// (scripts/build-tiny-guest.sh), so its abilities are known; a flake or a kernel is the admin's,
// and Blixard assumes nothing of what its guest reads.
import type { VmSpec } from './model.ts'

export type VmImage = VmSpec['image']

export interface ImageCapabilities {
  /** its guest reads a `blix-identity NAME IP/PFX GW MAC` line on its serial console and takes
   * that name, MAC and address without a reboot (node/qemu/tiny-guest.ts identityLine): a clone
   * resumed from a snapshot of it does not keep its source's MAC and address */
  identity: boolean
  /** the host can hold a booted guest of it paused in a warm pool: the QEMU driver boots it and the
   * guest prints the ready marker once booted (node/qemu/tiny-guest.ts), so the host knows when to
   * pause it; a create of this image is then handed one instead of a boot */
  warm: boolean
}

export function imageCapabilities (image: VmImage): ImageCapabilities {
  switch (image.kind) {
    case 'tiny': return { identity: true, warm: true }
    case 'flake': return { identity: false, warm: false }
    case 'kernel': return { identity: false, warm: false }
  }
}

/** The image as an admin named it: `tiny`, `flake REF`, `kernel PATH`. */
export function imageLabel (image: VmImage): string {
  switch (image.kind) {
    case 'tiny': return 'tiny'
    case 'flake': return `flake ${image.ref}`
    case 'kernel': return `kernel ${image.kernel}`
  }
}

/** One image the same as another (the same kind and the same fields). */
export function sameImage (a: VmImage, b: VmImage): boolean {
  return imageKey(a) === imageKey(b)
}

function imageKey (i: VmImage): string {
  switch (i.kind) {
    case 'tiny': return 'tiny'
    case 'flake': return JSON.stringify(['flake', i.ref])
    case 'kernel': return JSON.stringify(['kernel', i.kernel, i.initrd ?? null, i.cmdline ?? null])
  }
}

/** Part of every such refusal's message: the CLI knows it by this and gives the next step. */
export const NO_IDENTITY_CHANNEL = 'does not read the blix-identity line'

/**
 * Why a clone of a snapshot of `source` (VM `sourceName`) must be refused for its identity, or
 * null. A clone keeps its source's networks (the saved state holds the NICs) and resumes with the
 * source's MAC and address in its memory; only an image that reads the identity line learns its
 * own, so a clone with networks of any other image would answer on the network as its source.
 * Checked where a clone is asked (node/api-snapshots.ts) and, deterministically, on apply
 * (storage/apply-snapshots.ts cloneFromSnapshot).
 */
export function cloneIdentityRefusal (source: Pick<VmSpec, 'image' | 'networks'>, sourceName: string, snapshot: string): string | null {
  if (source.networks.length === 0 || imageCapabilities(source.image).identity) return null
  return `snapshot ${snapshot} of VM ${sourceName}: its image (${imageLabel(source.image)}) ${NO_IDENTITY_CHANNEL}, so a clone would resume with VM ${sourceName}'s MAC and address on network ${source.networks.join(', ')}; ` +
    'a clone keeps its source\'s networks: clone a snapshot of a VM without networks, or run the source on an image that reads blix-identity (--image tiny)'
}
