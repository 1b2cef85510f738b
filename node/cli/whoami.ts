// The CLI's own identity and where it lives, without the libp2p host: `blixard whoami` and the
// scripts that start a local cluster for this CLI need only the key file, and loading the whole
// libp2p stack (connect.ts) to read it cost seconds on a loaded host.
import { homedir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../identity.ts'

export function configDir (): string {
  return process.env.BLIXARD_CONFIG_DIR ?? join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'blixard')
}

/** This CLI's peer id (the identity is created on first use). */
export async function whoami (): Promise<string> {
  const { privateKey } = await loadOrCreateIdentity(configDir())
  return peerIdFromPrivateKey(privateKey).toString()
}
