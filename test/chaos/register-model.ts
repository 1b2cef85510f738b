// The Jepsen-style run's client operations and the sequential model they are checked against.
// Each register is one VM record: its value is the VM's memoryMiB and its version the record's
// generation (only spec updates bump it). Clients create the registers, overwrite them
// (vm.update), compare-and-set them (vm.update with ifGeneration) and read them (vm.show,
// linearizable by default). An operation whose outcome the client could not learn (a timeout, a
// dropped connection, an answer that does not promise nothing happened) has `out` null and
// `ret` null: it may take effect at any point after its call, or never.
import type { SequentialModel } from '../../sim/checkers/linearizability.ts'

export type ChaosOpKind = 'create' | 'write' | 'cas' | 'read'

export type ChaosOutput =
  | { ok: true, gen?: number, value?: number }
  | { ok: false, error: string }

export interface ChaosOp {
  id: number
  client: number
  kind: ChaosOpKind
  reg: string
  /** the value written (create, write, cas) */
  value?: number
  /** the generation a cas expects */
  expect?: number
  /** ms on the client process's monotonic clock */
  call: number
  ret: number | null
  out: ChaosOutput | null
  /** index of the node asked */
  node: number
}

export type Register = { gen: number, value: number } | null

/** Error kinds that promise the command was not applied (so the op returned and changed nothing
 * unless the model says otherwise). Everything else is an unknown outcome. */
export const DEFINITE_ERRORS: ReadonlySet<string> = new Set(['NotFound', 'AlreadyExists', 'Conflict', 'GenerationMismatch', 'InvalidSpec', 'BadRequest', 'Unauthorized'])

export function registerStep (s: Register, op: ChaosOp): Register | undefined {
  const out = op.out
  switch (op.kind) {
    case 'create': {
      const next: Register = { gen: 1, value: op.value as number }
      if (out === null) return s === null ? next : s
      if (out.ok) return s === null ? next : undefined
      return out.error === 'AlreadyExists' && s !== null ? s : undefined
    }
    case 'write': {
      const next: Register = s === null ? null : { gen: s.gen + 1, value: op.value as number }
      if (out === null) return next
      if (out.ok) return s !== null ? next : undefined
      return out.error === 'NotFound' && s === null ? s : undefined
    }
    case 'cas': {
      const matches = s !== null && s.gen === op.expect
      const next: Register = matches ? { gen: (op.expect as number) + 1, value: op.value as number } : s
      if (out === null) return next
      if (out.ok) return matches ? next : undefined
      if (out.error === 'NotFound') return s === null ? s : undefined
      if (out.error === 'Conflict' || out.error === 'GenerationMismatch') return s !== null && !matches ? s : undefined
      return undefined
    }
    case 'read':
      if (out === null) return s
      if (out.ok) return s !== null && s.gen === out.gen && s.value === out.value ? s : undefined
      return out.error === 'NotFound' && s === null ? s : undefined
  }
}

export const REGISTER_MODEL: SequentialModel<Register, ChaosOp> = {
  init: null,
  step: registerStep,
  key: (s) => s === null ? '-' : `${s.gen}:${s.value}`,
  call: (op) => op.call,
  ret: (op) => op.out === null ? null : op.ret
}

/** Ops that returned NotFound for a register whose create had been acknowledged before the op
 * was called (the registers are never deleted): each is a lost or unseen acknowledged write. */
export function staleNotFound (ops: readonly ChaosOp[]): ChaosOp[] {
  const created = new Map<string, number>()
  for (const op of ops) {
    if (op.kind === 'create' && op.out?.ok === true && op.ret !== null) {
      created.set(op.reg, Math.min(created.get(op.reg) ?? Infinity, op.ret))
    }
  }
  return ops.filter((op) => op.out?.ok === false && op.out.error === 'NotFound' && op.call > (created.get(op.reg) ?? Infinity))
}
