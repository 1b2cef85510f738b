// The tiny guest built by scripts/build-tiny-guest.sh: where its files are,
// the kernel parameters it understands, and the console lines it prints.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { BootSpec } from './cmdline.ts'
import { QemuError } from './errors.ts'

export interface TinyGuest {
  kernel: string
  initrd: string
  kernelVersion: string
}

export interface TinyGuestParams {
  hostname?: string
  /** ADDR/PFX for eth0 */
  ip?: string
  gw?: string
  /** mount /dev/vda at /data (mke2fs when blank), count boots there, run the disk writer */
  disk?: boolean
  /** the host running the guest: the disk writer puts it in every record */
  host?: string
  /** tag inside the guest: the address goes on eth0.VLAN */
  vlan?: number
  /** after the ready marker, ping these and print BLIXARD-PING lines */
  ping?: string[]
  /** after the ready marker, ping this address without end (a try every 200 ms) and print
   * BLIXARD-PONG IP TRY for each reply: when traffic to a peer stops and when it resumes */
  pingLoop?: string
  /** print BLIXARD-HEARTBEAT N on the console every this many ms */
  heartbeatMs?: number
}

export interface ReadyMarker {
  hostname: string
  /** eth0's address without prefix, or null when the guest has none */
  ip: string | null
}

/** The checkout: two levels up from this file, or three when it runs compiled from dist/. */
export const REPO_ROOT = ((up) => basename(up) === 'dist' ? dirname(up) : up)(fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, ''))
export const DEFAULT_GUEST_DIR = join(REPO_ROOT, '.guest')
const BUILD_SCRIPT = join(REPO_ROOT, 'scripts', 'build-tiny-guest.sh')
// whole lines only: the console log is read while the guest is still writing it
const READY = /BLIXARD-GUEST-UP (\S+) (\S+)[^\n]*\n/
const DISK = /BLIXARD-DISK (\S+) boots=(\d+)\r?\n/
const PING = /BLIXARD-PING (\S+) (ok received=(\d+)|fail)\r?\n/g
const WORD = /^[^\s"]+$/

/** Who a guest is: what a clone resumed from another VM's memory snapshot must be told, since its
 * memory still holds the source's hostname, MAC and address. */
export interface GuestIdentity {
  hostname: string
  /** ADDR/PFX for eth0 (or its VLAN device), or null: none */
  ip: string | null
  gw: string | null
  /** eth0's new MAC, or null: keep it */
  mac: string | null
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const IDENTITY = /BLIXARD-IDENTITY (\S+) (\S+) eth0=(\S+)\r?\n/g

/** The console line the tiny guest reads to take a new identity after a resume, without a reboot
 * (scripts/build-tiny-guest.sh: blix-identity). Typed into its serial socket by the host. */
export function identityLine (id: GuestIdentity): string {
  const word = (k: string, v: string): string => {
    if (!WORD.test(v) || v.length > 253) throw new QemuError('InvalidSpec', `${k} must be one word: ${JSON.stringify(v)}`)
    return v
  }
  if (id.mac != null && !MAC.test(id.mac)) throw new QemuError('InvalidSpec', `mac must be six lowercase hex pairs: ${JSON.stringify(id.mac)}`)
  return `blix-identity ${word('hostname', id.hostname)} ${id.ip == null ? 'none' : word('ip', id.ip)} ${id.gw == null ? 'none' : word('gw', id.gw)} ${id.mac ?? 'none'}\n`
}

/** The identities the guest reported taking (BLIXARD-IDENTITY lines), in order. */
export function parseIdentities (text: string): Array<{ hostname: string, ip: string | null, mac: string }> {
  return [...text.matchAll(IDENTITY)].map((m) => ({ hostname: m[1], ip: m[2] === 'none' ? null : m[2], mac: m[3] }))
}

/** The first ready marker in console text, if any. */
export function parseReadyMarker (text: string): ReadyMarker | null {
  const m = READY.exec(text)
  if (m == null) return null
  return { hostname: m[1], ip: m[2] === 'none' ? null : m[2] }
}

/** The boot counter the guest printed for its /data disk (blix.disk=1), if any. */
export function parseDiskBoots (text: string): number | null {
  const m = DISK.exec(text)
  return m == null ? null : Number(m[2])
}

const HEARTBEAT = /BLIXARD-HEARTBEAT (\d+)\r?\n/g

/** The heartbeat counters in console text, in order (whole lines only). */
export function parseHeartbeats (text: string): number[] {
  return [...text.matchAll(HEARTBEAT)].map(m => Number(m[1]))
}

const WRITER = /BLIXARD-WRITER (\S+) region=(\d+) from=(\d+)\r?\n/

/** The disk writer's start line (blix.disk=1): the host it names, its region, its first counter. */
export function parseWriterStart (text: string): { host: string, region: number, from: number } | null {
  const m = WRITER.exec(text)
  return m == null ? null : { host: m[1], region: Number(m[2]), from: Number(m[3]) }
}

/** What the guest reported for each blix.ping target: replies received, or 0 for fail. */
export function parsePings (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const m of text.matchAll(PING)) out.set(m[1], m[3] != null ? Number(m[3]) : 0)
  return out
}

const PONG = /BLIXARD-PONG (\S+) (\d+)\r?\n/g

/** The tries of the guest's ping loop (blix.pingloop) that had a reply from `target`, in order. */
export function parsePongs (text: string, target: string): number[] {
  return [...text.matchAll(PONG)].filter((m) => m[1] === target).map((m) => Number(m[2]))
}

export function tinyGuestParams (p: TinyGuestParams): string[] {
  const out: string[] = []
  const add = (k: string, v: string | undefined): void => {
    if (v == null) return
    if (!WORD.test(v)) throw new QemuError('InvalidSpec', `${k} must be one word: ${JSON.stringify(v)}`)
    out.push(`${k}=${v}`)
  }
  add('blix.hostname', p.hostname)
  add('blix.ip', p.ip)
  add('blix.gw', p.gw)
  add('blix.host', p.host)
  if (p.disk === true) out.push('blix.disk=1')
  if (p.vlan != null) {
    if (!Number.isInteger(p.vlan) || p.vlan < 1 || p.vlan > 4094) throw new QemuError('InvalidSpec', `blix.vlan must be 1..4094: ${p.vlan}`)
    out.push(`blix.vlan=${p.vlan}`)
  }
  if (p.ping != null && p.ping.length > 0) add('blix.ping', p.ping.join(','))
  add('blix.pingloop', p.pingLoop)
  if (p.heartbeatMs != null) {
    if (!Number.isInteger(p.heartbeatMs) || p.heartbeatMs < 10 || p.heartbeatMs > 60_000) throw new QemuError('InvalidSpec', `blix.heartbeat must be 10..60000 ms: ${p.heartbeatMs}`)
    out.push(`blix.heartbeat=${p.heartbeatMs}`)
  }
  return out
}

export function tinyGuestBoot (g: TinyGuest, p: TinyGuestParams = {}): BootSpec {
  return { kernel: g.kernel, initrd: g.initrd, params: tinyGuestParams(p) }
}

/** Reads what build-tiny-guest.sh left in dir; NotFound when it has not run. */
export async function loadTinyGuest (dir: string = DEFAULT_GUEST_DIR): Promise<TinyGuest> {
  let raw: string
  try {
    raw = await readFile(join(dir, 'tiny-guest.json'), 'utf8')
  } catch {
    throw new QemuError('NotFound', `no tiny guest in ${dir}: run scripts/build-tiny-guest.sh`)
  }
  const j = JSON.parse(raw) as Partial<TinyGuest>
  if (typeof j.kernel !== 'string' || typeof j.initrd !== 'string' || typeof j.kernelVersion !== 'string') {
    throw new QemuError('NotFound', `${join(dir, 'tiny-guest.json')} is incomplete: rerun scripts/build-tiny-guest.sh`)
  }
  return { kernel: j.kernel, initrd: j.initrd, kernelVersion: j.kernelVersion }
}

/** Runs the (idempotent) build script, then loads its output. */
export async function buildTinyGuest (dir: string = DEFAULT_GUEST_DIR): Promise<TinyGuest & { output: string }> {
  try {
    const { stdout } = await promisify(execFile)(BUILD_SCRIPT, [dir], { timeout: 120_000 })
    return { ...(await loadTinyGuest(dir)), output: stdout.trim() }
  } catch (e) {
    if (e instanceof QemuError) throw e
    const err = e as { stderr?: string, message: string }
    throw new QemuError('NotFound', `build-tiny-guest.sh failed: ${(err.stderr ?? '').trim() || err.message}`)
  }
}
