// This node's Ceph client settings, from the node config's [ceph] section (ceph.conf, required
// to enable RBD; pool, default rbd; id, the cephx user, default admin; keyring, default what the
// conf says), each also a flag (--ceph-conf …) and an environment variable (BLIXARD_CEPH_CONF …).
import { RbdClient } from '../storage/rbd.ts'

export interface CephSettings {
  conf: string
  pool: string
  id?: string
  keyring?: string
}

export function cephSettings (c: { conf: string | null, pool: string, id: string | null, keyring: string | null }): CephSettings | null {
  if (c.conf == null) return null
  const s: CephSettings = { conf: c.conf, pool: c.pool }
  if (c.id != null) s.id = c.id
  if (c.keyring != null) s.keyring = c.keyring
  return s
}

export function rbdClientFor (s: CephSettings): RbdClient {
  return new RbdClient({ conf: s.conf, ...(s.id != null ? { id: s.id } : {}), ...(s.keyring != null ? { keyring: s.keyring } : {}) })
}
