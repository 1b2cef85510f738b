// Stale (local) reads: not linearizable by design, but each must show a state
// the VM really had in the committed sequence, at the index the replica had
// applied, and one replica's answers never go back in time within one life.
import type { Entry } from '../../protocols/raft/types.ts'
import { decodeCbor } from '../../storage/codec.ts'
import type { CommandEnvelope } from '../../protocols/commands.ts'
import type { VmView } from '../history.ts'
import { viewString } from '../history.ts'
import type { Replica } from '../replica.ts'
import { viewOf } from '../replica.ts'
import { BaseChecker } from './checker.ts'
import type { FinalView } from './checker.ts'

function vmOf (data: Uint8Array): string | null {
  if (data.byteLength === 0) return null
  const cmd = (decodeCbor(data) as CommandEnvelope).cmd
  switch (cmd.type) {
    case 'CreateVm': case 'UpdateVmSpec': case 'SetVmDesiredState': case 'DeleteVm': case 'AssignVm':
      return cmd.id
    default:
      return null
  }
}

export class StaleReads extends BaseChecker {
  readonly name = 'stale-reads'
  /** index -> the VM its entry touched and that VM's view right after (from the first replica to apply it) */
  private readonly refs: Array<{ vm: string | null, view: VmView | null } | undefined> = []

  onApply = (r: Replica, e: Entry): void => {
    if (this.refs[e.index] !== undefined || r.sm === null) return
    const vm = e.type === 'normal' ? vmOf(e.data) : null
    this.refs[e.index] = { vm, view: vm === null ? null : viewOf(r.sm, vm) }
  }

  finish = (v: FinalView): void => {
    const perVm = new Map<string, Array<{ index: number, view: VmView | null }>>()
    this.refs.forEach((ref, index) => {
      if (ref === undefined || ref.vm === null) return
      let list = perVm.get(ref.vm)
      if (list === undefined) { list = []; perVm.set(ref.vm, list) }
      list.push({ index, view: ref.view })
    })
    // Monotonic per replica life, as clients can observe it: a read called after another read on the
    // same replica had returned sees at least what that one saw.
    const reads = v.history.ops.filter(op => op.kind === 'stale-read' && op.output !== null && op.output.ok && op.applied !== null)
    const byRet = [...reads].sort((a, b) => (a.ret as number) - (b.ret as number) || a.id - b.id)
    const byCall = [...reads].sort((a, b) => a.call - b.call || a.id - b.id)
    const seen = new Map<string, { applied: number, op: number }>()
    let j = 0
    for (const op of byCall) {
      while (j < byRet.length && (byRet[j].ret as number) < op.call) {
        const done = byRet[j++]
        const life = `${done.node ?? '?'}/${done.incarnation ?? -1}`
        const prev = seen.get(life)
        if (prev === undefined || (done.applied as number) > prev.applied) seen.set(life, { applied: done.applied as number, op: done.id })
      }
      const life = `${op.node ?? '?'}/${op.incarnation ?? -1}`
      const before = seen.get(life)
      if (before !== undefined && (op.applied as number) < before.applied) {
        this.fail(v.now, `${op.client}#${op.id} stale read on ${life} saw applied ${op.applied ?? -1} after #${before.op} had returned applied ${before.applied}`)
      }
    }
    for (const op of reads) {
      if (op.output === null || !op.output.ok || op.applied === null) continue
      const life = `${op.node ?? '?'}/${op.incarnation ?? -1}`
      const list = perVm.get(op.vm) ?? []
      let expect: VmView | null = null
      for (let lo = 0, hi = list.length - 1; lo <= hi;) {
        const mid = (lo + hi) >> 1
        if (list[mid].index <= op.applied) { expect = list[mid].view; lo = mid + 1 } else hi = mid - 1
      }
      const got = op.output.view
      if (viewString(got) !== viewString(expect)) {
        this.fail(v.now, `${op.client}#${op.id} stale read of ${op.vm} on ${life} at applied ${op.applied} saw ${viewString(got)}, the committed state there is ${viewString(expect)}`)
      }
    }
  }
}
