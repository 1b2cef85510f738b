// Warm pools (issue 18 item 3): a declared number of pre-booted, paused guests of one shape kept on
// every node, so a create of a VM of that shape is handed a guest that already booted (a `cont`)
// instead of booting one. The record is replicated config; the guests themselves are each host's
// own business (node/pools/service.ts), never recorded one by one: a pool guest is no VM until a
// create claims it, and what claimed it shows in that VM's status.
//
//   SetWarmPool     admin  declare or resize pool `name`: `size` guests of vcpus × memoryMiB per node
//   DeleteWarmPool  admin  remove it: every host stops and removes its guests of it
//
// Both are declared with the other commands in protocols/command-schema.ts (POOL_COMMANDS). The
// decisions the hosts take are pure functions here, table-tested in test/pools/plan.test.ts.
import type { Command } from './commands.ts'
import type { VmSpec } from './model.ts'

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
  vcpus: number
  memoryMiB: number
  /** warm guests per node */
  size: number
  setAt: number
}

/** The two commands, declared in protocols/command-schema.ts (POOL_COMMANDS). */
export type PoolCommand = Extract<Command, { type: 'SetWarmPool' | 'DeleteWarmPool' }>
export const POOL_COMMAND_TYPES: ReadonlySet<string> = new Set(['SetWarmPool', 'DeleteWarmPool'])

/** Key prefix of pools in the replicated `settings` table. */
export const POOL_KEY_PREFIX = 'warmPool/'
export function poolKey (name: string): string { return POOL_KEY_PREFIX + name }
/** [start, end) of every pool key ('0' follows '/'). */
export const POOL_RANGE = { start: POOL_KEY_PREFIX, end: 'warmPool0' } as const

/** Why a VM of this spec cannot be served by a pool guest (a pool guest is a plain tiny guest: no
 * volumes, no network, no kernel parameters of its own; diskGiB is not looked at: the QEMU driver
 * gives a tiny guest no local disk either way), or null when it can. */
export function unpoolable (spec: VmSpec): string | null {
  if (spec.hypervisor !== 'qemu') return `hypervisor ${spec.hypervisor}`
  if (spec.image.kind !== 'tiny') return `image ${spec.image.kind}`
  if (spec.volumes.length > 0) return 'volumes'
  if (spec.networks.length > 0) return 'networks'
  if (spec.kernelParams.length > 0) return 'kernel parameters'
  return null
}

/** The pool a create of this spec may claim from: the first (by name) of its shape, or null. */
export function poolFor (spec: VmSpec, pools: readonly WarmPoolRecord[]): WarmPoolRecord | null {
  if (unpoolable(spec) != null) return null
  return [...pools].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    .find((p) => p.size > 0 && p.vcpus === spec.vcpus && p.memoryMiB === spec.memoryMiB) ?? null
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

/** What a host does about its pool guests: pause the booted ones, remove the dead, the surplus,
 * those of a pool deleted or reshaped, and boot what is missing (at most MAX_WARM_BOOTING at a time
 * over all pools; pools in name order). Pure. `busy`: ids with an action still running, left alone. */
export function planWarmPools (pools: readonly WarmPoolRecord[], guests: readonly WarmGuest[], busy: ReadonlySet<string> = new Set()): WarmAction[] {
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
  for (const p of [...pools].sort((a, b) => a.name < b.name ? -1 : 1)) {
    const mine = kept.get(p.name) ?? []
    // the surplus goes newest first: the oldest have long booted
    for (const g of mine.slice(p.size).reverse()) if (!busy.has(g.id)) out.push({ kind: 'remove', id: g.id, reason: `pool ${p.name} holds ${p.size} per node` })
    for (const g of mine.slice(0, p.size)) if (g.state === 'ready' && !busy.has(g.id)) out.push({ kind: 'pause', id: g.id, reason: 'booted: held paused until claimed' })
    for (let n = mine.length; n < p.size && booting < MAX_WARM_BOOTING; n++, booting++) out.push({ kind: 'boot', pool: p.name, reason: `pool ${p.name} has ${n} of ${p.size}` })
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
