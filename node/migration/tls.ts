// The migration data path over QEMU's own TLS, keyed per migration. The two
// daemons agree on the move over their libp2p stream (pnet + Noise: both node identities proven,
// encrypted); the target hands the source a fresh random pre-shared key over that stream, with the
// address and port its QEMU listens on for this one migration and the number of multifd channels;
// the source's QEMU then connects straight to the target's, TLS with that key (QEMU's
// `tls-creds-psk`), one connection per channel. So the bytes of the guest's
// memory cross no daemon (the libp2p bridge of node/migration/stream.ts cost a core's worth of
// copying and ciphering per stream), and still never travel in clear or to anyone without the key.
//
// The key lives in a `keys.psk` file because that is how QEMU takes it: 0600 in a 0700 directory
// of its own under the VM's runtime dir, removed once QEMU no longer needs it (the client loads it
// when its credentials object is made; the server reads it at each TLS handshake, so its copy stays
// until every connection is in). The target's QEMU listens on one address, the node's own, on a port
// of the configured range (or one the kernel picks), and stops listening once the migration's
// connections have arrived.
import { createDiffieHellmanGroup, randomBytes, randomInt } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import type { QmpClient } from '../qemu/qmp.ts'
import { QemuError } from '../qemu/errors.ts'

/** bytes of a migration's key: 256 bits, as the TLS-PSK ciphers use */
export const PSK_BYTES = 32
/** the identity the source names in its TLS handshake (QEMU's `username`) */
export const PSK_IDENTITY = 'blixard-migration'
const IDENTITY = /^[A-Za-z0-9_.-]{1,64}$/
const KEY = new RegExp(`^[0-9a-f]{${PSK_BYTES * 2}}$`)
/** QOM ids: a letter, then letters, digits, '-', '_', '.' */
const CREDS_ID = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/

/** What the target offers the source, over the authenticated stream: where its QEMU listens for
 * this migration, and the key to talk to it with. */
export interface TlsOffer {
  /** an IP address of the target node (never a name: nothing is resolved) */
  host: string
  port: number
  identity: string
  /** hex */
  key: string
  /** QEMU multifd channels the target listens with (each its own TCP connection and TLS session
   * under the same key); 0: one stream. The source must migrate with the same number. Absent in an
   * offer of an older target: 0 */
  multifd?: number
}

/** The most multifd channels an offer may ask for (each is a thread and a connection on both hosts). */
export const MAX_MULTIFD_CHANNELS = 8
/**
 * Multifd channels by default. Measured here (2 cores, load ~15, 96 MiB tiny guest, loopback, both
 * QEMUs' user+system time per MiB moved, medians of 4 interleaved runs): TLS-PSK over one stream
 * 9.1 ms/MiB with AES-128-GCM, over 2 multifd channels 5.4 ms/MiB, plain TCP 3.9 ms/MiB. One
 * stream costs more per byte because QEMU 7.2 hands each page and each 8-byte page header to
 * gnutls as its own record (a send and, on the target, at least one recv per record); multifd
 * sends pages in 512 KiB packets.
 */
export const DEFAULT_MULTIFD_CHANNELS = 2

/**
 * The TLS cipher preference both QEMUs get. gnutls's NORMAL picked CHACHA20-POLY1305 here (15 ms/MiB
 * against 9 for AES-128-GCM, same run), as gnutls does when it does not see AES-NI; a CPU with the
 * AES and carry-less multiply instructions does AES-GCM far cheaper, so it comes first there.
 * Elsewhere QEMU's default (NORMAL). PSK suites are added by QEMU itself.
 */
export const AES_FIRST_PRIORITY = 'NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305'

/** AES_FIRST_PRIORITY when /proc/cpuinfo's flags name aes and pclmulqdq, else undefined (QEMU's default). */
export function tlsPriorityFor (cpuinfo: string): string | undefined {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/))
  return flags.has('aes') && flags.has('pclmulqdq') ? AES_FIRST_PRIORITY : undefined
}

let hostPriority: { v: string | undefined } | null = null
/** tlsPriorityFor this host's /proc/cpuinfo, read once. */
export function hostTlsPriority (): string | undefined {
  if (hostPriority == null) {
    let info = ''
    try { info = readFileSync('/proc/cpuinfo', 'utf8') } catch { /* not Linux: QEMU's default */ }
    hostPriority = { v: tlsPriorityFor(info) }
  }
  return hostPriority.v
}

/** A new random key, hex (what keys.psk holds). */
export function newPsk (): string {
  return randomBytes(PSK_BYTES).toString('hex')
}

/** An offer from the peer, checked field by field: its fields end up in a QMP command and a file. */
export function parseTlsOffer (v: unknown): TlsOffer {
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`TLS offer must be an object: ${JSON.stringify(v)}`)
  const o = v as Record<string, unknown>
  if (typeof o.host !== 'string' || isIP(o.host) === 0) throw new Error(`TLS offer: host must be an IP address: ${JSON.stringify(o.host)}`)
  if (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new Error(`TLS offer: port must be an integer 1..65535: ${JSON.stringify(o.port)}`)
  if (typeof o.identity !== 'string' || !IDENTITY.test(o.identity)) throw new Error(`TLS offer: identity must match ${IDENTITY.source}: ${JSON.stringify(o.identity)}`)
  if (typeof o.key !== 'string' || !KEY.test(o.key)) throw new Error(`TLS offer: key must be ${PSK_BYTES * 2} hex digits`)
  const multifd = o.multifd ?? 0
  if (typeof multifd !== 'number' || !Number.isInteger(multifd) || multifd < 0 || multifd > MAX_MULTIFD_CHANNELS) throw new Error(`TLS offer: multifd must be an integer 0..${MAX_MULTIFD_CHANNELS}: ${JSON.stringify(o.multifd)}`)
  return { host: o.host, port: o.port, identity: o.identity, key: o.key, multifd }
}

/** `tcp:HOST:PORT` for QEMU, an IPv6 address in brackets. */
export function tcpUri (host: string, port: number): string {
  if (isIP(host) === 0) throw new QemuError('InvalidSpec', `migration address must be an IP address: ${host}`)
  return `tcp:${isIP(host) === 6 ? `[${host}]` : host}:${port}`
}

/** Writes keys.psk (identity:key, 0600) into a new 0700 directory under `parent`; returns the directory. */
export async function writePskDir (parent: string, identity: string, key: string): Promise<string> {
  if (!IDENTITY.test(identity) || !KEY.test(key)) throw new QemuError('InvalidSpec', 'PSK identity or key malformed')
  const dir = await mkdtemp(join(parent, 'mig-psk-')) // mkdtemp makes it 0700
  await chmod(dir, 0o700)
  await writeFile(join(dir, 'keys.psk'), `${identity}:${key}\n`, { mode: 0o600, flag: 'wx' })
  // public parameters, but QEMU looks for them beside the key (see dhParamsPem)
  await writeFile(join(dir, 'dh-params.pem'), dhParamsPem(), { mode: 0o600, flag: 'wx' })
  return dir
}

export async function removePskDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

/** A QOM id for one migration's credentials object. */
export function credsId (): string {
  return `blxmig-${randomBytes(6).toString('hex')}`
}

async function addCreds (qmp: QmpClient, id: string, dir: string, endpoint: 'server' | 'client', username?: string, priority?: string): Promise<void> {
  if (!CREDS_ID.test(id)) throw new QemuError('InvalidSpec', `credentials id must match ${CREDS_ID.source}: ${id}`)
  await qmp.execute('object-add', { 'qom-type': 'tls-creds-psk', id, dir, endpoint, ...(username != null ? { username } : {}), ...(priority != null ? { priority } : {}) })
}

/** multifd on (with `channels` channels) or off on a QEMU, before it listens or migrates: both
 * QEMUs of a migration must agree, and a QEMU keeps the setting for its next migration. */
export async function setMultifd (qmp: QmpClient, channels: number): Promise<void> {
  if (!Number.isInteger(channels) || channels < 0 || channels > MAX_MULTIFD_CHANNELS) throw new QemuError('InvalidSpec', `multifd channels must be 0..${MAX_MULTIFD_CHANNELS}: ${channels}`)
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: channels > 0 }] })
  if (channels > 0) await qmp.execute('migrate-set-parameters', { 'multifd-channels': channels })
}

/**
 * Target side, on a QEMU started with `-incoming defer`: server credentials from `pskDir`, TLS
 * required of the incoming migration, and a listener on `host` (a port the kernel picks). Returns
 * that port.
 */
export async function listenTls (qmp: QmpClient, opts: { host: string, pskDir: string, credsId: string, ports?: { low: number, high: number }, multifd?: number, priority?: string }): Promise<number> {
  await addCreds(qmp, opts.credsId, opts.pskDir, 'server', undefined, opts.priority)
  await setMultifd(qmp, opts.multifd ?? 0)
  await qmp.execute('migrate-set-parameters', { 'tls-creds': opts.credsId })
  if (opts.ports === undefined) {
    await qmp.execute('migrate-incoming', { uri: tcpUri(opts.host, 0) })
  } else {
    await listenInRange(qmp, opts.host, opts.ports)
  }
  // QEMU reports the address it listens on (with the port it got) while the migration is set up
  const r = await qmp.execute('query-migrate') as { 'socket-address'?: Array<{ type?: string, port?: string | number }> }
  const port = Number(r['socket-address']?.find((a) => a.type === 'inet')?.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new QemuError('QmpError', `query-migrate names no port the incoming migration listens on: ${JSON.stringify(r)}`)
  return port
}

/** Ports of the range tried before giving up (another migration or service may hold some). */
export const MIGRATION_PORT_TRIES = 16

/** migrate-incoming on a port of [low, high] (the range the firewall opens between nodes): random
 * ports first, so concurrent migrations into one host rarely collide; QEMU allows another
 * migrate-incoming after one that failed to bind. */
async function listenInRange (qmp: QmpClient, host: string, ports: { low: number, high: number }): Promise<void> {
  if (!(Number.isInteger(ports.low) && Number.isInteger(ports.high) && ports.low >= 1 && ports.low <= ports.high && ports.high <= 65535)) {
    throw new QemuError('QmpError', `the migration port range ${ports.low}-${ports.high} is empty or invalid: set migration.portLow <= migration.portHigh`)
  }
  const span = ports.high - ports.low + 1
  const start = randomInt(span)
  let last: unknown = null
  for (let i = 0; i < Math.min(span, MIGRATION_PORT_TRIES); i++) {
    const port = ports.low + (start + i) % span
    try {
      await qmp.execute('migrate-incoming', { uri: tcpUri(host, port) })
      return
    } catch (err) { last = err }
  }
  throw new QemuError('QmpError', `no free port for the incoming migration in ${ports.low}-${ports.high} on ${host} (${Math.min(span, MIGRATION_PORT_TRIES)} tried; last: ${last instanceof Error ? last.message : String(last)}): widen migration.portLow/portHigh`)
}

/**
 * Source side: client credentials with the offer's key, TLS required, then `migrate` to the
 * target's address. The key file goes as soon as the credentials are made (QEMU read it then).
 */
export async function migrateTls (qmp: QmpClient, offer: TlsOffer, opts: { keyParent: string, credsId: string, priority?: string }): Promise<void> {
  const dir = await writePskDir(opts.keyParent, offer.identity, offer.key)
  try {
    await addCreds(qmp, opts.credsId, dir, 'client', offer.identity, opts.priority)
  } finally {
    await removePskDir(dir)
  }
  await setMultifd(qmp, offer.multifd ?? 0)
  await qmp.execute('migrate-set-parameters', { 'tls-creds': opts.credsId })
  await qmp.execute('migrate', { uri: tcpUri(offer.host, offer.port) })
}

/** After a migration ended on a QEMU that lives on (the source after a failure): TLS off again and
 * the credentials object gone. Best effort: a QEMU that quit has nothing to clear. */
export async function clearTls (qmp: QmpClient, id: string): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'tls-creds': '' }).catch(() => {})
  await qmp.execute('object-del', { id }).catch(() => {})
}

/** The address a node's QEMU listens on for an incoming migration: the first IP address among the
 * node's own libp2p addresses that is neither loopback nor unspecified (the one its peers reach),
 * else its loopback address (a cluster on one machine), else null. */
export function migrationAddress (addrs: Array<{ getComponents: () => Array<{ name: string, value?: string }> }>): string | null {
  const ips = addrs.flatMap((a) => a.getComponents().filter((c) => (c.name === 'ip4' || c.name === 'ip6') && c.value != null).map((c) => c.value as string))
  const usable = ips.filter((ip) => ip !== '0.0.0.0' && ip !== '::')
  const loopback = (ip: string): boolean => ip.startsWith('127.') || ip === '::1'
  return usable.find((ip) => !loopback(ip)) ?? usable[0] ?? null
}

/** DER length octets */
function derLength (n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

function derInteger (b: Buffer): Buffer {
  const body = (b[0] & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), b]) : b
  return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body])
}

let dhPem: string | null = null

/**
 * DH parameters for the target's credentials (its dh-params.pem). Without the file QEMU generates
 * 2048-bit parameters at every object-add: 0.06 to over 5 s measured here, on the move's critical
 * path. These are the well-known 2048-bit MODP group of RFC 3526 (group 14, as Node's crypto has
 * it), as PKCS#3 DHParameter in PEM; only TLS 1.2's DHE-PSK suites use them.
 */
export function dhParamsPem (): string {
  if (dhPem != null) return dhPem
  const dh = createDiffieHellmanGroup('modp14')
  const body = Buffer.concat([derInteger(dh.getPrime()), derInteger(dh.getGenerator())])
  const der = Buffer.concat([Buffer.from([0x30]), derLength(body.length), body])
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')
  dhPem = `-----BEGIN DH PARAMETERS-----\n${b64}\n-----END DH PARAMETERS-----\n`
  return dhPem
}
