// Who may propose what: every command carries the authority it needs, signed, in one envelope
// field (`auth`), so that the right to change the cluster travels with the command and not with
// the connection it came on. The same pure check runs on the leader before it proposes and in the
// state machine on apply (storage/state-machine.ts), so no member, forwarder or forged log entry
// can act as an admin or as another node.
//
// Three kinds of authority (AUTHORITY below):
//   admin  — signed by a peer id in the admins table at the index where it applies (the CLI's key)
//   node   — signed by the node the command is about (its libp2p identity key), touching only
//            that node's own records
//   leader — the leader's decisions (AssignVm, RenewLeases, MarkNodeDown, ExpireMigration, EvacuateVm,
//            PreemptVm, RebalanceVm): signed by the leader of the term whose entry carries
//            it. The leader proposes only the ones it signed itself and refuses forwarded ones;
//            on apply, deterministically: see leaderTermOf and the 'leader' case of authError.
//
// The signature is Ed25519 (the libp2p identity keys of nodes and CLIs are Ed25519, and an
// Ed25519 peer id embeds its public key, so the state needs no key table) over signingBytes(),
// checked with libsodium (sodium-native, already the pnet cipher's library): its verify takes
// ~45 µs here against ~116 µs for node:crypto's (OpenSSL 3.0's portable field arithmetic), and
// every replica checks every command, so this is most of a follower's CPU per write. libsodium is
// also the stricter of the two (it refuses small-order keys and non-canonical encodings), and every
// replica runs the same check, so they agree.
import sodium from 'sodium-native'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { Command } from './commands.ts'
import type { Infer } from './schema.ts'
import type { COMMAND_AUTH } from './command-schema.ts'
import { encodeCbor } from '../storage/codec.ts'

/** A signature's validity is bounded by log index, never by a clock: `until` is the last index at
 * which it may apply, and the state machine refuses an `until` more than this far beyond the index
 * it applies at, so a used nonce need be remembered at most this many entries. */
export const AUTH_WINDOW = 100_000

/** Bounds on the auth field (an Ed25519 signature is 64 bytes). */
export const AUTH_LIMITS = { maxNonceLength: 128, signatureBytes: 64, maxSignerLength: 128 } as const

/** Domain separation: these bytes are signed for nothing else. */
export const SIGNING_DOMAIN = 'blixard-command/1'

/** A command's signed authority (declared in protocols/command-schema.ts COMMAND_AUTH). */
export type CommandAuth = Infer<typeof COMMAND_AUTH>

export type Authority = 'admin' | 'node' | 'leader'

/** Which authority a command needs. UpdateNode is a node's own business (addrs, labels, capacity)
 * unless it sets `state` (drain, cordon, down), which only an admin may. */
export function authorityOf (cmd: Command): Authority {
  switch (cmd.type) {
    case 'RegisterNode': case 'ReportVmStatus': case 'AllocateIp': case 'RecoverAdmin': case 'ReportMigration': case 'ReportVolume': case 'ReportVmSnapshot': return 'node'
    case 'UpdateNode': return cmd.state === undefined ? 'node' : 'admin'
    case 'AssignVm': case 'RenewLeases': case 'MarkNodeDown': case 'ExpireMigration': case 'EvacuateVm': return 'leader'
    // the scheduler's decisions; SetQuota falls to the default: an admin's
    case 'PreemptVm': case 'RebalanceVm': return 'leader'
    default: return 'admin'
  }
}

/** The term a leader-bound command claims to be decided in (signed with it), or undefined. */
export function leaderTermOf (cmd: Command): number | undefined {
  switch (cmd.type) {
    case 'AssignVm': case 'RenewLeases': case 'MarkNodeDown': case 'ExpireMigration': case 'EvacuateVm': return cmd.term
    case 'PreemptVm': case 'RebalanceVm': return cmd.term
    default: return undefined
  }
}

/** `cmd` with its leader's term claim set, for a leader-bound command (what a leader signs). */
export function withLeaderTerm (cmd: Command, term: number): Command {
  switch (cmd.type) {
    case 'AssignVm': case 'RenewLeases': case 'MarkNodeDown': case 'ExpireMigration': case 'EvacuateVm': return { ...cmd, term }
    case 'PreemptVm': case 'RebalanceVm': return { ...cmd, term }
    default: return cmd
  }
}

/** The canonical bytes a signer signs. `cmd` must be a validated (normalized) command, so that
 * signer and verifier encode the same fields in the same order. A cluster id is not part of it:
 * clusters have none today; when they do, it goes in the second slot (now null). */
export function signingBytes (cmd: Command, signer: string, nonce: string, until: number): Uint8Array {
  signingEncodes++
  return encodeCbor([SIGNING_DOMAIN, null, signer, nonce, until, cmd])
}

let signingEncodes = 0
/** How many times this process has encoded signing bytes (tests). */
export function signingBytesEncoded (): number { return signingEncodes }

/** Peer ids seen recently → their public key; a bounded cache (parsing a peer id is the costly part
 * of a verify). Only a cache: the answer never depends on it. */
const KEY_CACHE_MAX = 1024
const keyCache = new Map<string, Uint8Array | null>()

/** The raw 32-byte Ed25519 public key a peer id embeds, or null if it is not an Ed25519 peer id. */
export function publicKeyOf (peerId: string): Uint8Array | null {
  const hit = keyCache.get(peerId)
  if (hit !== undefined) return hit
  let raw: Uint8Array | null = null
  try {
    const pid = peerIdFromString(peerId)
    // a copy: no view into a larger buffer
    if (pid.type === 'Ed25519' && pid.publicKey != null) raw = new Uint8Array(pid.publicKey.raw)
  } catch { raw = null }
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value as string)
  keyCache.set(peerId, raw)
  return raw
}

/** One Ed25519 check (deterministic: no randomness in verification). */
export function ed25519Verify (bytes: Uint8Array, key: Uint8Array, sig: Uint8Array): boolean {
  if (key.byteLength !== sodium.crypto_sign_PUBLICKEYBYTES || sig.byteLength !== sodium.crypto_sign_BYTES) return false
  return sodium.crypto_sign_verify_detached(sig, bytes, key)
}

/** Is `s` a libp2p peer id we can verify signatures of (Ed25519)? */
export function isEd25519PeerId (s: string): boolean {
  return publicKeyOf(s) !== null
}

/** Signatures this process has verified → the exact bytes they verified. The leader checks a
 * command before proposing and again when it applies; the second check is then a byte comparison
 * instead of a second Ed25519 verify (~75 µs). Only positive answers are kept, and a hit needs
 * the same signature over the same bytes (which embed the signer), so the answer never depends on
 * the cache. Bounded; the oldest entry goes first. */
const VERIFIED_CACHE_MAX = 4096
const verified = new Map<string, Uint8Array>()

function sigId (sig: Uint8Array): string {
  return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('base64')
}

function remember (id: string, bytes: Uint8Array): void {
  if (verified.size >= VERIFIED_CACHE_MAX) verified.delete(verified.keys().next().value as string)
  verified.set(id, bytes)
}

/** The (auth, command) objects this process has found good, so that a second check of the very
 * same pair — a leader's check before proposing, after the one its worker made (node/preverify.ts)
 * — neither encodes the signing bytes again nor looks them up. By object, never by content:
 * commands and their auth are not modified once validated, and a pair decoded anew (on apply)
 * is checked against the bytes cache above. Weak: the pair's objects take their entry with them. */
const verifiedPairs = new WeakMap<CommandAuth, Command>()

/** A command and the auth checked over it, as objects (verifiedPairs). */
export interface AuthPair { cmd: Command, auth: CommandAuth }

/** A plain, deterministic signature check (Ed25519 verification has no randomness). */
export function verifyAuth (cmd: Command, auth: CommandAuth): boolean {
  if (verifiedPairs.get(auth) === cmd) return true
  const key = publicKeyOf(auth.signer)
  if (key === null || auth.sig.byteLength !== AUTH_LIMITS.signatureBytes) return false
  const bytes = signingBytes(cmd, auth.signer, auth.nonce, auth.until)
  const id = sigId(auth.sig)
  const seen = verified.get(id)
  if (seen !== undefined && Buffer.compare(seen, bytes) === 0) { verifiedPairs.set(auth, cmd); return true }
  const ok = ed25519Verify(bytes, key, auth.sig)
  if (ok) { remember(id, bytes); verifiedPairs.set(auth, cmd) }
  return ok
}

/** A signature check to run elsewhere (node/preverify.ts runs them on a worker thread), so that
 * verifyAuth, where the command is decided, finds the answer cached. */
export interface SignatureJob {
  /** the signature, as the cache's key */
  id: string
  /** what was signed: signingBytes of the command */
  bytes: Uint8Array
  /** the signer's raw 32-byte Ed25519 public key */
  key: Uint8Array
  sig: Uint8Array
}

/** The check verifyAuth would make for `auth` over `cmd`, as a job; or its answer when no job is
 * needed: true when this process has verified it already, false when it cannot be valid (a signer
 * that is not an Ed25519 peer id, a signature of the wrong length). */
export function signatureJob (cmd: Command, auth: CommandAuth): SignatureJob | boolean {
  if (verifiedPairs.get(auth) === cmd) return true
  const key = publicKeyOf(auth.signer)
  if (auth.sig.byteLength !== AUTH_LIMITS.signatureBytes || key === null) return false
  const bytes = signingBytes(cmd, auth.signer, auth.nonce, auth.until)
  const id = sigId(auth.sig)
  const seen = verified.get(id)
  if (seen !== undefined && Buffer.compare(seen, bytes) === 0) return true
  // copies, so that a job never holds (or ships to a worker) a view into a larger buffer
  return { id, bytes: new Uint8Array(bytes), key, sig: new Uint8Array(auth.sig) }
}

/** The answer of a job run elsewhere. Only for answers of ed25519Verify over
 * exactly job.bytes with job.key (the check verifyAuth makes), so that the cache never changes an
 * answer: only positive ones are kept, keyed by signature and bytes. */
export function noteVerified (job: SignatureJob, ok: boolean, pair?: AuthPair): void {
  if (!ok) return
  remember(job.id, job.bytes)
  if (pair !== undefined) verifiedPairs.set(pair.auth, pair.cmd)
}

/** Anything that signs: a libp2p private key (node identity, CLI identity). */
export interface Signer {
  peerId: string
  sign: (data: Uint8Array) => Uint8Array | Promise<Uint8Array>
}

/** Sign a validated command. `nonce` must never be reused by this signer. */
export async function signCommand (signer: Signer, cmd: Command, nonce: string, until: number): Promise<CommandAuth> {
  const sig = await signer.sign(signingBytes(cmd, signer.peerId, nonce, until))
  return { signer: signer.peerId, nonce, until, sig: new Uint8Array(sig) }
}

/** What the state a check runs against must answer (the state machine's transaction, or its
 * committed state on the leader before proposing). */
export interface AuthState {
  isAdmin: (peerId: string) => boolean
  /** is this peer id a registered node? */
  isNode: (peerId: string) => boolean
  /** the node a VM is assigned to, or undefined if there is no such VM */
  vmNode: (vmId: string) => string | null | undefined
  /** has this signer's signature with this nonce and validity applied already? */
  nonceUsed: (signer: string, nonce: string, until: number) => boolean
  /** the latest term in which a leader-bound command applied, and its signer (the pin) */
  termLeader: () => TermLeader | undefined
  /** the parties of a VM's migration attempt that started at `started` and is still in flight, or undefined */
  migrationParties?: (vmId: string, started: number) => { source: string, target: string } | undefined
}

/** Who signed the scheduling decisions of a term: set by the first one that applies in it. */
export interface TermLeader { term: number, leader: string }

/** Why a leader-bound command signed by `who` may not apply in an entry of `entryTerm`, or null.
 *
 * The rule: the command claims a term (signed, inside the command), the claim must equal the term
 * of the log entry that carries it, and the first leader-bound command applied in a term pins
 * that term's signer; any other signer in the same term is refused. Why this is "signed by the
 * leader of the entry's term": in Raft only the leader of term T creates entries of term T, and
 * entries keep their term when later leaders replicate them; election safety gives one leader per
 * term. So a node that never led T cannot have its decision in an entry of T unless T's leader put
 * it there — which it does not (node/api.ts leaderRefusal), and if it ever did (a bug, a forwarded
 * command slipping through) the pin still allows only one signer per term. A decision signed in
 * an older term (a replay, a deposed leader's late proposal) is refused because its claim no
 * longer matches the entry it lands in. The check needs only the entry's term and one pinned row,
 * both deterministic; it does not need the Raft configuration (which the state machine does not
 * hold). It cannot stop a malicious voter that wins or forges a term of its own: Raft is not
 * Byzantine-tolerant (../shared/ARCHITECTURE.md). */
function leaderError (cmd: Command, who: string, entryTerm: number | undefined, st: AuthState): string | null {
  if (!st.isNode(who)) return `${cmd.type} must be signed by a node (the leader); ${who} is not a registered node`
  const claim = leaderTermOf(cmd)
  if (claim === undefined) return `${cmd.type} is a leader's decision and carries no leader term`
  if (entryTerm === undefined) return `${cmd.type} is applied without its entry's term, so its leader cannot be checked`
  if (claim !== entryTerm) return `${cmd.type} signed by ${who} for term ${claim} lands in an entry of term ${entryTerm}: a scheduling decision applies only in the term of the leader that made it`
  const pin = st.termLeader()
  if (pin !== undefined && pin.term > entryTerm) return `${cmd.type} of term ${entryTerm} comes after term ${pin.term}'s decisions`
  if (pin !== undefined && pin.term === entryTerm && pin.leader !== who) return `${cmd.type} of term ${entryTerm} must be signed by that term's leader ${pin.leader}, not ${who}`
  return null
}

/** Why a command may not apply at `index` in an entry of `entryTerm` (an Unauthorized message),
 * or null if it may. Pure and deterministic: every replica gives the same answer for the same
 * state and entry. `entryTerm` is undefined only where the caller has no entry (then a
 * leader-bound command is refused). */
export function authError (cmd: Command, auth: CommandAuth | undefined, index: number, st: AuthState, entryTerm?: number): string | null {
  const need = authorityOf(cmd)
  if (auth === undefined) return `${cmd.type} needs ${need === 'admin' ? "an admin's" : need === 'node' ? "the node's own" : "the leader's"} signature and carries none`
  if (index > auth.until) return `${cmd.type} signed by ${auth.signer} expired at index ${auth.until} (now ${index})`
  if (auth.until > index + AUTH_WINDOW) return `${cmd.type} signature is valid until index ${auth.until}, more than ${AUTH_WINDOW} beyond ${index}`
  if (!verifyAuth(cmd, auth)) return `${cmd.type} has a bad signature for ${auth.signer}`
  if (st.nonceUsed(auth.signer, auth.nonce, auth.until)) return `${cmd.type} replays nonce ${auth.nonce} of ${auth.signer}`
  const who = auth.signer
  switch (need) {
    case 'admin':
      return st.isAdmin(who) ? null : `${cmd.type} needs an admin's signature; ${who} is not an admin`
    case 'leader':
      return leaderError(cmd, who, entryTerm, st)
    case 'node':
      switch (cmd.type) {
        case 'RegisterNode': return cmd.node.id === who ? null : `node ${who} may not register node ${cmd.node.id}`
        case 'UpdateNode': return cmd.id === who ? null : `node ${who} may not update node ${cmd.id}`
        case 'RecoverAdmin': return st.isNode(who) ? null : `RecoverAdmin is a registered node's vote; ${who} is not a registered node`
        case 'ReportVmStatus':
          for (const r of cmd.reports) {
            if (r.node !== who) return `node ${who} may not report status for node ${r.node}`
          }
          return null
        case 'ReportMigration': {
          // a node reports only as itself, and only on a migration it takes part in
          if (cmd.node !== who) return `node ${who} may not report on migration for node ${cmd.node}`
          const m = st.migrationParties?.(cmd.vm, cmd.started)
          if (m === undefined) return null // no such attempt in flight: apply answers it as stale
          return m.source === who || m.target === who ? null : `node ${who} takes no part in the migration of VM ${cmd.vm}`
        }
        // only as itself; whether it is the volume reconciler is apply's question (storage/apply-volumes.ts)
        case 'ReportVolume': return cmd.node === who ? null : `node ${who} may not report on volumes for node ${cmd.node}`
        // only as itself; whether the snapshot is its own is apply's question (storage/apply-snapshots.ts)
        case 'ReportVmSnapshot': return cmd.node === who ? null : `node ${who} may not report on snapshots for node ${cmd.node}`
        case 'AllocateIp': {
          const on = st.vmNode(cmd.vm)
          return on === who ? null : `node ${who} may not allocate an address for VM ${cmd.vm}, which is not assigned to it`
        }
        default: return `${cmd.type} is not a node command`
      }
  }
}

/** Ed25519 signing with a 64-byte libsodium secret key (seed then public key). */
function sodiumSign (sk: Buffer): (data: Uint8Array) => Uint8Array {
  return (data) => { const sig = new Uint8Array(sodium.crypto_sign_BYTES); sodium.crypto_sign_detached(sig, data, sk); return sig }
}

/** What keySigner needs of a libp2p private key. */
export interface SigningKey {
  type: string
  /** for an Ed25519 key: the 64-byte secret key, seed then public key (libsodium's layout) */
  raw: Uint8Array
  sign: (data: Uint8Array) => Uint8Array | Promise<Uint8Array>
}

/** A libp2p private key as a Signer. An Ed25519 key signs with libsodium (~15 µs a signature here,
 * against ~70 µs through the key's own sign, which builds an OpenSSL key object from JWK every
 * call); the signatures are the same (Ed25519 signing is deterministic). Any other key signs
 * through its own sign. */
export function keySigner (peerId: string, key: SigningKey): Signer {
  if (key.type === 'Ed25519' && key.raw.byteLength === sodium.crypto_sign_SECRETKEYBYTES) {
    return { peerId, sign: sodiumSign(Buffer.from(key.raw)) } // a copy: the key's bytes stay the key's
  }
  return { peerId, sign: (data) => key.sign(data) }
}

/** A synchronous signer from a 32-byte Ed25519 seed (tests, the simulator, benchmarks): the same
 * seed gives the same peer id and the same signatures (Ed25519 signing is deterministic). */
export interface SyncSigner { peerId: string, sign: (data: Uint8Array) => Uint8Array }

export function seededSigner (seed: Uint8Array): SyncSigner {
  if (seed.byteLength !== 32) throw new RangeError('an Ed25519 seed is 32 bytes')
  const pk = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
  const sk = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES)
  sodium.crypto_sign_seed_keypair(pk, sk, Buffer.from(seed))
  const peerId = peerIdFromPublicKey(publicKeyFromRaw(pk)).toString()
  return { peerId, sign: sodiumSign(sk) }
}

/** signCommand for a synchronous signer. */
export function signCommandSync (signer: SyncSigner, cmd: Command, nonce: string, until: number): CommandAuth {
  return { signer: signer.peerId, nonce, until, sig: signer.sign(signingBytes(cmd, signer.peerId, nonce, until)) }
}
