// The client history: every operation a simulated client made, with when it
// was called, when (if ever) it returned and what it saw. Checkers read it.
import type { ErrorKind } from '../protocols/commands.ts'
import type { VmDesiredState } from '../protocols/model.ts'

/** The part of a VM the clients write and read (assignment and status belong to the scheduler). */
export interface VmView {
  vcpus: number
  memoryMiB: number
  desired: VmDesiredState
}

export type OpKind = 'create' | 'update' | 'desire' | 'delete' | 'read' | 'stale-read'

export interface OpInput {
  vcpus?: number
  memoryMiB?: number
  desired?: VmDesiredState
}

export type OpOutput =
  | { ok: true, view: VmView | null }
  | { ok: false, error: ErrorKind }

export interface Op {
  id: number
  client: string
  kind: OpKind
  vm: string
  input: OpInput
  /** virtual ms */
  call: number
  /** null while pending or when the client gave up: the outcome is unknown */
  ret: number | null
  output: OpOutput | null
  /** idempotency key of a write, kept across retries */
  key: string | null
  /** for a write that returned: the log index and entry data it was applied as */
  index: number | null
  data: Uint8Array | null
  /** who answered, and (stale reads) that replica's incarnation and applied index */
  node: string | null
  incarnation: number | null
  applied: number | null
  attempts: number
}

export class History {
  readonly ops: Op[] = []

  begin (client: string, kind: OpKind, vm: string, input: OpInput, call: number, key: string | null): Op {
    const op: Op = {
      id: this.ops.length, client, kind, vm, input, call, ret: null, output: null, key,
      index: null, data: null, node: null, incarnation: null, applied: null, attempts: 0
    }
    this.ops.push(op)
    return op
  }

  isWrite (op: Op): boolean {
    return op.kind !== 'read' && op.kind !== 'stale-read'
  }
}

export function viewString (v: VmView | null): string {
  return v === null ? 'none' : `${v.vcpus}c/${v.memoryMiB}M/${v.desired}`
}
