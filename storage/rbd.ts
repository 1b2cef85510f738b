// Ceph RBD volumes and fencing through the `rbd` and `ceph` CLIs (JSON output). Every call
// is bounded: the client's own monitor connect timeout plus a kill after timeoutMs, because
// a Ceph client with no monitor otherwise waits forever. Failures are RbdError values of a
// named kind (NotFound, AlreadyExists, InUse, Unavailable, InvalidSpec, Unauthorized, Internal).
import { RbdError } from './ceph-errors.ts'
import type { Readable } from 'node:stream'
import { KILL_GRACE_MS, parseFirstJson, runCli, spawnCliStream } from './ceph-exec.ts'
import {
  DEFAULT_FEATURES, checkBlocklistSeconds, checkClientAddr, checkFeatures, checkName, sizeMiB
} from './rbd-spec.ts'
import type { RbdFeature } from './rbd-spec.ts'

export { RbdError, isRbdError } from './ceph-errors.ts'
export type { RbdErrorKind } from './ceph-errors.ts'
export type { RbdFeature } from './rbd-spec.ts'

/** Default bound on one call, monitor connection included. */
export const DEFAULT_RBD_TIMEOUT_MS = 30_000
/** Default bound for calls that move data (flatten, import, export). */
export const DEFAULT_RBD_DATA_TIMEOUT_MS = 10 * 60_000

export interface RbdClientOptions {
  /** path of the ceph.conf naming the monitors */
  conf: string
  /** keyring file (default: what the conf says) */
  keyring?: string
  /** cephx user without the `client.` prefix (default: admin) */
  id?: string
  /** bound on one call, monitor connection included (default DEFAULT_RBD_TIMEOUT_MS) */
  timeoutMs?: number
  /** CLI paths (default `rbd` and `ceph` on PATH) */
  rbdBin?: string
  cephBin?: string
}

export interface RbdParent {
  pool: string
  image: string
  snapshot: string
  /** bytes of the child still read from the parent (0 once flattened) */
  overlapBytes: number
}

export interface RbdImageInfo {
  pool: string
  name: string
  id: string
  sizeBytes: number
  objectSizeBytes: number
  features: string[]
  snapshotCount: number
  parent: RbdParent | null
  createdAt: string
}

export interface RbdImageEntry {
  name: string
  sizeBytes: number
}

export interface RbdSnapshot {
  id: number
  name: string
  sizeBytes: number
  protected: boolean
  createdAt: string
}

export interface RbdImageRef {
  pool: string
  image: string
}

export interface RbdSnapshotRef extends RbdImageRef {
  snapshot: string
}

/** A lock on an image; librbd's exclusive lock has an id starting with `auto `. */
export interface RbdLock {
  id: string
  /** `client.<global id>` */
  locker: string
  /** the holder's client address, what `blocklistAdd` takes */
  address: string
  exclusive: boolean
}

/** A client with the image open (a watch on its header). */
export interface RbdWatcher {
  address: string
  client: number
  cookie: number
}

export interface RbdLockStatus {
  locks: RbdLock[]
  watchers: RbdWatcher[]
}

/** The exclusive-lock holder, and whether it still has the image open. */
export interface RbdLockHolder extends RbdLock {
  watching: boolean
}

export interface BlocklistEntry {
  addr: string
  /** when Ceph drops the entry (ISO-like, UTC) */
  until: string
}

export interface CephHealth {
  status: string
  checks: string[]
}

export class RbdClient {
  readonly conf: string
  readonly timeoutMs: number
  readonly #auth: string[]
  readonly #rbd: string
  readonly #ceph: string

  constructor (opts: RbdClientOptions) {
    if (typeof opts.conf !== 'string' || opts.conf === '') throw new RbdError('InvalidSpec', 'RbdClient needs the path of a ceph.conf')
    const t = opts.timeoutMs ?? DEFAULT_RBD_TIMEOUT_MS
    if (!Number.isFinite(t) || t < 1000) throw new RbdError('InvalidSpec', `timeoutMs must be >= 1000, got ${t}`)
    this.conf = opts.conf
    this.timeoutMs = t
    this.#auth = ['--conf', opts.conf]
    if (opts.id != null) {
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(opts.id)) throw new RbdError('InvalidSpec', `invalid cephx id ${JSON.stringify(opts.id)}`)
      this.#auth.push('--id', opts.id)
    }
    if (opts.keyring != null) this.#auth.push('--keyring', opts.keyring)
    this.#rbd = opts.rbdBin ?? 'rbd'
    this.#ceph = opts.cephBin ?? 'ceph'
  }

  // ---- images

  /** Create an image (features layering + exclusive-lock unless told otherwise). */
  async createImage (pool: string, name: string, sizeGiB: number, opts: { features?: readonly RbdFeature[] } = {}): Promise<RbdImageInfo> {
    const mib = sizeMiB(sizeGiB)
    const features = checkFeatures(opts.features ?? DEFAULT_FEATURES)
    await this.#rbdRun(['create', '--no-progress', '--size', `${mib}M`, ...featureArgs(features), imageSpec(pool, name)])
    return await this.info(pool, name)
  }

  async info (pool: string, name: string): Promise<RbdImageInfo> {
    const raw = await this.#rbdJson(['info', imageSpec(pool, name)])
    return toImageInfo(pool, raw)
  }

  async exists (pool: string, name: string): Promise<boolean> {
    try {
      await this.info(pool, name)
      return true
    } catch (e) {
      if (e instanceof RbdError && e.kind === 'NotFound') return false
      throw e
    }
  }

  /** Images of a pool (snapshots left out), by name. */
  async list (pool: string): Promise<RbdImageEntry[]> {
    const raw = await this.#rbdJson(['ls', '--long', checkName('pool', pool)])
    return arr(raw, 'rbd ls').map((e) => obj(e, 'rbd ls entry'))
      .filter((e) => e.snapshot == null)
      .map((e) => ({ name: str(e.image, 'image'), sizeBytes: num(e.size, 'size') }))
      .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  /** Grow an image. Shrinking destroys data past the new end: refused (InvalidSpec, by rbd
   * itself) unless allowShrink. */
  async resize (pool: string, name: string, sizeGiB: number, opts: { allowShrink?: boolean } = {}): Promise<RbdImageInfo> {
    const mib = sizeMiB(sizeGiB)
    const args = ['resize', '--no-progress', '--size', `${mib}M`]
    if (opts.allowShrink === true) args.push('--allow-shrink')
    await this.#rbdRun([...args, imageSpec(pool, name)])
    return await this.info(pool, name)
  }

  /** Remove an image. Refused (InUse) while it has snapshots (and so possibly clones) or
   * while a client has it open (rbd would find that out itself, but only after seconds spent
   * asking the lock holder). */
  async remove (pool: string, name: string): Promise<void> {
    const spec = imageSpec(pool, name)
    const [info, status] = await Promise.all([this.info(pool, name), this.#rbdJson(['status', spec])])
    if (info.snapshotCount > 0) {
      const snaps = await this.snapshotList(pool, name)
      const parts: string[] = []
      for (const s of snaps) {
        const kids = s.protected ? await this.children(pool, name, s.name) : []
        parts.push(kids.length > 0 ? `${s.name} (clones: ${kids.map((k) => `${k.pool}/${k.image}`).join(', ')})` : s.name)
      }
      throw new RbdError('InUse', `${pool}/${name} has snapshots: ${parts.join(', ')}; remove them (and flatten or remove their clones) first`)
    }
    const watchers = toWatchers(status)
    if (watchers.length > 0) {
      throw new RbdError('InUse', `${pool}/${name} is open by ${watchers.map((w) => w.address).join(', ')}`)
    }
    await this.#rbdRun(['rm', '--no-progress', spec])
  }

  /** An image's metadata value under `key` (rbd image-meta), or null when it has none. */
  async metaGet (pool: string, name: string, key: string): Promise<string | null> {
    try {
      const { stdout } = await this.#rbdRun(['image-meta', 'get', imageSpec(pool, name), checkMetaKey(key)])
      return stdout.replace(/\n$/, '')
    } catch (e) {
      if (e instanceof RbdError && e.kind === 'NotFound' && await this.exists(pool, name)) return null
      throw e
    }
  }

  async metaSet (pool: string, name: string, key: string, value: string): Promise<void> {
    if (value === '' || value.startsWith('-') || value.length > 1024) throw new RbdError('InvalidSpec', `invalid image metadata value ${JSON.stringify(value.slice(0, 64))}`)
    await this.#rbdRun(['image-meta', 'set', imageSpec(pool, name), checkMetaKey(key), value])
  }

  // ---- snapshots and clones

  async snapshotCreate (pool: string, name: string, snapshot: string): Promise<RbdSnapshot> {
    await this.#rbdRun(['snap', 'create', '--no-progress', snapSpec(pool, name, snapshot)])
    const s = (await this.snapshotList(pool, name)).find((x) => x.name === snapshot)
    if (s == null) throw new RbdError('Internal', `snapshot ${pool}/${name}@${snapshot} missing right after its creation`)
    return s
  }

  async snapshotList (pool: string, name: string): Promise<RbdSnapshot[]> {
    const raw = await this.#rbdJson(['snap', 'ls', imageSpec(pool, name)])
    return arr(raw, 'rbd snap ls').map((e) => {
      const o = obj(e, 'snapshot')
      return {
        id: num(o.id, 'id'),
        name: str(o.name, 'name'),
        sizeBytes: num(o.size, 'size'),
        protected: o.protected === true || o.protected === 'true',
        createdAt: typeof o.timestamp === 'string' ? o.timestamp : ''
      }
    })
  }

  /** Protect a snapshot so it can be cloned; protecting a protected snapshot is a no-op. */
  async snapshotProtect (pool: string, name: string, snapshot: string): Promise<void> {
    const s = (await this.snapshotList(pool, name)).find((x) => x.name === snapshot)
    if (s == null) throw new RbdError('NotFound', `no snapshot ${pool}/${name}@${snapshot}`)
    if (s.protected) return
    await this.#rbdRun(['snap', 'protect', snapSpec(pool, name, snapshot)])
  }

  /** Unprotect; refused (InUse) while clones of it exist. */
  async snapshotUnprotect (pool: string, name: string, snapshot: string): Promise<void> {
    const s = (await this.snapshotList(pool, name)).find((x) => x.name === snapshot)
    if (s == null) throw new RbdError('NotFound', `no snapshot ${pool}/${name}@${snapshot}`)
    if (!s.protected) return
    await this.#rbdRun(['snap', 'unprotect', snapSpec(pool, name, snapshot)])
  }

  /** Remove a snapshot; refused (InUse) while it is protected. */
  async snapshotRemove (pool: string, name: string, snapshot: string): Promise<void> {
    await this.#rbdRun(['snap', 'rm', '--no-progress', snapSpec(pool, name, snapshot)])
  }

  /** Roll an image back to one of its snapshots. Nobody may have the image open: a holder that
   * died is fenced first (fence), or rbd waits for its lock. */
  async snapshotRollback (pool: string, name: string, snapshot: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#rbdRun(['snap', 'rollback', '--no-progress', snapSpec(pool, name, snapshot)], opts.timeoutMs ?? DEFAULT_RBD_DATA_TIMEOUT_MS)
  }

  /** Clones made from a snapshot. */
  async children (pool: string, name: string, snapshot: string): Promise<RbdImageRef[]> {
    const raw = await this.#rbdJson(['children', snapSpec(pool, name, snapshot)])
    return arr(raw, 'rbd children').map((e) => {
      const o = obj(e, 'child')
      return { pool: str(o.pool, 'pool'), image: str(o.image, 'image') }
    })
  }

  /** Clone a protected snapshot (a golden image) into a new copy-on-write image. */
  async clone (parent: RbdSnapshotRef, child: RbdImageRef, opts: { features?: readonly RbdFeature[] } = {}): Promise<RbdImageInfo> {
    const features = checkFeatures(opts.features ?? DEFAULT_FEATURES)
    if (!features.includes('layering')) throw new RbdError('InvalidSpec', 'a clone needs the layering feature')
    await this.#rbdRun(['clone', ...featureArgs(features),
      snapSpec(parent.pool, parent.image, parent.snapshot), imageSpec(child.pool, child.image)])
    return await this.info(child.pool, child.image)
  }

  /** Copy the parent's data into a clone so it no longer depends on the parent. */
  async flatten (pool: string, name: string, opts: { timeoutMs?: number } = {}): Promise<RbdImageInfo> {
    await this.#rbdRun(['flatten', '--no-progress', imageSpec(pool, name)], opts.timeoutMs ?? DEFAULT_RBD_DATA_TIMEOUT_MS)
    return await this.info(pool, name)
  }

  // ---- data in and out (golden images; checks in tests)

  /** Create an image from a local file (written through librbd). */
  async importFile (path: string, pool: string, name: string, opts: { features?: readonly RbdFeature[], timeoutMs?: number } = {}): Promise<RbdImageInfo> {
    const features = checkFeatures(opts.features ?? DEFAULT_FEATURES)
    await this.#rbdRun(['import', '--no-progress', ...featureArgs(features), '--', path, imageSpec(pool, name)],
      opts.timeoutMs ?? DEFAULT_RBD_DATA_TIMEOUT_MS)
    return await this.info(pool, name)
  }

  /** Write an image's (or a snapshot's) content to a local file. */
  async exportFile (pool: string, name: string, path: string, opts: { snapshot?: string, timeoutMs?: number } = {}): Promise<void> {
    const spec = opts.snapshot != null ? snapSpec(pool, name, opts.snapshot) : imageSpec(pool, name)
    await this.#rbdRun(['export', '--no-progress', '--', spec, path], opts.timeoutMs ?? DEFAULT_RBD_DATA_TIMEOUT_MS)
  }

  /** An image's content as a stream (`rbd export SPEC -`): `done` settles when rbd ended, with a
   * named error when it failed. */
  exportStream (pool: string, name: string, opts: { timeoutMs?: number } = {}): { stream: Readable, done: Promise<void> } {
    const t = opts.timeoutMs ?? DEFAULT_RBD_DATA_TIMEOUT_MS
    const s = this.#connectSeconds(t)
    const { stdout, done } = spawnCliStream(this.#rbd, [...this.#auth, '--client-mount-timeout', s, '--rados-mon-op-timeout', s,
      'export', '--no-progress', imageSpec(pool, name), '-'], t + KILL_GRACE_MS)
    return { stream: stdout, done }
  }

  // ---- locks and fencing

  async lockStatus (pool: string, name: string): Promise<RbdLockStatus> {
    const spec = imageSpec(pool, name)
    const [locksRaw, statusRaw] = await Promise.all([this.#rbdJson(['lock', 'ls', spec]), this.#rbdJson(['status', spec])])
    const locks = arr(locksRaw, 'rbd lock ls').map((e) => {
      const o = obj(e, 'lock')
      const id = str(o.id, 'id')
      return { id, locker: str(o.locker, 'locker'), address: str(o.address, 'address'), exclusive: id.startsWith('auto ') }
    })
    return { locks, watchers: toWatchers(statusRaw) }
  }

  /** Who holds the exclusive lock now (null if nobody), and whether that client still has
   * the image open: a holder that stopped watching is dead or cut off, not gone for sure. */
  async lockHolder (pool: string, name: string): Promise<RbdLockHolder | null> {
    const { locks, watchers } = await this.lockStatus(pool, name)
    const lock = locks.find((l) => l.exclusive)
    if (lock == null) return null
    return { ...lock, watching: watchers.some((w) => w.address === lock.address) }
  }

  /** Break a lock (the holder should be blocklisted first, or it may take it back). */
  async lockRemove (pool: string, name: string, lock: { id: string, locker: string }): Promise<void> {
    if (!/^client\.\d+$/.test(lock.locker)) throw new RbdError('InvalidSpec', `invalid locker ${JSON.stringify(lock.locker)}`)
    await this.#rbdRun(['lock', 'rm', imageSpec(pool, name), lock.id, lock.locker])
  }

  /** Fence an image before another host opens it: blocklist the exclusive-lock holder and
   * every client that has the image open, then break the stale lock. Returns the addresses
   * blocklisted (empty if nobody held or watched the image). */
  async fence (pool: string, name: string, seconds?: number): Promise<string[]> {
    const { locks, watchers } = await this.lockStatus(pool, name)
    const addrs = [...new Set([...locks.filter((l) => l.exclusive).map((l) => l.address), ...watchers.map((w) => w.address)])]
    for (const a of addrs) await this.blocklistAdd(a, seconds)
    for (const l of locks.filter((x) => x.exclusive)) {
      try {
        await this.lockRemove(pool, name, l)
      } catch (e) {
        // someone (librbd of the next opener) broke it first: that is the outcome we want
        if (!(e instanceof RbdError && e.kind === 'NotFound')) throw e
      }
    }
    return addrs
  }

  /** Blocklist a client address (`ceph osd blocklist add`): its OSD operations fail from
   * now on. Without seconds Ceph keeps the entry for its default of one hour. */
  async blocklistAdd (clientAddr: string, seconds?: number): Promise<void> {
    const args = ['osd', 'blocklist', 'add', checkClientAddr(clientAddr)]
    if (seconds != null) args.push(String(checkBlocklistSeconds(seconds)))
    await this.#cephRun(args)
  }

  /** Lift a blocklist entry; lifting an absent one is a no-op. */
  async blocklistRm (clientAddr: string): Promise<void> {
    await this.#cephRun(['osd', 'blocklist', 'rm', checkClientAddr(clientAddr)])
  }

  async blocklistLs (): Promise<BlocklistEntry[]> {
    const raw = parseFirstJson((await this.#cephRun(['osd', 'blocklist', 'ls', '--format', 'json'])).stdout, 'ceph osd blocklist ls')
    return arr(raw, 'blocklist').map((e) => {
      const o = obj(e, 'blocklist entry')
      return { addr: str(o.addr, 'addr'), until: str(o.until, 'until') }
    })
  }

  // ---- cluster

  async health (): Promise<CephHealth> {
    const raw = obj(parseFirstJson((await this.#cephRun(['health', '--format', 'json'])).stdout, 'ceph health'), 'ceph health')
    const checks = raw.checks != null && typeof raw.checks === 'object' ? Object.keys(raw.checks) : []
    return { status: str(raw.status, 'status'), checks }
  }

  // ---- running the CLIs

  #connectSeconds (timeoutMs: number): string {
    return String(Math.max(1, Math.floor(Math.min(timeoutMs, this.timeoutMs) / 1000)))
  }

  async #rbdRun (args: string[], timeoutMs = this.timeoutMs): Promise<{ stdout: string, stderr: string }> {
    const s = this.#connectSeconds(timeoutMs)
    return await runCli(this.#rbd, [...this.#auth, '--client-mount-timeout', s, '--rados-mon-op-timeout', s, ...args],
      timeoutMs + KILL_GRACE_MS)
  }

  async #rbdJson (args: string[]): Promise<unknown> {
    const { stdout } = await this.#rbdRun([...args, '--format', 'json'])
    return parseFirstJson(stdout, `rbd ${args.join(' ')}`)
  }

  async #cephRun (args: string[]): Promise<{ stdout: string, stderr: string }> {
    return await runCli(this.#ceph, [...this.#auth, '--connect-timeout', this.#connectSeconds(this.timeoutMs), ...args],
      this.timeoutMs + KILL_GRACE_MS)
  }
}

function checkMetaKey (key: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(key)) throw new RbdError('InvalidSpec', `invalid image metadata key ${JSON.stringify(key.slice(0, 64))}`)
  return key
}

function imageSpec (pool: string, name: string): string {
  return `${checkName('pool', pool)}/${checkName('image', name)}`
}

function snapSpec (pool: string, name: string, snapshot: string): string {
  return `${imageSpec(pool, name)}@${checkName('snapshot', snapshot)}`
}

function featureArgs (features: readonly RbdFeature[]): string[] {
  return features.length > 0 ? ['--image-feature', features.join(',')] : []
}

function toWatchers (statusRaw: unknown): RbdWatcher[] {
  return arr(obj(statusRaw, 'rbd status').watchers ?? [], 'watchers').map((e) => {
    const o = obj(e, 'watcher')
    return { address: str(o.address, 'address'), client: num(o.client, 'client'), cookie: num(o.cookie, 'cookie') }
  })
}

function toImageInfo (pool: string, raw: unknown): RbdImageInfo {
  const o = obj(raw, 'rbd info')
  let parent: RbdParent | null = null
  if (o.parent != null) {
    const p = obj(o.parent, 'parent')
    parent = { pool: str(p.pool, 'parent.pool'), image: str(p.image, 'parent.image'), snapshot: str(p.snapshot, 'parent.snapshot'), overlapBytes: num(p.overlap, 'parent.overlap') }
  }
  return {
    pool,
    name: str(o.name, 'name'),
    id: str(o.id, 'id'),
    sizeBytes: num(o.size, 'size'),
    objectSizeBytes: num(o.object_size, 'object_size'),
    features: Array.isArray(o.features) ? o.features.filter((f): f is string => typeof f === 'string') : [],
    snapshotCount: typeof o.snapshot_count === 'number' ? o.snapshot_count : 0,
    parent,
    createdAt: typeof o.create_timestamp === 'string' ? o.create_timestamp : ''
  }
}

// Narrowing the CLIs' JSON: a shape we do not expect is Internal, with what was wrong.
function obj (v: unknown, what: string): Record<string, unknown> {
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new RbdError('Internal', `unexpected ${what} JSON: ${JSON.stringify(v)?.slice(0, 200)}`)
  return v as Record<string, unknown>
}
function arr (v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new RbdError('Internal', `unexpected ${what} JSON: ${JSON.stringify(v)?.slice(0, 200)}`)
  return v
}
function str (v: unknown, what: string): string {
  if (typeof v !== 'string') throw new RbdError('Internal', `unexpected ${what}: ${JSON.stringify(v)}`)
  return v
}
function num (v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RbdError('Internal', `unexpected ${what}: ${JSON.stringify(v)}`)
  return v
}
