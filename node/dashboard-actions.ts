// The dashboard's actions (start, stop, migrate, drain, undrain) over HTTP. The page signs each
// command itself with a WebCrypto Ed25519 key it made non-extractable (node/dashboard-signing.ts),
// whose peer id an admin adds with `blixard admin add`: authority travels with the command, as from
// the CLI, and this node only relays it (cluster.prepare, then cluster.submit, in-process). No HTTP
// request acts as anyone: one without a signature by a current admin is refused here, before
// anything is proposed, and would be refused again by the leader and on apply.
//
// Off unless the node's config says `dashboardActions = true`. On top of the signature, a POST must
// come from the dashboard's own page (CSRF: a same-origin Origin, no cross-site Sec-Fetch-Site, a
// JSON body — which a cross-site form cannot send and a cross-site fetch cannot without a preflight
// this server never grants), and the Host check of every request (node/http.ts) still applies.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { BlixardError, toBlixError } from '../protocols/errors.ts'
import type { ErrorKind } from '../protocols/errors.ts'
import { checkParams } from '../protocols/rpc.ts'
import { validateCommand } from '../protocols/command-schema.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RpcCallContext, RpcHandlers } from './net/rpc.ts'

/** The admin writes the dashboard offers; any other method is refused before a handler runs. */
export const DASHBOARD_ACTIONS: readonly string[] = ['vm.start', 'vm.stop', 'vm.migrate', 'node.drain', 'node.undrain']

/** A prepare or submit is well under 2 KiB; a larger body is refused without being held. */
export const MAX_ACTION_BODY_BYTES = 16 * 1024

/** How long one action may take before the page is told it timed out (a write waits for Raft). */
const ACTION_TIMEOUT_MS = 30_000

export interface ActionDeps {
  enabled: boolean
  api: RpcHandlers
  sm: StateMachine
}

const STATUS: Partial<Record<ErrorKind, number>> = {
  Unauthorized: 403, NotFound: 404, InvalidParams: 400, BadMessage: 400, InvalidCommand: 400, UnknownMethod: 400, TooLarge: 413,
  Conflict: 409, NoCapacity: 409, InUse: 409, AlreadyExists: 409, GenerationMismatch: 409, NotLeader: 503, Unavailable: 503, Timeout: 504
}

function answer (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
}

function refuse (res: ServerResponse, e: unknown): void {
  const err = toBlixError(e)
  answer(res, STATUS[err.kind] ?? 500, { error: { kind: err.kind, message: err.message } })
}

/** Why a POST is not the dashboard page's own request (CSRF), or null. */
export function crossSiteRefusal (headers: IncomingMessage['headers']): string | null {
  const type = (headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (type !== 'application/json') return `an action is a JSON body (content-type application/json), got ${JSON.stringify(type)}`
  const origin = headers.origin
  if (origin == null) return 'an action must carry the Origin header its page sends'
  let host: string
  try { host = new URL(origin).host } catch { return 'malformed Origin' }
  if (host.toLowerCase() !== (headers.host ?? '').toLowerCase()) return `origin ${JSON.stringify(origin)} is not this dashboard's own`
  const site = headers['sec-fetch-site']
  if (site != null && site !== 'same-origin') return `a ${String(site)} request cannot act (Sec-Fetch-Site)`
  return null
}

async function readBody (req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_ACTION_BODY_BYTES) throw new BlixardError('TooLarge', `an action's body is at most ${MAX_ACTION_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  try { return JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { throw new BlixardError('BadMessage', 'the body is not JSON') }
}

function record (x: unknown, what: string): Record<string, unknown> {
  if (x == null || typeof x !== 'object' || Array.isArray(x)) throw new BlixardError('InvalidParams', `${what} must be an object`)
  return x as Record<string, unknown>
}

/** POST /api/prepare {method, params} → {cmd, until} (the command to sign, validated: the bytes the
 * nodes verify) or {done} (an idempotency key already applied); POST /api/submit {method, params,
 * cmd, auth: {signer, nonce, until, sig: base64}} → the write's result. */
export async function handleAction (kind: 'prepare' | 'submit', req: IncomingMessage, res: ServerResponse, d: ActionDeps): Promise<void> {
  try {
    if (!d.enabled) throw new BlixardError('Unauthorized', 'dashboard actions are off on this node (read-only): set dashboardActions = true in its config (--dashboard-actions) to offer them')
    const csrf = crossSiteRefusal(req.headers)
    if (csrf != null) throw new BlixardError('Unauthorized', csrf)
    const body = record(await readBody(req), 'the body')
    if (typeof body.method !== 'string' || !DASHBOARD_ACTIONS.includes(body.method)) {
      throw new BlixardError('InvalidParams', `method must be one of ${DASHBOARD_ACTIONS.join(', ')}`)
    }
    const signal = AbortSignal.timeout(ACTION_TIMEOUT_MS)
    // the handlers of these methods read no connection: the authority is the signature
    const ctx = { peer: '', method: `cluster.${kind}`, signal } as unknown as RpcCallContext
    if (kind === 'prepare') {
      const p = checkParams('cluster.prepare', { method: body.method, params: body.params })
      const out = await d.api['cluster.prepare']!(p, ctx)
      if ('done' in out) { answer(res, 200, out); return }
      const v = validateCommand(out.cmd)
      if (!v.ok) throw new BlixardError('Internal', `prepared an invalid command: ${v.error.message}`)
      answer(res, 200, { cmd: v.cmd, until: out.until })
      return
    }
    const auth = record(body.auth, 'auth')
    if (typeof auth.sig !== 'string') throw new BlixardError('InvalidParams', 'auth.sig must be base64')
    const p = checkParams('cluster.submit', { method: body.method, params: body.params, cmd: body.cmd, auth: { ...auth, sig: new Uint8Array(Buffer.from(auth.sig, 'base64')) } })
    // refused here, before anything is proposed, unless a current admin signed this very command
    // (the same pure check the leader and every replica make again)
    const why = d.sm.authorityError({ cmd: p.cmd, at: Date.now(), key: p.auth.nonce, auth: p.auth })
    if (why != null) throw new BlixardError('Unauthorized', why)
    answer(res, 200, { result: await d.api['cluster.submit']!(p, ctx) })
  } catch (e) { refuse(res, e) }
}
