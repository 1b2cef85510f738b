// Linearizability of the client history over the VM metadata, checked the
// way Porcupine does it (Wing & Gong's search with Lowe's memoization):
// the history is split per VM (operations on different VMs commute), then a
// depth-first search tries to order each VM's operations so that every one
// takes effect between its call and its return and every output matches a
// sequential model. An operation whose outcome is unknown (the client gave
// up) returns "at infinity" and may take effect or not. Stale reads are not
// linearizable by design; stale-reads.ts checks them.
import type { Op, VmView } from '../history.ts'
import { viewString } from '../history.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

/** Give up (and say so, as a violation-free note) beyond this many search steps per VM. */
export const SEARCH_BUDGET = 300_000

type State = VmView | null

function sameView (a: State, b: State): boolean {
  if (a === null || b === null) return a === b
  return a.vcpus === b.vcpus && a.memoryMiB === b.memoryMiB && a.desired === b.desired
}

/** The sequential model of one VM: whether `op` with its recorded output can run in `s`, and the state after. */
export function stepVm (s: State, op: Op): State | undefined {
  const out = op.output
  const i = op.input
  switch (op.kind) {
    case 'create': {
      const next: State = { vcpus: i.vcpus as number, memoryMiB: i.memoryMiB as number, desired: i.desired as VmView['desired'] }
      if (out === null) return s === null ? next : s
      if (out.ok) return s === null ? next : undefined
      return out.error === 'AlreadyExists' && s !== null ? s : undefined
    }
    case 'update': {
      const next: State = s === null ? null : { vcpus: i.vcpus as number, memoryMiB: i.memoryMiB as number, desired: s.desired }
      if (out === null) return next
      if (out.ok) return s !== null ? next : undefined
      // a placed VM's larger spec must still fit its node (storage/apply-vms.ts); the tenant's big
      // VMs (sim/sched-model.ts) fill the hosts, so a refused update, changing nothing, is legal
      if (out.error === 'NoCapacity') return s !== null ? s : undefined
      return out.error === 'NotFound' && s === null ? s : undefined
    }
    case 'desire': {
      const next: State = s === null ? null : { ...s, desired: i.desired as VmView['desired'] }
      if (out === null) return next
      if (out.ok) return s !== null ? next : undefined
      return out.error === 'NotFound' && s === null ? s : undefined
    }
    case 'delete': {
      if (out === null) return null
      if (out.ok) return s !== null ? null : undefined
      return out.error === 'NotFound' && s === null ? s : undefined
    }
    case 'read':
      if (out === null) return s
      return out.ok && sameView(s, out.view) ? s : undefined
    case 'stale-read':
      return s
  }
}

/** splitmix32 of i: fixed pseudo-random labels for the Zobrist hash. */
function mix (i: number): number {
  let z = (i * 0x9e3779b9) | 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return z ^ (z >>> 16)
}

function stateKey (s: State): string {
  return s === null ? '-' : `${s.vcpus}/${s.memoryMiB}/${s.desired}`
}

export type SearchResult = 'ok' | 'violation' | 'budget'

/** A sequential model for the search: `step` says whether `op`, with its recorded output, can take
 * effect in state `s` (undefined: it cannot) and gives the state after; `key` names a state for
 * the memo. Operations with an unknown outcome (`ret` null) return "at infinity". */
export interface SequentialModel<S, O> {
  init: S
  step: (s: S, op: O) => S | undefined
  key: (s: S) => string
  call: (op: O) => number
  ret: (op: O) => number | null
}

const VM_MODEL: SequentialModel<State, Op> = {
  init: null, step: stepVm, key: stateKey, call: (op) => op.call, ret: (op) => op.ret
}

/** Is this one-VM history linearizable? */
export function checkOneVm (ops: readonly Op[], budget = SEARCH_BUDGET): SearchResult {
  return checkLinearizable(ops, VM_MODEL, budget)
}

/** Is this history of one object linearizable under `model`? (Porcupine's checkSingle over a
 * doubly linked event list.) */
export function checkLinearizable<S, O> (ops: readonly O[], model: SequentialModel<S, O>, budget = SEARCH_BUDGET): SearchResult {
  const n = ops.length
  if (n === 0) return 'ok'
  // Events: call of op k is 2k, return is 2k+1; calls sort before returns at equal times so
  // that operations touching at an instant count as concurrent.
  const events: number[] = []
  for (let k = 0; k < n; k++) events.push(2 * k, 2 * k + 1)
  const time = (ev: number): number => {
    const op = ops[ev >> 1]
    return (ev & 1) === 0 ? model.call(op) : (model.ret(op) ?? Infinity)
  }
  events.sort((x, y) => time(x) - time(y) || (x & 1) - (y & 1) || x - y)
  // Linked list with a head sentinel at index 2n.
  const HEAD = 2 * n
  const next = new Int32Array(2 * n + 1).fill(-1)
  const prev = new Int32Array(2 * n + 1).fill(-1)
  let last = HEAD
  for (const ev of events) { next[last] = ev; prev[ev] = last; last = ev }
  const lift = (k: number): void => {
    const c = 2 * k; const r = 2 * k + 1
    next[prev[c]] = next[c]; if (next[c] >= 0) prev[next[c]] = prev[c]
    next[prev[r]] = next[r]; if (next[r] >= 0) prev[next[r]] = prev[r]
  }
  const unlift = (k: number): void => {
    const c = 2 * k; const r = 2 * k + 1
    if (next[r] >= 0) prev[next[r]] = r
    next[prev[r]] = r
    if (next[c] >= 0) prev[next[c]] = c
    next[prev[c]] = c
  }
  // The memo key of (set of linearized ops, state): the set is Zobrist-hashed to 64 bits, kept up
  // to date as ops are linearized and undone (a collision, at 2^-64 odds, could only prune a branch).
  const z1 = new Int32Array(n)
  const z2 = new Int32Array(n)
  for (let k = 0; k < n; k++) { z1[k] = mix(2 * k + 1); z2[k] = mix(2 * k + 2 + 0x5bd1e995) }
  let h1 = 0
  let h2 = 0
  const cache = new Set<string>()
  const keyOf = (s: S): string => `${h1},${h2}|${model.key(s)}`
  const stack: Array<{ k: number, state: S }> = []
  let state: S = model.init
  let ev = next[HEAD]
  let steps = 0
  while (next[HEAD] >= 0) {
    if (++steps > budget) return 'budget'
    if ((ev & 1) === 0) {
      const k = ev >> 1
      const after = model.step(state, ops[k])
      if (after !== undefined) {
        h1 ^= z1[k]; h2 ^= z2[k]
        const key = keyOf(after)
        if (!cache.has(key)) {
          cache.add(key)
          stack.push({ k, state })
          state = after
          lift(k)
          ev = next[HEAD]
          continue
        }
        h1 ^= z1[k]; h2 ^= z2[k]
      }
      ev = next[ev]
    } else {
      // Reached a return whose call could not be linearized: backtrack.
      const top = stack.pop()
      if (top === undefined) return 'violation'
      state = top.state
      h1 ^= z1[top.k]; h2 ^= z2[top.k]
      unlift(top.k)
      ev = next[2 * top.k]
    }
    if (ev < 0) {
      // Only calls left with nothing linearizable: backtrack too.
      const top = stack.pop()
      if (top === undefined) return 'violation'
      state = top.state
      h1 ^= z1[top.k]; h2 ^= z2[top.k]
      unlift(top.k)
      ev = next[2 * top.k]
    }
  }
  return 'ok'
}

export class Linearizability extends BaseChecker {
  readonly name = 'linearizability'
  /** VMs whose search ran out of budget (not counted as violations, reported in stats) */
  inconclusive = 0

  finish = (v: FinalView): void => {
    const byVm = new Map<string, Op[]>()
    for (const op of v.history.ops) {
      if (op.kind === 'stale-read') continue
      if (op.kind === 'read' && op.output === null) continue // a read that never answered changed nothing
      let list = byVm.get(op.vm)
      if (list === undefined) { list = []; byVm.set(op.vm, list) }
      list.push(op)
    }
    for (const vm of [...byVm.keys()].sort()) {
      const ops = byVm.get(vm) as Op[]
      const r = checkOneVm(ops)
      if (r === 'budget') this.inconclusive++
      if (r === 'violation') this.fail(v.now, `history of ${vm} is not linearizable (${ops.length} ops): ${describe(ops)}`)
    }
  }
}

/** A compact listing of a failing history, enough to see the story in the report. */
function describe (ops: readonly Op[]): string {
  const lines = ops.slice(0, 60).map(op => {
    const out = op.output === null ? '?' : op.output.ok ? (op.kind === 'read' ? viewString(op.output.view) : 'ok') : op.output.error
    return `\n    ${op.client}#${op.id} ${op.kind}${JSON.stringify(op.input)} [${op.call}, ${op.ret ?? 'inf'}] -> ${out}${op.node !== null ? ' @' + op.node : ''}`
  })
  return lines.join('') + (ops.length > 60 ? `\n    ... ${ops.length - 60} more` : '')
}
