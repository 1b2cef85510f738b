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

/** An entry's bytes → their decoded, validated envelope, for the entries decoded more than once
 * in this process: a leader decodes what it proposes (the check below raft-node's propose) and a
 * follower what it receives (the admission check of node/core/raft-ingress.ts), and both decode
 * the same entry again when it applies. Keyed by the byte array itself, which the Raft core hands
 * from the proposal or the message to the committed entry unchanged; an entry read back from the
 * log store is a new array and simply decodes again. Exact because decoding is a pure function of
 * the bytes and an entry's bytes are never written after it exists (callers must not pass a
 * buffer they reuse). Only valid envelopes are kept; the envelope is shared, so nobody may
 * modify it (nobody does: commands are built fresh, never edited after decoding). Weak: an entry
 * gone from memory takes its envelope with it. */
const decoded = new WeakMap<Uint8Array, { ok: true, env: CommandEnvelope }>()
let decodes = 0

/** How many envelopes this process has actually decoded, memo hits not counted (tests). */
export function envelopeDecodes (): number { return decodes }

/** Decode and validate; never throws. */
export function tryDecodeEnvelope (data: Uint8Array): { ok: true, env: CommandEnvelope } | { ok: false, error: BlixError } {
  const hit = decoded.get(data)
  if (hit !== undefined) return hit
  decodes++
  const r = decodeAndValidate(data)
  if (r.ok) decoded.set(data, r)
  return r
}

function decodeAndValidate (data: Uint8Array): { ok: true, env: CommandEnvelope } | { ok: false, error: BlixError } {
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
