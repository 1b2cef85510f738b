// A live move's console hand-over: at the switchover the target asks the source for what the guest
// printed before (internal.consoleHistory), stores it beside its own console log, and `vm logs`
// of the moved VM reads both as one console. The source answers only the target recorded for the
// VM's migration in flight, once it switched over (the history is complete: the source's guest is
// paused for good: a target whose replica saw the switchover first asks again until the source's
// has); any other peer, member or not, is refused. The text is bounded on both sides
// (MAX_CONSOLE_HISTORY_BYTES), and travels in pieces under the RPC frame limit.
import { StringDecoder } from 'node:string_decoder'
import { BlixardError } from '../../protocols/errors.ts'
import { CONSOLE_PIECE_UNITS, MAX_CONSOLE_HISTORY_BYTES } from '../../protocols/limits.ts'
import type { MigrationRecord } from '../../protocols/migration-phases.ts'
import type { VmRecord } from '../../protocols/model.ts'
import type { ParamsOf } from '../../protocols/rpc.ts'
import { activeMigration } from '../../storage/migration-guard.ts'
import type { RpcClient } from '../net/rpc.ts'
import type { QemuDriver } from '../qemu/driver.ts'
import { textPieces } from '../qemu/console-log.ts'

/** How long the target waits for the whole history before it goes on without it. */
export const CONSOLE_HISTORY_PULL_MS = 15_000

/** Why `peer` may not read VM `vm`'s console history from this node (`self`), or null. */
export function consoleHistoryRefusal (vm: VmRecord | null, self: string, peer: string, started: number): BlixardError | null {
  if (vm == null) return new BlixardError('NotFound', 'no such VM')
  const m = activeMigration(vm)
  if (m == null || m.started !== started) return new BlixardError('Conflict', `VM ${vm.spec.name} has no live migration started at ${started} in flight`)
  if (m.source !== self) return new BlixardError('Conflict', `this node is not the source of VM ${vm.spec.name}'s migration`)
  if (m.target !== peer) return new BlixardError('Unauthorized', `${peer} is not the target of VM ${vm.spec.name}'s migration: only its target reads the console history`)
  if (m.phase !== 'switched') return new BlixardError('Conflict', `VM ${vm.spec.name}'s migration is ${m.phase}: the console history is handed over once it switched over`)
  return null
}

export interface ConsoleHistoryServeDeps {
  self: () => string
  getVm: (id: string) => VmRecord | null
  driver: Pick<QemuDriver, 'consoleHistory'>
}

/** The source's answer to internal.consoleHistory from `peer` (the stream's, authenticated by Noise). */
export async function * serveConsoleHistory (d: ConsoleHistoryServeDeps, peer: string, p: ParamsOf<'internal.consoleHistory'>): AsyncGenerator<{ text: string }> {
  const why = consoleHistoryRefusal(d.getVm(p.vm), d.self(), peer, p.started)
  if (why != null) throw why
  const bytes = await d.driver.consoleHistory(p.vm, MAX_CONSOLE_HISTORY_BYTES)
  // a tail may start inside a UTF-8 sequence: the decoder drops nothing it can decode
  for (const text of textPieces(new StringDecoder('utf8').write(bytes), CONSOLE_PIECE_UNITS)) yield { text }
}

/** The target's side: the history from the move's source, refused past MAX_CONSOLE_HISTORY_BYTES
 * (a source that sends more is not following the protocol) or after `timeoutMs`. */
export async function pullConsoleHistory (source: RpcClient, m: Pick<MigrationRecord, 'vm' | 'started'>, timeoutMs = CONSOLE_HISTORY_PULL_MS): Promise<string> {
  const sub = source.watch('internal.consoleHistory', { vm: m.vm, started: m.started })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; sub.cancel() }, timeoutMs)
  let text = ''
  let bytes = 0
  try {
    for await (const piece of sub) {
      bytes += Buffer.byteLength(piece.text)
      if (bytes > MAX_CONSOLE_HISTORY_BYTES) throw new BlixardError('TooLarge', `the source sent more than ${MAX_CONSOLE_HISTORY_BYTES} bytes of console history`)
      text += piece.text
    }
  } finally {
    clearTimeout(timer)
    sub.cancel()
  }
  // a cancelled subscription ends quietly: an end that did not come in time is no history
  if (timedOut) throw new BlixardError('Timeout', `no whole console history from the source within ${timeoutMs} ms`)
  return text
}
