// Breadth-first exploration with state hashing. A RawNode cannot be copied
// through its API, so a state is rebuilt when it is expanded: each discovered
// state is stored only as (parent, index of the action in the parent's
// enabled list), and the state being expanded is rebuilt by copying its parent
// (World.fork: only the replica the action touches is copied) and redoing that one action. States of a level are expanded in
// the order they were found, so siblings share a parent and one cached state
// per level makes every rebuild cost one transition. Memory per state is a
// fingerprint and two numbers, not a copy of three Raft nodes.
import { fingerprint } from './graph.ts'
import { World } from './world.ts'
import type { ModelConfig } from './world.ts'
import { apply, describe, enabled } from './actions.ts'
import type { Action, Budgets } from './actions.ts'

export interface ExploreOptions {
  depth: number
  budgets: Budgets
  config: ModelConfig
  /** stop after this many violating states */
  maxViolations: number
  /** stop after this many distinct states (0: no limit) */
  maxStates: number
  /** progress lines (to stderr), or null */
  progress: ((line: string) => void) | null
}

export interface Counterexample {
  violations: string[]
  /** the actions from the initial state, in words */
  path: string[]
}

export interface ExploreResult {
  /** successor states generated (transitions taken, duplicates included) */
  explored: number
  distinct: number
  /** deepest level with a new state */
  depth: number
  /** true when the state space ran out before the depth bound */
  exhausted: boolean
  /** states per level, from the initial state's 1 */
  levels: number[]
  violations: Counterexample[]
  elapsedMs: number
  transitionsPerSec: number
  /** why the search stopped early, if it did */
  stopped: string | null
}

interface Level {
  parent: Int32Array
  action: Uint16Array
  count: number
}

function newLevel (): Level {
  return { parent: new Int32Array(1024), action: new Uint16Array(1024), count: 0 }
}

function push (l: Level, parent: number, action: number): void {
  if (l.count === l.parent.length) {
    const p = new Int32Array(l.count * 2)
    p.set(l.parent)
    const a = new Uint16Array(l.count * 2)
    a.set(l.action)
    l.parent = p
    l.action = a
  }
  l.parent[l.count] = parent
  l.action[l.count] = action
  l.count++
}

export function explore (o: ExploreOptions): ExploreResult {
  const t0 = Date.now()
  const init = new World(o.config)
  init.checkState()
  const visited = new Set<string>([fingerprint(init.encode())])
  const levels: Level[] = [newLevel()]
  push(levels[0], -1, 0)
  const cache: Array<{ i: number, w: World, acts: Action[] } | null> = [{ i: 0, w: init, acts: enabled(init, o.budgets) }]
  const violations: Counterexample[] = []
  let explored = 0
  let stopped: string | null = null

  const rebuild = (d: number, i: number): { w: World, acts: Action[] } => {
    const c = cache[d]
    if (c !== null && c !== undefined && c.i === i) return c
    const parent = rebuild(d - 1, levels[d].parent[i])
    const w = parent.w.fork()
    const a = parent.acts[levels[d].action[i]]
    if (!apply(w, a, o.budgets)) throw new Error(`model: replaying ${describe(parent.w, a)} failed (a nondeterministic transition)`)
    const entry = { i, w, acts: enabled(w, o.budgets) }
    cache[d] = entry
    return entry
  }

  const pathTo = (d: number, i: number, last: Action | null, lastFrom: World | null): string[] => {
    const out: string[] = []
    for (let k = d, j = i; k > 0; j = levels[k].parent[j], k--) {
      const p = rebuild(k - 1, levels[k].parent[j])
      out.push(describe(p.w, p.acts[levels[k].action[j]]))
    }
    out.reverse()
    if (last !== null && lastFrom !== null) out.push(describe(lastFrom, last))
    return out
  }

  if (init.violations.length > 0) violations.push({ violations: init.violations, path: [] })
  let depth = 0
  let exhausted = false
  for (let d = 0; d < o.depth && stopped === null && violations.length < o.maxViolations; d++) {
    const next = newLevel()
    levels.push(next)
    cache.push(null)
    for (let i = 0; i < levels[d].count && stopped === null; i++) {
      const { w, acts } = rebuild(d, i)
      for (let a = 0; a < acts.length; a++) {
        const c = w.fork()
        explored++
        if (!apply(c, acts[a], o.budgets)) continue
        const h = fingerprint(c.encode())
        if (visited.has(h)) continue
        visited.add(h)
        if (c.violations.length > 0) {
          violations.push({ violations: [...new Set(c.violations)], path: pathTo(d, i, acts[a], w) })
          if (violations.length >= o.maxViolations) { stopped = `${violations.length} violation(s) found`; break }
          continue
        }
        push(next, i, a)
        if (o.maxStates > 0 && visited.size >= o.maxStates) { stopped = `state limit ${o.maxStates} reached`; break }
      }
    }
    if (next.count > 0 || violations.length > 0) depth = d + 1
    o.progress?.(`depth ${d + 1}: ${next.count} new states, ${visited.size} distinct, ${explored} explored, ${Math.round((Date.now() - t0) / 1000)} s`)
    if (next.count === 0) { exhausted = stopped === null && violations.length === 0; break }
  }
  const elapsedMs = Date.now() - t0
  return {
    explored,
    distinct: visited.size,
    depth,
    exhausted,
    levels: levels.map(l => l.count),
    violations,
    elapsedMs,
    transitionsPerSec: Math.round(explored / Math.max(0.001, elapsedMs / 1000)),
    stopped
  }
}
