// One idempotency key per CLI invocation: every mutating call carries it, and the CLI's own
// retries reuse it, so a write the cluster already applied is not applied again. An answer
// the CLI cannot make definite is reported as Indeterminate with the key to run again with.
import { BlixardError } from '../../protocols/errors.ts'
import { randomUUID } from 'node:crypto'
import type { IdempotentParams, ParamsOf, ResultOf, UnaryMethodName } from '../../protocols/rpc.ts'
import type { RpcClient } from '../net/rpc.ts'
import { flag, UsageError } from './args.ts'
import type { Parsed } from './args.ts'

/** Attempts of one mutating call (all under the same key) before the CLI gives up. */
export const CLI_WRITE_ATTEMPTS = 3
/** Pause before the CLI's second attempt; doubled for each later one. */
const CLI_RETRY_BASE_MS = 500
/** As the RPC validator: keys longer than this are refused. */
const MAX_KEY_LENGTH = 128

/** Methods the CLI does not retry itself (their first answer is returned as it is): none today.
 * (volume.create was one while it did Ceph I/O on the receiving node; it is now a Raft write like
 * the others, its image made by the volume reconciler: node/volumes/.) */
const NO_RETRY: ReadonlySet<string> = new Set([])

/** Kinds after which the same call, under the same key, may still succeed. */
const RETRYABLE = new Set(['NotLeader', 'Unavailable', 'Timeout', 'InFlight', 'Indeterminate'])

/** The key of this invocation: --idempotency-key KEY (to resolve an earlier Indeterminate
 * answer), else a fresh one. */
export function invocationKey (p: Parsed): string {
  const k = flag(p, 'idempotency-key')
  if (k == null) return randomUUID()
  if (k.length === 0 || k.length > MAX_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(k)) throw new UsageError(`--idempotency-key must be 1..${MAX_KEY_LENGTH} printable characters without spaces`)
  return k
}

type MutatingMethod = { [M in UnaryMethodName]: ParamsOf<M> extends IdempotentParams ? (IdempotentParams extends ParamsOf<M> ? never : M) : never }[UnaryMethodName]

/**
 * Calls a mutating method under `key`, retrying (same key) what may still succeed. The answer is
 * the server's: definite success, a definite error, or Indeterminate naming the key. A Timeout
 * seen by the CLI may come after the call reached the cluster, so it is Indeterminate too.
 */
export async function mutate<M extends MutatingMethod> (client: RpcClient, key: string, method: M, params: Omit<ParamsOf<M>, 'idempotencyKey'>, sleep = async (ms: number) => await new Promise((resolve) => setTimeout(resolve, ms))): Promise<ResultOf<M>> {
  let last: unknown = null
  const attempts = NO_RETRY.has(method) ? 1 : CLI_WRITE_ATTEMPTS
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0) await sleep(CLI_RETRY_BASE_MS * 2 ** (attempt - 1))
    try {
      return await client.call(method, { ...params, idempotencyKey: key } as unknown as ParamsOf<M>)
    } catch (err) {
      last = err
      if (!(err instanceof BlixardError) || !RETRYABLE.has(err.kind)) throw err
    }
  }
  const e = last as BlixardError
  if (e.kind === 'Indeterminate' || e.kind === 'InFlight' || e.kind === 'Timeout') {
    throw new BlixardError(e.kind === 'InFlight' ? 'InFlight' : 'Indeterminate', `${e.message} (idempotency key ${key}; run the command again with --idempotency-key ${key})`, undefined, key)
  }
  throw e
}
