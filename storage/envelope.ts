// The bytes of a Raft entry that carries a command: a CBOR CommandEnvelope.
import type { BlixError, CommandEnvelope } from '../protocols/commands.ts'
import { COMMAND_LIMITS, validateEnvelope } from '../protocols/command-schema.ts'
import { BlixardError } from '../protocols/errors.ts'
import { decodeCbor, encodeCbor } from './codec.ts'

export function encodeEnvelope (env: CommandEnvelope): Uint8Array {
  const out: { cmd: CommandEnvelope['cmd'], at: number, key?: string, auth?: CommandEnvelope['auth'] } = { cmd: env.cmd, at: env.at }
  if (env.key !== undefined) out.key = env.key
  if (env.auth !== undefined) out.auth = env.auth
  return encodeCbor(out)
}

/** Decode and validate; never throws. */
export function tryDecodeEnvelope (data: Uint8Array): { ok: true, env: CommandEnvelope } | { ok: false, error: BlixError } {
  if (data.byteLength > COMMAND_LIMITS.maxCommandBytes) {
    return { ok: false, error: { kind: 'TooLarge', message: `command of ${data.byteLength} bytes exceeds ${COMMAND_LIMITS.maxCommandBytes}` } }
  }
  let raw: unknown
  try {
    raw = decodeCbor(data)
  } catch (e) {
    return { ok: false, error: { kind: 'BadMessage', message: `undecodable command: ${e instanceof Error ? e.message : 'bad CBOR'}` } }
  }
  const v = validateEnvelope(raw)
  return v.ok ? { ok: true, env: v.cmd } : v
}

/** Decode and validate; throws a BlixardError (BadMessage, TooLarge, InvalidCommand, InvalidSpec). */
export function decodeEnvelope (data: Uint8Array): CommandEnvelope {
  const r = tryDecodeEnvelope(data)
  if (!r.ok) throw BlixardError.from(r.error)
  return r.env
}

/** The idempotency key of an envelope that failed validation, if it has a usable one: its
 * rejection is remembered under that key like any other result. */
export function keyOfInvalid (data: Uint8Array): string | undefined {
  if (data.byteLength > COMMAND_LIMITS.maxCommandBytes) return undefined
  try {
    const raw = decodeCbor(data) as { key?: unknown } | null
    const key = raw != null && typeof raw === 'object' ? raw.key : undefined
    return typeof key === 'string' && key.length <= COMMAND_LIMITS.maxIdempotencyKeyLength ? key : undefined
  } catch {
    return undefined
  }
}
