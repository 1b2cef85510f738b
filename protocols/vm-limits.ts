// What a VM spec may ask for, defined once: the CLI checks flags against it (naming the flag, in
// the user's units), the state machine refuses commands outside it, and the QEMU driver builds
// its argv under the same bounds, so a spec the cluster accepts is one the host can boot.

export const VM_LIMITS = {
  minVcpus: 1,
  /** QEMU's x86 machine types stop at 255 vCPUs. */
  maxVcpus: 255,
  /** The Debian cloud kernel does not decompress in 64 MiB. */
  minMemoryMiB: 80,
  maxMemoryMiB: 16 * 1024 * 1024,
  maxDiskGiB: 1024 * 1024,
  maxVolumeGiB: 1024 * 1024
} as const

/** Bounds of a project's quota limit: larger than any cluster, so a typo is caught, not a real
 * setting (here, beside the VM limits, so the CLI checks its flags without loading the schemas). */
export const QUOTA_LIMIT_MAX = 1e12

/** A MiB count the way a person writes it: 96M, 2G, 16T. */
export function formatMiB (mib: number): string {
  if (mib >= 1024 * 1024 && mib % (1024 * 1024) === 0) return `${mib / (1024 * 1024)}T`
  if (mib >= 1024 && mib % 1024 === 0) return `${mib / 1024}G`
  return `${mib}M`
}
