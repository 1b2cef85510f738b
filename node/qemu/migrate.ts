// Live migration through QMP: the target QEMU waits with `-incoming` on a local socket (a unix
// socket, or TCP bound to 127.0.0.1 only: the LAN never sees a plaintext migration port; the
// bytes between hosts travel over node/migration/stream.ts), the source is told to `migrate`
// to a local socket, and `query-migrate` reports progress until it completes, fails or is cancelled.
import type { QmpClient } from './qmp.ts'
import { QemuError } from './errors.ts'
import type { MigrationFigures } from '../../protocols/migration-phases.ts'

/** QEMU's MigrationStatus values (qapi/migration.json, 7.2). */
export type MigrationStatus =
  | 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'postcopy-paused'
  | 'postcopy-recover' | 'completed' | 'failed' | 'colo' | 'pre-switchover' | 'device' | 'wait-unplug'

/** QEMU's query-migrate: the figures a migration record carries (protocols/migration-phases.ts),
 * plus what only the host needs. */
export interface MigrationProgress extends MigrationFigures {
  status: MigrationStatus
  setupTimeMs: number | null
  mbps: number | null
  /** bytes the multifd channels carried (0 on one stream) */
  multifdBytes: number
  /** QEMU's reason, when failed */
  error: string | null
}

/** How often waitForMigration asks query-migrate: progress shown to a user needs no more. */
export const MIGRATION_POLL_MS = 100
/** A migration that has not ended by then is cancelled by waitForMigration's caller. */
export const MIGRATION_TIMEOUT_MS = 10 * 60_000
/** QEMU's own default downtime limit (ms); set explicitly so it does not drift with QEMU versions. */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300
const MAX_SOCKET_PATH = 107
const TERMINAL = new Set<MigrationStatus>(['completed', 'failed', 'cancelled'])
const STATUSES = new Set<string>(['none', 'setup', 'cancelling', 'cancelled', 'active', 'postcopy-active', 'postcopy-paused',
  'postcopy-recover', 'completed', 'failed', 'colo', 'pre-switchover', 'device', 'wait-unplug'])

/**
 * A migration URI QEMU may listen on or connect to: `unix:PATH`, or `tcp:127.0.0.1:PORT`.
 * Anything else (another address, exec:, fd:) is refused: it would open the guest's memory to
 * whoever reaches that address, or run a command.
 */
export function localMigrationUri (uri: string): string {
  if (uri.startsWith('unix:')) {
    const path = uri.slice('unix:'.length)
    if (!path.startsWith('/')) throw new QemuError('InvalidSpec', `migration socket must be an absolute path: ${uri}`)
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new QemuError('InvalidSpec', `migration socket path longer than ${MAX_SOCKET_PATH} bytes: ${path}`)
    if (path.includes(',')) throw new QemuError('InvalidSpec', `migration socket path must not contain ',': ${path}`)
    return uri
  }
  const m = /^tcp:127\.0\.0\.1:(\d{1,5})$/.exec(uri)
  if (m != null && Number(m[1]) > 0 && Number(m[1]) < 65536) return uri
  throw new QemuError('InvalidSpec', `migration URI must be unix:/ABS/PATH or tcp:127.0.0.1:PORT (never a LAN address): ${uri}`)
}

/** The arguments that make a QEMU wait for an incoming migration (append to buildQemuArgv's);
 * 'defer': until a migrate-incoming over QMP names where. */
export function incomingArgs (uri: string): string[] {
  return ['-incoming', uri === 'defer' ? uri : localMigrationUri(uri)]
}

function num (v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/** query-migrate's reply as MigrationProgress; fields QEMU leaves out are 0 or null. */
export function parseQueryMigrate (r: unknown): MigrationProgress {
  if (r == null || typeof r !== 'object') throw new QemuError('QmpError', `query-migrate: not an object: ${JSON.stringify(r)}`)
  const o = r as Record<string, unknown>
  const status = typeof o.status === 'string' && STATUSES.has(o.status) ? o.status as MigrationStatus : 'none'
  const ram = (o.ram != null && typeof o.ram === 'object' ? o.ram : {}) as Record<string, unknown>
  return {
    status,
    transferredBytes: num(ram.transferred) ?? 0,
    remainingBytes: num(ram.remaining) ?? 0,
    totalBytes: num(ram.total) ?? 0,
    dirtyPagesRate: num(ram['dirty-pages-rate']) ?? 0,
    expectedDowntimeMs: num(o['expected-downtime']),
    downtimeMs: num(o.downtime),
    totalTimeMs: num(o['total-time']),
    setupTimeMs: num(o['setup-time']),
    mbps: num(ram.mbps),
    multifdBytes: num(ram['multifd-bytes']) ?? 0,
    error: typeof o['error-desc'] === 'string' ? o['error-desc'] : null
  }
}

export async function queryMigrate (qmp: QmpClient): Promise<MigrationProgress> {
  return parseQueryMigrate(await qmp.execute('query-migrate'))
}

export interface StartMigrationOptions {
  /** the longest pause QEMU may plan for at switchover (ms) */
  downtimeLimitMs?: number
  /** bytes per second; QEMU's default (128 MiB/s in 7.2) when absent */
  maxBandwidth?: number
}

/** Sets the limits, then tells the source QEMU to migrate to a local socket. Returns at once. */
export async function startMigration (qmp: QmpClient, uri: string, opts: StartMigrationOptions = {}): Promise<void> {
  const target = localMigrationUri(uri)
  await setMigrationParameters(qmp, opts)
  await qmp.execute('migrate', { uri: target })
}

/** The part of startMigration that can run ahead, while the target gets ready: the limits, and
 * MIGRATION events (they stay set on this QEMU for the next migration too, which sets its own). */
export async function setMigrationParameters (qmp: QmpClient, opts: StartMigrationOptions = {}): Promise<void> {
  // no TLS unless this migration sets it (node/migration/tls.ts): a QEMU that arrived here by a TLS
  // migration keeps its server credentials in tls-creds, and a plain migrate out of it would fail
  const params: Record<string, unknown> = { 'downtime-limit': opts.downtimeLimitMs ?? DEFAULT_DOWNTIME_LIMIT_MS, 'tls-creds': '' }
  if (opts.maxBandwidth != null) {
    if (!Number.isInteger(opts.maxBandwidth) || opts.maxBandwidth <= 0) throw new QemuError('InvalidSpec', `maxBandwidth must be a positive integer: ${opts.maxBandwidth}`)
    params['max-bandwidth'] = opts.maxBandwidth
  }
  await qmp.execute('migrate-set-parameters', params)
  // MIGRATION events on every status change: waitForMigration sees the completion at once
  // instead of at its next poll (up to MIGRATION_POLL_MS later)
  // and multifd off: a QEMU that arrived by a multifd migration keeps it on, and a migration into a
  // single socket would fail (node/migration/tls.ts turns it on again when the target offers it)
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, { capability: 'multifd', state: false }] })
}

/** Tells the source QEMU to migrate to a local socket, its parameters set already (setMigrationParameters). */
export async function migrateTo (qmp: QmpClient, uri: string): Promise<void> {
  await qmp.execute('migrate', { uri: localMigrationUri(uri) })
}

/** announce-self's timing (QEMU's own defaults for the announcement after an incoming migration:
 * the first packets at 50 ms, 5 rounds, 100 ms more between each, at most 550 ms). */
export const ANNOUNCE_PARAMS = { initial: 50, max: 550, rounds: 5, step: 100 } as const

/**
 * Has the guest's NICs announce their MAC addresses on the host it now runs on (QEMU's
 * `announce-self`: gratuitous RARP from each NIC, or the guest's own ARP when its virtio-net
 * driver negotiated GUEST_ANNOUNCE), so bridges and VXLAN forwarding tables learn the new port at
 * once instead of when the guest next sends. Returns QEMU's answer ({} on success).
 */
export async function announceSelf (qmp: QmpClient): Promise<unknown> {
  return await qmp.execute('announce-self', { ...ANNOUNCE_PARAMS })
}

export interface WaitMigrationOptions {
  pollMs?: number
  timeoutMs?: number
  onProgress?: (p: MigrationProgress) => void
  signal?: AbortSignal
}

/**
 * Polls query-migrate until completed (returns the final figures), failed or cancelled
 * (throws, naming QEMU's reason). On timeout or abort it throws; cancelling is the caller's call.
 */
export async function waitForMigration (qmp: QmpClient, opts: WaitMigrationOptions = {}): Promise<MigrationProgress> {
  const deadline = Date.now() + (opts.timeoutMs ?? MIGRATION_TIMEOUT_MS)
  for (;;) {
    const p = await queryMigrate(qmp)
    opts.onProgress?.(p)
    if (p.status === 'completed') return await finalFigures(qmp, p)
    if (TERMINAL.has(p.status)) throw new QemuError('QmpError', `migration ${p.status}${p.error != null ? `: ${p.error}` : ''}`)
    if (p.status === 'none') throw new QemuError('QmpError', 'no migration is running on this QEMU')
    if (opts.signal?.aborted === true) throw new QemuError('Timeout', 'waiting for the migration: aborted')
    if (Date.now() > deadline) throw new QemuError('Timeout', `migration not finished within ${opts.timeoutMs ?? MIGRATION_TIMEOUT_MS} ms (status ${p.status}, ${p.remainingBytes} bytes remaining)`)
    // the next poll, or earlier on a MIGRATION event (status change: startMigration enables them)
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, opts.pollMs ?? MIGRATION_POLL_MS)
      const off = qmp.onEvent((e) => { if (e.event === 'MIGRATION') done() })
      function done (): void { clearTimeout(t); off(); resolve() }
    })
  }
}

/** A completed migration's figures come a moment after its status: QEMU 7.2 sets 'completed'
 * before it computes total-time and downtime, and a query woken by the MIGRATION event can land in
 * between (it read 0 ms for both). Asked again, briefly, until total-time is there. */
const FINAL_FIGURES_TRIES = 20
const FINAL_FIGURES_POLL_MS = 5

async function finalFigures (qmp: QmpClient, p: MigrationProgress): Promise<MigrationProgress> {
  let cur = p
  for (let i = 0; i < FINAL_FIGURES_TRIES && (cur.totalTimeMs == null || cur.totalTimeMs === 0); i++) {
    await new Promise((resolve) => setTimeout(resolve, FINAL_FIGURES_POLL_MS))
    cur = await queryMigrate(qmp)
  }
  return cur
}

/** Cancels a running migration; the source keeps running the guest. */
export async function cancelMigration (qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate_cancel')
}

/** The run state (query-status): 'running', 'inmigrate', 'postmigrate', 'paused', … */
export async function runState (qmp: QmpClient): Promise<string> {
  const r = await qmp.execute('query-status') as { status?: unknown }
  if (typeof r?.status !== 'string') throw new QemuError('QmpError', `query-status: no status in ${JSON.stringify(r)}`)
  return r.status
}
