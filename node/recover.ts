// Offline admin recovery (`blixard-node admin recover --data-dir DIR --admin PEERID`): the
// operator, with root on a host, leaves a note in that node's data dir; on its next start the
// node votes through Raft, with its own key, for PEERID to become an admin (RecoverAdmin). The
// state machine adds the admin once every registered node has voted (storage/apply-admins.ts),
// so one host, or a key holder's extra hosts, cannot make an admin on their own.
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isEd25519PeerId } from '../protocols/auth.ts'

export const RECOVER_FILE = 'recover-admin'

export class RecoverError extends Error {}

/** Parse `admin recover --data-dir DIR --admin PEERID`, write the note; returns what to tell the operator. */
export async function recoverCommand (argv: string[]): Promise<string> {
  const val = (flag: string): string | undefined => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined }
  const dir = val('--data-dir')
  const admin = val('--admin')
  if (dir == null || admin == null) throw new RecoverError('usage: blixard-node admin recover --data-dir DIR --admin PEERID (run it on every registered node, with the node stopped, then start the nodes)')
  if (!isEd25519PeerId(admin)) throw new RecoverError(`--admin "${admin}" is not a libp2p peer id of an Ed25519 key (like 12D3KooW…; \`blixard whoami\` prints the CLI's)`)
  const tmp = join(dir, `${RECOVER_FILE}.tmp`)
  try {
    await writeFile(tmp, `${admin}\n`, { mode: 0o600 })
    await rename(tmp, join(dir, RECOVER_FILE))
  } catch (err) {
    throw new RecoverError(`cannot write ${join(dir, RECOVER_FILE)}: ${(err as Error).message} (is --data-dir the node's data directory?)`)
  }
  return `On its next start this node votes for ${admin} to become an admin. The admin is added once every registered node has voted: run the same command on each of them, then start them.`
}

/** The peer id this node was asked to vote for, if any. */
export async function pendingRecovery (dataDir: string): Promise<string | null> {
  try {
    const s = (await readFile(join(dataDir, RECOVER_FILE), 'utf8')).trim()
    return isEd25519PeerId(s) ? s : null
  } catch { return null }
}

export async function recoveryDone (dataDir: string): Promise<void> {
  await rm(join(dataDir, RECOVER_FILE), { force: true })
}

/** The note as membership reads it (node/membership.ts MembershipDeps.recovery). */
export function recoveryNote (dataDir: string): { pending: () => Promise<string | null>, done: () => Promise<void> } {
  return { pending: async () => await pendingRecovery(dataDir), done: async () => { await recoveryDone(dataDir) } }
}
