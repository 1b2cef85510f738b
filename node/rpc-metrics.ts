// RPC metrics recorded around the handlers (the RPC server in node/net/ stays
// free of Prometheus): requests by method and error kind ('none' = success),
// latency by method for unary calls, and refusals by the admin check, which
// happen before a handler runs.
import { METHODS, isMethod } from '../protocols/rpc.ts'
import type { MethodName } from '../protocols/rpc.ts'
import type { RpcHandlers } from './net/rpc.ts'
import type { NodeMetrics } from './metrics.ts'
import { toBlixError } from '../protocols/errors.ts'

type AnyHandler = (params: unknown, ctx: unknown) => unknown

export function instrumentHandlers (handlers: RpcHandlers, m: NodeMetrics): RpcHandlers {
  const out: Record<string, AnyHandler> = {}
  for (const [method, h] of Object.entries(handlers) as Array<[MethodName, AnyHandler | undefined]>) {
    if (h == null) continue
    out[method] = METHODS[method].streaming ? streaming(method, h, m) : unary(method, h, m)
  }
  return out as RpcHandlers
}

/** Wraps an authorize check so that refusals are counted as Unauthorized requests. */
export function instrumentAuthorize (authorize: (peer: string, method: MethodName) => boolean, m: NodeMetrics): (peer: string, method: MethodName) => boolean {
  return (peer, method) => {
    const ok = authorize(peer, method)
    if (!ok) m.rpcRequests.inc({ method, error: 'Unauthorized' })
    return ok
  }
}

/** A signed admin write (cluster.submit) counts under the method it performs, e.g. vm.create. */
function labelOf (method: MethodName, params: unknown): MethodName {
  if (method !== 'cluster.submit') return method
  const inner = (params as { method?: unknown } | null)?.method
  return typeof inner === 'string' && isMethod(inner) ? inner : method
}

function unary (outer: MethodName, h: AnyHandler, m: NodeMetrics): AnyHandler {
  return async (params, ctx) => {
    const method = labelOf(outer, params)
    const t0 = process.hrtime.bigint()
    let error = 'none'
    try {
      return await h(params, ctx)
    } catch (err) {
      error = toBlixError(err).kind
      throw err
    } finally {
      m.rpcRequests.inc({ method, error })
      m.rpcSeconds.observe({ method }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
  }
}

/** A stream counts once, when it ends: by the error that ended it, or 'none'. Its lifetime is not a latency. */
function streaming (method: MethodName, h: AnyHandler, m: NodeMetrics): AnyHandler {
  return (params, ctx) => (async function * () {
    let error = 'none'
    try {
      yield * (h(params, ctx) as AsyncIterable<unknown>)
    } catch (err) {
      error = toBlixError(err).kind
      throw err
    } finally {
      m.rpcRequests.inc({ method, error })
    }
  })()
}
