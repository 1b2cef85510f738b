// Failpoints (the idea of fail-rs): named places in the real code where a test makes a fault
// happen. Off by default; when off, a point costs one Map lookup on an empty Map. Enabled for a
// process by BLIXARD_FAILPOINTS, e.g.
//   BLIXARD_FAILPOINTS='raft.log.fsync=error;raft.transport.send=drop(0.2)'
// Each entry is `point=action` or `point=action(arg)`; an optional `N*` before the action fires it
// at most N times (`raft.log.fsync=1*error`). A bad spec is a FailpointSpecError naming the entry
// and what is wrong, thrown at the first use (the daemon reads it at start and exits with it).
//
// Lives in storage/ so both storage/ (the Raft log, the KV) and node/ (transport, QEMU) may import it.

/** every point, and the actions it understands (with the meaning of the argument) */
export const FAILPOINTS = {
  'raft.log.write': ['error'],
  'raft.log.fsync': ['error'],
  'raft.log.torn': ['torn'],
  'kv.commit': ['error'],
  'raft.transport.send': ['drop', 'delay', 'reset'],
  'qemu.qmp': ['timeout'],
  'qemu.spawn': ['error'],
  'ceph.rbd': ['timeout', 'blocklisted']
} as const satisfies Record<string, readonly string[]>

export type FailpointName = keyof typeof FAILPOINTS
export type FailAction = (typeof FAILPOINTS)[FailpointName][number]

export interface Armed {
  action: FailAction
  /** drop: probability in [0, 1]; delay: ms; otherwise unused */
  arg: number | null
  /** fires left (Infinity: unlimited) */
  left: number
}

/** actions whose argument is required, with its bounds */
const ARGS: Partial<Record<FailAction, { min: number, max: number, what: string }>> = {
  drop: { min: 0, max: 1, what: 'a probability in [0, 1]' },
  delay: { min: 0, max: 600_000, what: 'a delay in ms in [0, 600000]' }
}

/** at most this many failpoint entries (a spec is typed by hand in a test) */
const MAX_ENTRIES = 32

export class FailpointSpecError extends Error {
  constructor (message: string) {
    super(`BLIXARD_FAILPOINTS: ${message}`)
    this.name = 'FailpointSpecError'
  }
}

/** A fault made to happen by a failpoint: callers turn it into their own error kind. */
export class InjectedFault extends Error {
  constructor (readonly point: FailpointName, readonly action: FailAction) {
    super(`failpoint ${point}=${action} fired`)
    this.name = 'InjectedFault'
  }
}

export function parseFailpoints (spec: string): Map<FailpointName, Armed> {
  const out = new Map<FailpointName, Armed>()
  const entries = spec.split(';').map((s) => s.trim()).filter((s) => s !== '')
  if (entries.length > MAX_ENTRIES) throw new FailpointSpecError(`${entries.length} entries, at most ${MAX_ENTRIES}`)
  for (const entry of entries) {
    const m = /^([a-z0-9.]+)=(?:(\d+)\*)?([a-z]+)(?:\(([^()]*)\))?$/.exec(entry)
    if (m == null) throw new FailpointSpecError(`"${entry}" is not point=action, point=action(arg) or point=N*action`)
    const [, point, times, action, arg] = m
    if (!Object.hasOwn(FAILPOINTS, point)) throw new FailpointSpecError(`unknown point "${point}" in "${entry}" (known: ${Object.keys(FAILPOINTS).join(', ')})`)
    const name = point as FailpointName
    const allowed: readonly string[] = FAILPOINTS[name]
    if (!allowed.includes(action)) throw new FailpointSpecError(`point ${name} has no action "${action}" (it has: ${allowed.join(', ')})`)
    const a = action as FailAction
    const bounds = ARGS[a]
    let n: number | null = null
    if (bounds != null) {
      if (arg == null) throw new FailpointSpecError(`${name}=${a} needs ${bounds.what}, e.g. ${a}(${bounds.max === 1 ? '0.2' : '100'})`)
      n = Number(arg)
      if (arg.trim() === '' || !Number.isFinite(n) || n < bounds.min || n > bounds.max) throw new FailpointSpecError(`${name}=${a}(${arg}): expected ${bounds.what}`)
    } else if (arg != null) {
      throw new FailpointSpecError(`${name}=${a} takes no argument, got (${arg})`)
    }
    if (out.has(name)) throw new FailpointSpecError(`point ${name} given twice`)
    const left = times == null ? Infinity : Number(times)
    if (left < 1) throw new FailpointSpecError(`"${entry}": a count must be at least 1`)
    out.set(name, { action: a, arg: n, left })
  }
  return out
}

let armed: Map<FailpointName, Armed> | null = null

function table (): Map<FailpointName, Armed> {
  if (armed == null) armed = parseFailpoints(process.env.BLIXARD_FAILPOINTS ?? '')
  return armed
}

/** Reads BLIXARD_FAILPOINTS now (the daemon calls this at start, so a bad spec fails fast). */
export function loadFailpoints (): ReadonlyMap<FailpointName, Armed> { return table() }

/** Replaces the armed points (tests in one process); '' turns every point off. */
export function setFailpoints (spec: string): void { armed = parseFailpoints(spec) }

/**
 * The action armed at `point`, if it fires now, else null. `random` decides `drop` (injected for
 * tests; Math.random is fine here, in the shell).
 */
export function failpoint (point: FailpointName, random: () => number = Math.random): Armed | null {
  const t = table()
  if (t.size === 0) return null
  const a = t.get(point)
  if (a == null || a.left <= 0) return null
  if (a.action === 'drop' && random() >= (a.arg ?? 0)) return null
  a.left--
  return a
}
