// Checks on what we hand to the rbd/ceph CLIs, done before any call: names that the CLI
// would misparse (a leading '-' reads as an option, '@' and '/' split pool/image@snap),
// sizes it would accept but we never want (0 bytes), fencing addresses.
import { RbdError } from './ceph-errors.ts'

export const MIB = 1024 * 1024
export const GIB = 1024 * MIB
/** Largest image we create or grow to (64 TiB): a typo guard, not a Ceph limit. */
export const MAX_IMAGE_GIB = 64 * 1024
/** Longest pool, image or snapshot name we accept. */
export const MAX_NAME_LENGTH = 128
/** Longest blocklist entry we ask for (Ceph's default is one hour; a fence should outlive the lease). */
export const MAX_BLOCKLIST_SECONDS = 30 * 24 * 3600

export type RbdFeature = 'layering' | 'exclusive-lock' | 'object-map' | 'fast-diff' | 'deep-flatten' | 'journaling'
export const RBD_FEATURES: readonly RbdFeature[] = ['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten', 'journaling']
/** Clones need layering; one writer at a time needs exclusive-lock. */
export const DEFAULT_FEATURES: readonly RbdFeature[] = ['layering', 'exclusive-lock']

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/

export function checkName (what: 'pool' | 'image' | 'snapshot', name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH || !NAME.test(name)) {
    throw new RbdError('InvalidSpec', `invalid ${what} name ${JSON.stringify(name)}: 1-${MAX_NAME_LENGTH} of A-Z a-z 0-9 . _ -, not starting with . or -`)
  }
  return name
}

/** GiB to the whole MiB count the CLI gets (`--size NM`); fractions of a GiB are allowed
 * when they are whole MiB. */
export function sizeMiB (sizeGiB: number): number {
  if (typeof sizeGiB !== 'number' || !Number.isFinite(sizeGiB) || sizeGiB <= 0 || sizeGiB > MAX_IMAGE_GIB) {
    throw new RbdError('InvalidSpec', `invalid size ${String(sizeGiB)} GiB: must be > 0 and <= ${MAX_IMAGE_GIB}`)
  }
  const mib = sizeGiB * 1024
  if (!Number.isInteger(mib)) throw new RbdError('InvalidSpec', `invalid size ${sizeGiB} GiB: not a whole number of MiB`)
  return mib
}

export function checkFeatures (features: readonly string[]): readonly RbdFeature[] {
  for (const f of features) {
    if (!(RBD_FEATURES as readonly string[]).includes(f)) throw new RbdError('InvalidSpec', `unknown image feature ${JSON.stringify(f)}`)
  }
  if (features.includes('exclusive-lock') === false && features.some((f) => f === 'object-map' || f === 'journaling')) {
    throw new RbdError('InvalidSpec', 'object-map and journaling need exclusive-lock')
  }
  if (features.includes('fast-diff') && !features.includes('object-map')) {
    throw new RbdError('InvalidSpec', 'fast-diff needs object-map')
  }
  return features as readonly RbdFeature[]
}

// A client address as Ceph prints it in `rbd lock ls` / `rbd status`: IP:port/nonce
// (IPv6 in brackets), optionally with a msgr protocol prefix; a bare IP fences a whole host.
const V4 = String.raw`\d{1,3}(?:\.\d{1,3}){3}`
const V6 = String.raw`\[[0-9A-Fa-f:.]+\]`
const CLIENT_ADDR = new RegExp(String.raw`^(?:(?:v1|v2|any):)?(?:${V4}|${V6})(?::\d{1,5})?(?:/\d{1,10})?$`)

export function checkClientAddr (addr: string): string {
  if (typeof addr !== 'string' || !CLIENT_ADDR.test(addr)) {
    throw new RbdError('InvalidSpec', `invalid client address ${JSON.stringify(addr)}: expected IP:port/nonce as rbd lock ls prints it`)
  }
  return addr
}

export function checkBlocklistSeconds (seconds: number): number {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_BLOCKLIST_SECONDS) {
    throw new RbdError('InvalidSpec', `invalid blocklist duration ${String(seconds)} s: must be > 0 and <= ${MAX_BLOCKLIST_SECONDS}`)
  }
  return seconds
}
