// How QEMU names an RBD image for its own librbd block driver (Debian's qemu-block-extra):
// no kernel rbd/nbd module is needed, and the guest's QEMU is the RBD client that holds the
// image's exclusive lock (and is what fencing cuts off).
import { RbdError } from './ceph-errors.ts'
import { checkName } from './rbd-spec.ts'

export interface QemuRbdTarget {
  pool: string
  image: string
  /** path of the ceph.conf naming the monitors (and, for the blockdev form, the keyring) */
  conf: string
  /** cephx user without `client.` (default: what librbd defaults to, admin) */
  id?: string
  /** keyring path; the legacy filename form only (blockdev takes the conf's keyring) */
  keyring?: string
  /** open a snapshot read-only instead of the image */
  snapshot?: string
}

// In the legacy filename, ':' separates options and '\' escapes; nothing else is special.
function escapeOpt (v: string): string {
  if (v.includes('\n') || v.includes('\0')) throw new RbdError('InvalidSpec', `invalid path for QEMU: ${JSON.stringify(v)}`)
  return v.replace(/\\/g, '\\\\').replace(/:/g, '\\:')
}

/** `rbd:POOL/IMAGE[@SNAP]:conf=...[:id=...][:keyring=...]` for `-drive file=` or qemu-img/qemu-io. */
export function qemuRbdFilename (t: QemuRbdTarget): string {
  let s = `rbd:${checkName('pool', t.pool)}/${checkName('image', t.image)}`
  if (t.snapshot != null) s += `@${checkName('snapshot', t.snapshot)}`
  s += `:conf=${escapeOpt(t.conf)}`
  if (t.id != null) s += `:id=${escapeOpt(t.id)}`
  if (t.keyring != null) s += `:keyring=${escapeOpt(t.keyring)}`
  return s
}

/** The rbd protocol node for `-blockdev` / QMP `blockdev-add` (put a raw format node on top). */
export interface QemuRbdBlockdev {
  driver: 'rbd'
  'node-name': string
  pool: string
  image: string
  conf: string
  user?: string
  snapshot?: string
}

export function qemuRbdBlockdev (t: QemuRbdTarget, nodeName: string): QemuRbdBlockdev {
  if (t.keyring != null) throw new RbdError('InvalidSpec', 'blockdev rbd nodes take the keyring from the conf: put it in its [client] section')
  const b: QemuRbdBlockdev = { driver: 'rbd', 'node-name': nodeName, pool: checkName('pool', t.pool), image: checkName('image', t.image), conf: t.conf }
  if (t.id != null) b.user = t.id
  if (t.snapshot != null) b.snapshot = checkName('snapshot', t.snapshot)
  return b
}
