// The node's persistent libp2p identity: an Ed25519 private key, protobuf-marshalled by
// @libp2p/crypto, in `<dataDir>/identity.key` with mode 0600. The peer id (and so the node id in
// Raft) is derived from it, so it must survive restarts.
import { mkdir, readFile, writeFile, chmod, stat, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import type { Signer } from '../protocols/auth.ts'

export const IDENTITY_FILE = 'identity.key'

export class IdentityError extends Error {
  constructor (readonly path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'IdentityError'
  }
}

/** Reads `<dataDir>/identity.key`, or creates it (and dataDir) when missing. */
export async function loadOrCreateIdentity (dataDir: string): Promise<{ privateKey: PrivateKey, created: boolean }> {
  const path = join(dataDir, IDENTITY_FILE)
  let bytes: Uint8Array | null = null
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new IdentityError(path, (err as Error).message)
  }
  if (bytes != null) {
    const mode = (await stat(path)).mode & 0o777
    if ((mode & 0o077) !== 0) await chmod(path, 0o600) // tighten rather than refuse: the key is ours
    try {
      return { privateKey: privateKeyFromProtobuf(bytes), created: false }
    } catch (err) {
      throw new IdentityError(path, `not a libp2p private key (${(err as Error).message})`)
    }
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const privateKey = await generateKeyPair('Ed25519')
  // write then rename so a crash never leaves a truncated identity behind
  const tmp = `${path}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(privateKey), { mode: 0o600 })
  await rename(tmp, path)
  return { privateKey, created: true }
}

/** The identity with a signer over it: a node signs its own commands and its scheduling decisions
 * with the key that is also its libp2p peer id. */
export async function loadSigningIdentity (dataDir: string): Promise<{ privateKey: PrivateKey, created: boolean, signer: Signer }> {
  const { privateKey, created } = await loadOrCreateIdentity(dataDir)
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const { keySigner } = await import('../protocols/auth.ts')
  return { privateKey, created, signer: keySigner(peerIdFromPrivateKey(privateKey).toString(), privateKey) }
}
