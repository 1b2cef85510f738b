// This node's Ceph client settings, from the environment (kept out of the config file
// until hosts need more than these): BLIXARD_CEPH_CONF (required to enable RBD),
// BLIXARD_CEPH_POOL (default rbd), BLIXARD_CEPH_ID (cephx user, default admin),
// BLIXARD_CEPH_KEYRING (default: what the conf says).
import { RbdClient } from '../storage/rbd.ts'

export interface CephSettings {
  conf: string
  pool: string
  id?: string
  keyring?: string
}

export function cephFromEnv (env: NodeJS.ProcessEnv = process.env): CephSettings | null {
  const conf = env.BLIXARD_CEPH_CONF
  if (conf == null || conf === '') return null
  const s: CephSettings = { conf, pool: env.BLIXARD_CEPH_POOL ?? 'rbd' }
  if (env.BLIXARD_CEPH_ID != null && env.BLIXARD_CEPH_ID !== '') s.id = env.BLIXARD_CEPH_ID
  if (env.BLIXARD_CEPH_KEYRING != null && env.BLIXARD_CEPH_KEYRING !== '') s.keyring = env.BLIXARD_CEPH_KEYRING
  return s
}

export function rbdClientFor (s: CephSettings): RbdClient {
  return new RbdClient({ conf: s.conf, ...(s.id != null ? { id: s.id } : {}), ...(s.keyring != null ? { keyring: s.keyring } : {}) })
}
