// Warm pools: a declared number of pre-booted, paused guests of one image and one
// shape kept on every node (or on the nodes whose labels meet the pool's constraints), so a create
// of a VM of that image and shape is handed a guest that already booted (a `cont`) instead of
// booting one. Which images a host can hold warm is a capability of the image (protocols/images.ts). The record is replicated config; the guests themselves are each host's
// own business (node/pools/service.ts), never recorded one by one: a pool guest is no VM until a
// create claims it, and what claimed it shows in that VM's status. Pool guests reserve nothing:
// placement places VMs into the room they hold (reclaimable), and the host stops pool guests when
// the VMs placed on it need that room (warmRoom, planWarmPools); the scheduler prefers a node with a
// paused guest for a VM a pool serves (placement's warm scorer, fed by the load reports).
//
//   SetWarmPool     admin  declare or resize pool `name`: `size` guests of image × vcpus × memoryMiB per node
//   DeleteWarmPool  admin  remove it: every host stops and removes its guests of it
//
// Both are declared with the other commands in protocols/command-schema.ts (POOL_COMMANDS). The
// decisions the hosts take are pure functions here, table-tested in test/pools/plan.test.ts.
import type { Command } from './commands.ts'
import type { Constraint, VmSpec } from './model.ts'
import { imageCapabilities, imageLabel, sameImage, type VmImage } from './images.ts'

/** At most this many warm guests of one pool per node (each holds its memory while it waits). */
export const MAX_WARM_POOL_SIZE = 16
/** At most this many pools in a cluster (every host keeps guests of each). */
export const MAX_WARM_POOLS = 32
/** A host boots at most this many pool guests at once (a boot costs a core for seconds under
 * TCG: refilling must not starve the guests that run). */
export const MAX_WARM_BOOTING = 1
/** Pool guests' runtime ids start with this; VM ids are UUIDs, so none of them ever does. */
export const WARM_GUEST_PREFIX = 'warm.'

export interface WarmPoolRecord {
  name: string
  /** the image its guests boot; absent in a record set before pools had one: the tiny image */
  image?: VmImage
  vcpus: number
  memoryMiB: number
  /** warm guests per node */
  size: number
  setAt: number
  /** only nodes whose labels meet these keep guests of the pool (absent: every node) */
  constraints?: Constraint[]
}

const TINY: VmImage = { kind: 'tiny' }

/** The image a pool's guests boot. */
export function poolImage (p: Pick<WarmPoolRecord, 'image'>): VmImage { return p.image ?? TINY }

/** Why a pool of this image cannot be kept, or null (apply refuses such a SetWarmPool). */
export function unwarmableImage (image: VmImage): string | null {
  if (imageCapabilities(image).warm) return null
  return `image ${imageLabel(image)} cannot be held warm: a pool guest is booted by the QEMU driver and paused once its ready marker shows, which only the tiny image prints`
}

/** The two commands, declared in protocols/command-schema.ts (POOL_COMMANDS). */
export type PoolCommand = Extract<Command, { type: 'SetWarmPool' | 'DeleteWarmPool' }>
export const POOL_COMMAND_TYPES: ReadonlySet<string> = new Set(['SetWarmPool', 'DeleteWarmPool'])

/** Key prefix of pools in the replicated `settings` table. */
export const POOL_KEY_PREFIX = 'warmPool/'
export function poolKey (name: string): string { return POOL_KEY_PREFIX + name }
/** [start, end) of every pool key ('0' follows '/'). */
export const POOL_RANGE = { start: POOL_KEY_PREFIX, end: 'warmPool0' } as const

/** Why a VM of this spec cannot be served by a pool guest (a pool guest is a plain guest of its
 * image: no volumes, no network, no kernel parameters of its own; diskGiB is not looked at: the QEMU
 * driver gives a tiny guest no local disk either way), or null when it can. */
export function unpoolable (spec: VmSpec): string | null {
  if (spec.hypervisor !== 'qemu') return `hypervisor ${spec.hypervisor}`
  if (!imageCapabilities(spec.image).warm) return `image ${imageLabel(spec.image)}`
  if (spec.volumes.length > 0) return 'volumes'
  if (spec.networks.length > 0) return 'networks'
  if (spec.kernelParams.length > 0) return 'kernel parameters'
  return null
}

/** The pool a create of this spec may claim from: the first (by name) of its image and shape, or null. */
export function poolFor (spec: VmSpec, pools: readonly WarmPoolRecord[]): WarmPoolRecord | null {
  if (unpoolable(spec) != null) return null
  return [...pools].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    .find((p) => p.size > 0 && sameImage(poolImage(p), spec.image) && p.vcpus === spec.vcpus && p.memoryMiB === spec.memoryMiB) ?? null
}

/** A pool guest's runtime id: `warm.<pool>.<seq>`. */
export function warmGuestId (pool: string, seq: number): string { return `${WARM_GUEST_PREFIX}${pool}.${seq}` }

/** The pool and sequence number of a pool guest's id, or null for any other id. */
export function parseWarmGuestId (id: string): { pool: string, seq: number } | null {
  const m = /^warm\.([a-z0-9-]{1,63})\.(\d{1,9})$/.exec(id)
  return m == null ? null : { pool: m[1], seq: Number(m[2]) }
}

/** One pool guest as its host sees it. */
export interface WarmGuest {
  id: string
  /** booting: QEMU runs, the guest has not printed its ready marker; ready: booted and running;
   * paused: booted and stopped by QMP, claimable; gone: its QEMU ended */
  state: 'booting' | 'ready' | 'paused' | 'gone'
  /** the shape it was booted with */
  vcpus: number
  memoryMiB: number
}

export type WarmAction =
  | { kind: 'boot', pool: string, reason: string }
  | { kind: 'pause', id: string, reason: string }
  | { kind: 'remove', id: string, reason: string }

/** What pool guests may hold on a host: cpu (vCPUs) and memory (MiB). */
export interface WarmRoom { cpu: number, memoryMiB: number }

/** A VM placed on this host that has not started yet, as warmRoom sees it. */
export interface PendingStart {
  spec: VmSpec
  /** its first start already asked the pool (claimed or not): it no longer counts on a guest */
  asked: boolean
}

/**
 * The room pool guests may hold on a host: what the VMs placed there leave of its capacity ×
 * overcommit (`free`, negative when they overfill it), plus the shape of each VM placed there, not
 * started yet, that a paused guest of its pool will serve (its claim turns that guest into the VM,
 * so it needs no room of its own: evicting that guest for it would cost it its warm start).
 * Each paused guest is counted for one such VM at most. Pure.
 */
export function warmRoom (free: WarmRoom, pending: readonly PendingStart[], pools: readonly WarmPoolRecord[], guests: readonly WarmGuest[]): WarmRoom {
  const room = { ...free }
  const left = new Map<string, number>()
  for (const g of guests) {
    const pool = g.state === 'paused' ? parseWarmGuestId(g.id)?.pool : undefined
    if (pool !== undefined) left.set(pool, (left.get(pool) ?? 0) + 1)
  }
  for (const v of pending) {
    const p = v.asked ? null : poolFor(v.spec, pools)
    const n = p == null ? 0 : left.get(p.name) ?? 0
    if (p == null || n === 0) continue
    left.set(p.name, n - 1)
    room.cpu += v.spec.vcpus
    room.memoryMiB += v.spec.memoryMiB
  }
  return room
}

/** What a host does about its pool guests: pause the booted ones, remove the dead, the surplus,
 * those of a pool deleted or reshaped, and boot what is missing (at most MAX_WARM_BOOTING at a time
 * over all pools; pools in name order). Pool guests never hold more than `room` (warmRoom; absent:
 * no bound): when the VMs placed here need more, guests are removed, the newest first (a booting one
 * before the paused ones that long booted), and a guest boots only into room no VM needs. Busy
 * guests count but are not removed. Pure. `busy`: ids with an action still running, left alone. */
export function planWarmPools (pools: readonly WarmPoolRecord[], guests: readonly WarmGuest[], busy: ReadonlySet<string> = new Set(), room?: WarmRoom): WarmAction[] {
  const out: WarmAction[] = []
  const byName = new Map(pools.map((p) => [p.name, p]))
  const kept = new Map<string, WarmGuest[]>()
  for (const g of [...guests].sort(bySeq)) {
    if (busy.has(g.id)) { if (g.state !== 'gone') pushTo(kept, parseWarmGuestId(g.id)?.pool ?? '', g); continue }
    const pool = parseWarmGuestId(g.id)?.pool
    const p = pool == null ? undefined : byName.get(pool)
    if (p == null) { out.push({ kind: 'remove', id: g.id, reason: `pool ${pool ?? '?'} is not declared` }); continue }
    if (g.state === 'gone') { out.push({ kind: 'remove', id: g.id, reason: 'its QEMU ended' }); continue }
    if (g.vcpus !== p.vcpus || g.memoryMiB !== p.memoryMiB) { out.push({ kind: 'remove', id: g.id, reason: `pool ${p.name} is now ${p.vcpus} vCPU × ${p.memoryMiB} MiB` }); continue }
    pushTo(kept, p.name, g)
  }
  let booting = [...kept.values()].flat().filter((g) => g.state === 'booting').length
  const sorted = [...pools].sort((a, b) => a.name < b.name ? -1 : 1)
  // the surplus goes newest first: the oldest have long booted
  const within = new Map<string, WarmGuest[]>()
  for (const p of sorted) {
    const mine = kept.get(p.name) ?? []
    for (const g of mine.slice(p.size).reverse()) if (!busy.has(g.id)) out.push({ kind: 'remove', id: g.id, reason: `pool ${p.name} holds ${p.size} per node` })
    within.set(p.name, [...mine.slice(0, p.size), ...mine.slice(p.size).filter((g) => busy.has(g.id))])
  }
  // the room VMs placed here need: pool guests give it back, the newest first
  const held = { cpu: 0, memoryMiB: 0 }
  for (const l of within.values()) for (const g of l) { held.cpu += g.vcpus; held.memoryMiB += g.memoryMiB }
  const evicted = new Set<string>()
  if (room !== undefined) {
    const newestFirst = [...within.values()].flat().sort((a, b) => bySeq(b, a))
    for (const g of newestFirst) {
      if (held.cpu <= room.cpu && held.memoryMiB <= room.memoryMiB) break
      if (busy.has(g.id)) continue
      evicted.add(g.id)
      held.cpu -= g.vcpus
      held.memoryMiB -= g.memoryMiB
      if (g.state === 'booting') booting--
      out.push({ kind: 'remove', id: g.id, reason: `VMs placed here need its room (pool guests may hold ${room.cpu} vCPU, ${room.memoryMiB} MiB)` })
    }
  }
  for (const p of sorted) {
    const mine = (within.get(p.name) ?? []).filter((g) => !evicted.has(g.id))
    for (const g of mine) if (g.state === 'ready' && !busy.has(g.id)) out.push({ kind: 'pause', id: g.id, reason: 'booted: held paused until claimed' })
    // nothing boots back into room just given back, or into room the VMs here need
    for (let n = mine.length; n < p.size && booting < MAX_WARM_BOOTING && evicted.size === 0; n++, booting++) {
      if (room !== undefined && (held.cpu + p.vcpus > room.cpu || held.memoryMiB + p.memoryMiB > room.memoryMiB)) break
      held.cpu += p.vcpus
      held.memoryMiB += p.memoryMiB
      out.push({ kind: 'boot', pool: p.name, reason: `pool ${p.name} has ${n} of ${p.size}` })
    }
  }
  return out
}

/** oldest first: by sequence number, not by the id's text ('.10' sorts before '.2') */
function bySeq (a: WarmGuest, b: WarmGuest): number { return (parseWarmGuestId(a.id)?.seq ?? 0) - (parseWarmGuestId(b.id)?.seq ?? 0) }

function pushTo (m: Map<string, WarmGuest[]>, k: string, g: WarmGuest): void {
  const l = m.get(k)
  if (l == null) m.set(k, [g]); else l.push(g)
}

/** The guest a create takes: a paused one of the pool (the oldest), or null. */
export function pickWarmGuest (pool: string, guests: readonly WarmGuest[], busy: ReadonlySet<string> = new Set()): string | null {
  const ids = guests.filter((g) => g.state === 'paused' && !busy.has(g.id) && parseWarmGuestId(g.id)?.pool === pool)
    .map((g) => g.id).sort((a, b) => (parseWarmGuestId(a)?.seq ?? 0) - (parseWarmGuestId(b)?.seq ?? 0))
  return ids[0] ?? null
}
