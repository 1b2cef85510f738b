// `blixard keygen PATH`: writes a new cluster (pnet) key. Nodes without the same key cannot
// complete a connection. Format: /key/swarm/psk/1.0.0/\n/base16/\n<64 hex>.
import { readFile, writeFile } from 'node:fs/promises'
import { generateKey } from '@libp2p/pnet'

export class ClusterKeyError extends Error {
  constructor (readonly path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'ClusterKeyError'
  }
}

/** A fresh key in the pnet file format. */
export function newClusterKey (): Uint8Array {
  const buf = new Uint8Array(95)
  generateKey(buf)
  return buf
}

/** Writes a new key to `path` with mode 0600; refuses to overwrite an existing file. */
export async function writeClusterKey (path: string): Promise<void> {
  try {
    await writeFile(path, newClusterKey(), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ClusterKeyError(path, code === 'EEXIST' ? 'already exists; refusing to overwrite a cluster key' : (err as Error).message)
  }
}

const KEY_RE = /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-fA-F]{64}\s*$/

/** Reads and checks a key file; the bytes are what preSharedKey({ psk }) takes. */
export async function readClusterKey (path: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new ClusterKeyError(path, (err as Error).message)
  }
  if (!KEY_RE.test(Buffer.from(bytes).toString('utf8'))) {
    throw new ClusterKeyError(path, 'not a cluster key (expected /key/swarm/psk/1.0.0/, /base16/, 64 hex digits; make one with `blixard keygen PATH`)')
  }
  return new Uint8Array(bytes)
}

/** CLI entry: `blixard keygen PATH`. */
export async function keygenMain (argv: string[]): Promise<number> {
  const path = argv[0]
  if (path == null || argv.length !== 1) {
    process.stderr.write('usage: blixard keygen PATH\n')
    return 2
  }
  try {
    await writeClusterKey(path)
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`)
    return 1
  }
  process.stdout.write(`wrote a new cluster key to ${path}; copy it to every node (mode 0600)\n`)
  return 0
}
