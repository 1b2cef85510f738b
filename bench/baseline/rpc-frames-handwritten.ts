// The hand-written RPC frame validators that the schema declarations in protocols/rpc.ts
// replaced, as they were, kept only as bench:schema's baseline.
import type { BlixError, ErrorKind } from '../../protocols/commands.ts'
import { COMMAND_LIMITS } from '../../protocols/command-schema.ts'
import { ERROR_KINDS } from '../../protocols/errors.ts'
import { MAX_NODE_ID_LENGTH } from '../../protocols/limits.ts'
import { MAX_METHOD_LENGTH } from '../../protocols/rpc.ts'
import type { RpcCancel, RpcRequest, RpcResponse } from '../../protocols/rpc.ts'
import { bad, bool, int, obj, opt, str } from './validate-handwritten.ts'

const MAX_ID = 2 ** 48

/** A client frame: a request or a cancel. Malformed envelopes are a protocol violation
 * (BadMessage: the stream is reset); malformed params are answered (InvalidParams). */
export function validateClientFrame (x: unknown): RpcRequest | RpcCancel {
  const o = obj(x, 'request', ['id', 'method', 'params', 'cancel'], ['id'])
  const id = int(o.id, 'request.id', 0, MAX_ID)
  if (o.cancel !== undefined) {
    if (o.cancel !== true || o.method !== undefined || o.params !== undefined) bad('request', 'a cancel carries only id and cancel: true')
    return { id, cancel: true }
  }
  const method = str(o.method, 'request.method', MAX_METHOD_LENGTH, 1)
  return o.params === undefined ? { id, method } : { id, method, params: o.params }
}

/** A server frame as the client sees it. */
export function validateServerFrame (x: unknown): RpcResponse {
  const o = obj(x, 'response', ['id', 'ok', 'result', 'more', 'error'], ['id', 'ok'])
  const id = int(o.id, 'response.id', 0, MAX_ID)
  if (bool(o.ok, 'response.ok')) {
    if (o.error !== undefined) bad('response', 'ok response with an error')
    if (o.more !== undefined && o.more !== true) bad('response.more', 'must be true when present')
    return o.more === true ? { id, ok: true, result: o.result, more: true } : { id, ok: true, result: o.result }
  }
  const e = obj(o.error, 'response.error', ['kind', 'message', 'leader', 'key'], ['kind', 'message'])
  const kind = str(e.kind, 'response.error.kind', 32, 1)
  const error: BlixError = {
    // a kind this client does not know (a newer server) is still an error: keep it as Internal
    kind: (ERROR_KINDS as readonly string[]).includes(kind) ? kind as ErrorKind : 'Internal',
    message: str(e.message, 'response.error.message', 4096)
  }
  const leader = opt(e, 'leader', (v, p) => str(v, p, MAX_NODE_ID_LENGTH), 'response.error')
  if (leader !== undefined) error.leader = leader
  const key = opt(e, 'key', (v, p) => str(v, p, COMMAND_LIMITS.maxIdempotencyKeyLength, 1), 'response.error')
  if (key !== undefined) error.key = key
  return { id, ok: false, error }
}
