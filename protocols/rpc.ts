// The RPC protocol `/blixard/rpc/1`: envelopes, error kinds and the method table. Every method
// has a params validator that runs on the server before the handler sees anything, so handlers
// get typed, bounded values. Responses to a streaming method (`vm.watch`) are a series of
// `{ id, ok: true, result, more: true }` ended by one final response without `more`.
import type { ApplyResult, BlixError, CommandEnvelope, ErrorKind } from './commands.ts'
import type { AdminRecord, NodeRecord, VmRecord, VmSpec } from './model.ts'
import { COMMAND_LIMITS, commandAuth, validateCommand, validateEnvelope, validateVmSpec } from './command-schema.ts'
import type { Command } from './commands.ts'
import type { CommandAuth } from './auth.ts'
import { isEd25519PeerId } from './auth.ts'
import { BlixardError, ERROR_KINDS, isWireError } from './errors.ts'
import type { LoadReport } from './load.ts'
import type { Infer, Schema } from './schema.ts'
import { compile, s } from './schema.ts'
import { JOIN_POLICIES } from './commands.ts'
import { MAX_CONSOLE_INPUT_BYTES, MAX_FORWARD_BATCH, MAX_NODE_ID_LENGTH } from './limits.ts'
import { RESOURCE_METHODS } from './rpc-resources.ts'
import type { ResourceMethods } from './rpc-resources.ts'
import { SCHED_METHODS } from './rpc-sched.ts'
import type { SchedMethods } from './rpc-sched.ts'
import { SNAPSHOT_METHODS } from './rpc-snapshots.ts'
import type { SnapshotMethods } from './rpc-snapshots.ts'
import { POOL_METHODS } from './rpc-pools.ts'
import type { PoolMethods } from './rpc-pools.ts'

export const RPC_PROTOCOL = '/blixard/rpc/1'

/** Every client-facing mutating method takes an optional idempotency key, in this one field
 * next to its params. The node puts it in the Raft envelope (CommandEnvelope.key): a retried
 * call with the same key is applied at most once and answers with the first attempt's result.
 * Without one the node draws a key per call (its own internal retries then reuse it). */
export interface IdempotentParams { idempotencyKey?: string }

/** The RPC param holding the idempotency key. */
export const IDEMPOTENCY_PARAM = 'idempotencyKey'

/** @deprecated the one error type is BlixardError (protocols/errors.ts); this alias remains for
 * files other branches are editing and goes once they are merged. */

// ---- envelopes ----

export interface RpcRequest { id: number, method: string, params?: unknown }
/** Ends a streaming call early (the client stopped watching). */
export interface RpcCancel { id: number, cancel: true }
export type RpcResponse =
  | { id: number, ok: true, result: unknown, more?: true }
  | { id: number, ok: false, error: BlixError }

export const MAX_METHOD_LENGTH = 64
const MAX_ID = 2 ** 48

const frameId = s.int(0, MAX_ID)
/** any value: a method's params are checked by its own schema (checkParams), a result by its caller */
const opaque = s.custom((x): unknown => x)

/** A client frame: a request or a cancel. Malformed envelopes are a protocol violation
 * (BadMessage: the stream is reset); malformed params are answered (InvalidParams). */
const CLIENT_FRAME = s.refine(s.obj({ id: frameId }, { method: s.str(MAX_METHOD_LENGTH, { min: 1 }), params: opaque, cancel: s.true() }), (v) =>
  v.cancel === true
    ? v.method !== undefined || v.params !== undefined ? { kind: 'BadMessage', message: (p) => `${p}: a cancel carries only id and cancel: true` } : undefined
    : v.method === undefined ? { kind: 'BadMessage', message: (p) => `${p}: missing field 'method'` } : undefined)
const checkClientFrame = compile(CLIENT_FRAME, 'request', 'request.', 'wire')

export function validateClientFrame (x: unknown): RpcRequest | RpcCancel {
  // the checker's output is already one of the two (the refine above), fields absent when absent:
  // a second copy into the union's shapes cost ~0.3 µs a frame
  return checkClientFrame(x) as RpcRequest | RpcCancel
}

const RPC_ERROR = s.obj({ kind: s.str(32, { min: 1 }), message: s.str(4096) }, {
  leader: s.str(MAX_NODE_ID_LENGTH),
  key: s.str(COMMAND_LIMITS.maxIdempotencyKeyLength, { min: 1 })
})

/** A server frame as the client sees it. */
const SERVER_FRAME = s.refine(s.obj({ id: frameId, ok: s.bool() }, { result: opaque, more: s.true(), error: RPC_ERROR }), (v) =>
  v.ok
    ? v.error !== undefined ? { kind: 'BadMessage', message: (p) => `${p}: ok response with an error` } : undefined
    : v.error === undefined ? { kind: 'BadMessage', message: (p) => `${p}: missing field 'error'` } : undefined)
const checkServerFrame = compile(SERVER_FRAME, 'response', 'response.', 'wire')

export function validateServerFrame (x: unknown): RpcResponse {
  const f = checkServerFrame(x)
  if (f.ok) return f.more === true ? { id: f.id, ok: true, result: f.result, more: true } : { id: f.id, ok: true, result: f.result }
  const e = f.error as Infer<typeof RPC_ERROR>
  // a kind this client does not know (a newer server) is still an error: keep it as Internal
  const error: BlixError = { ...e, kind: (ERROR_KINDS as readonly string[]).includes(e.kind) ? e.kind as ErrorKind : 'Internal' }
  return { id: f.id, ok: false, error }
}

// ---- methods ----

/** Reads accept `stale: true` for a local, possibly stale answer instead of a ReadIndex read. */
export interface ReadParams { stale?: boolean }

export interface ClusterStatus {
  id: string
  leader: string | null
  term: number
  commit: number
  applied: number
  voters: string[]
  learners: string[]
  /** while a joint change is in flight: the old voter set (a quorum of both decides) and the
   * learners that the leave step will add; null when the configuration is simple */
  joint: { votersOutgoing: string[], learnersNext: string[] } | null
}

/** A change seen by `vm.watch`: the VM after the change, or its id once deleted. */
export type VmWatchEvent =
  | { type: 'put', vm: VmRecord }
  | { type: 'delete', id: string }

export interface RpcMethods extends ResourceMethods, SchedMethods, SnapshotMethods, PoolMethods {
  'cluster.status': { params: P<'cluster.status'>, result: ClusterStatus }
  'node.list': { params: P<'node.list'>, result: NodeRecord[] }
  'node.show': { params: P<'node.show'>, result: NodeRecord }
  'node.drain': { params: P<'node.drain'> & IdempotentParams, result: NodeRecord }
  'node.undrain': { params: P<'node.undrain'> & IdempotentParams, result: NodeRecord }
  'vm.create': { params: P<'vm.create'> & IdempotentParams, result: VmRecord }
  'vm.list': { params: P<'vm.list'>, result: VmRecord[] }
  'vm.show': { params: P<'vm.show'>, result: VmRecord }
  'vm.start': { params: P<'vm.start'> & IdempotentParams, result: VmRecord }
  'vm.stop': { params: P<'vm.stop'> & IdempotentParams, result: VmRecord }
  /** starts a live migration of a running VM (to `to`, else where placement puts it), or with
   * `cancel` cancels the one in flight; answers with the VM, its migration record on it */
  /** mode: live (default; refused with the reason when the VM cannot move live) or cold (stopped here, booted there) */
  'vm.migrate': { params: P<'vm.migrate'> & IdempotentParams, result: VmRecord }
  'vm.delete': { params: P<'vm.delete'> & IdempotentParams, result: { id: string } }
  /** replaces a VM's spec (a new generation): its host restarts the guest with it */
  /** ifGeneration: only if the VM is still at that generation (else Conflict) */
  'vm.update': { params: P<'vm.update'> & IdempotentParams, result: VmRecord }
  'vm.watch': { params: P<'vm.watch'>, result: VmWatchEvent }
  /** a VM's serial console: what is logged so far (or its last tailBytes), then with follow what comes
   * next, also across a live move; `history: false` leaves out what the guest printed before a live
   * move to its host (a follow that continues on the new host has that already) */
  'vm.logs': { params: P<'vm.logs'>, result: { text: string } }
  /** type into a VM's serial console (admin only: it is a root shell on most guests); `data` is
   * base64, at most MAX_CONSOLE_INPUT_BYTES once decoded. Only the node the VM is on takes it,
   * from the admin's own connection: no node relays it, since a relay would have to trust the
   * relaying member's word that an admin asked (a key holder is a host, not an admin) */
  'vm.consoleInput': { params: P<'vm.consoleInput'>, result: { bytes: number, node: string } }
  /** a live stream of cluster events: one line per applied command */
  'cluster.events': { params: P<'cluster.events'>, result: ClusterEvent }
  'admin.add': { params: P<'admin.add'> & IdempotentParams, result: AdminRecord }
  'admin.remove': { params: P<'admin.remove'> & IdempotentParams, result: { peerId: string } }
  'admin.list': { params: P<'admin.list'>, result: AdminRecord[] }
  /** join policy "approve": let this peer id join as a host */
  'node.approve': { params: P<'node.approve'>, result: { peerId: string, approvedAt: number } }
  'cluster.joinPolicy': { params: P<'cluster.joinPolicy'>, result: { policy: 'open' | 'approve' } }
  'vm.explain': { params: P<'vm.explain'>, result: VmExplanation }
  /** the gossiped load reports this node holds, aged on its clock */
  'node.load': { params: P<'node.load'>, result: Array<LoadReport & { ageMs: number, stale: boolean }> }
  /** a fresh node's question during cluster formation (node/bootstrap.ts) */
  'cluster.hello': { params: P<'cluster.hello'>, result: ClusterHello }
  /** a fresh node with the key asks to be added as a learner; its addresses let the leader reach it */
  'cluster.join': { params: P<'cluster.join'>, result: { leader: string } }
  /** member to leader: add this joiner as a learner */
  'internal.admit': { params: P<'internal.admit'>, result: { leader: string } }
  /** member to leader: propose a client's command (writes are forwarded, never bounced) */
  'internal.propose': { params: P<'internal.propose'>, result: ApplyResult }
  /** Admin writes in two steps, so that the admin's own key signs the exact command (protocols/auth.ts):
   * prepare answers the command a mutating `method` would propose and the last index its signature
   * may apply at; submit runs `method` again with that command, signed, in place of the one it builds. */
  /** `done`: the request's idempotency key was already applied; this is its result and there is nothing to sign */
  'cluster.prepare': { params: P<'cluster.prepare'> & { params: unknown }, result: { cmd: Command, until: number } | { done: unknown } }
  'cluster.submit': { params: P<'cluster.submit'> & { params: unknown }, result: unknown }
  /** a follower's forwarded writes, batched: one answer per envelope, in order */
  'internal.proposeMany': { params: P<'internal.proposeMany'>, result: ForwardedResult[] }
  /** member to leader: renew the CALLER's liveness lease (its peer id is the stream's) at `epoch`;
   * answered once the leader's RenewLeases batch holding it committed (node/ha/service.ts) */
  'internal.renewLease': { params: P<'internal.renewLease'>, result: { outcome: 'renewed' | 'rejoined' | 'stale' | 'notFound', epoch: number, seq: number } }
  /** a live migration's target to its source, after the switchover: the console the guest printed
   * before the move (at most MAX_CONSOLE_HISTORY_BYTES, in pieces). Only the target recorded for the
   * VM's migration that `started` then may ask (node/migration/console-history.ts) */
  'internal.consoleHistory': { params: P<'internal.consoleHistory'>, result: { text: string } }
}

/** One forwarded write's outcome: its command's result, or why it was not committed (retry it). */
export type ForwardedResult = { ok: true, result: ApplyResult } | { ok: false, error: BlixError }

export interface ClusterEvent { index: number, at: number, text: string }

export interface ClusterHello { id: string, inCluster: boolean, lowestKnown: string, leader: string | null }

/** `blixard vm explain`: the placement decision with one verdict per node. */
export interface VmExplanation {
  vm: string
  assignedNode: string | null
  /** a VM meant to run but unplaced: why it waits (its status reason: "preempted by VM x ...") */
  waiting?: string | null
  /** a VM that fits nowhere: the preemption the scheduler would make for it, or why none */
  preemption?: { nodeId: string | null, evictions: string[], reason: string } | null
  decision: {
    vmId: string
    nodeId: string | null
    total: number | null
    rejections: Record<string, number> | null
    nodes: Array<{ nodeId: string, feasible: boolean, filter?: string, reason?: string, scores?: { fit: number, affinity: number, domain: number, pressure: number, warm: number, snapshot: number }, total?: number }> | null
  }
}

export type MethodName = keyof RpcMethods
/** Methods answered with a stream of results. */
export type StreamingMethodName = 'vm.watch' | 'vm.logs' | 'cluster.events' | 'internal.consoleHistory'
export type UnaryMethodName = Exclude<MethodName, StreamingMethodName>
export type ParamsOf<M extends MethodName> = RpcMethods[M]['params']
/** For a streaming method, the type of each item. */
export type ResultOf<M extends MethodName> = RpcMethods[M]['result']

export interface MethodSpec<P> {
  /** checks and normalizes params; throws BlixardError('BadMessage') naming the field */
  params: (x: unknown) => P
  /** changes cluster state: only admins may call it */
  mutating: boolean
  /** answers with a stream of results */
  streaming: boolean
}

export type MethodTable = { [M in MethodName]: MethodSpec<ParamsOf<M>> }

// ---- params, declared once (protocols/schema.ts, wire dialect): RpcMethods derives its params
// types from PARAMS and each method's checker is compiled from the same declaration ----

const ID = MAX_NODE_ID_LENGTH
/** vm and node references: an id or a name */
const ref = s.str(ID, { min: 1 })
const stale = { stale: s.bool() }
const counter = s.int(0, Number.MAX_SAFE_INTEGER)
const addrs = s.list(16, s.str(256, { min: 1 }))

/** A VM spec in params: the state machine's checker and words, its kinds kept (InvalidSpec, TooLarge). */
const spec = s.custom((x): VmSpec => {
  try {
    return validateVmSpec(x, 'params.spec')
  } catch (err) {
    if (err instanceof BlixardError) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidSpec', err.message)
    throw err
  }
})

/** An envelope or a command in params: the state machine's checker, its message after the path. */
const envelope = s.custom((x): CommandEnvelope => {
  const v = validateEnvelope(x)
  if (!v.ok) throw new BlixardError(v.error.kind, v.error.message)
  return v.cmd
}, { named: true })
const command = s.custom((x): Command => {
  const v = validateCommand(x)
  if (!v.ok) throw new BlixardError(v.error.kind, v.error.message)
  return v.cmd
}, { named: true })
const auth = s.custom((x): CommandAuth => {
  try { return commandAuth(x, 'params.auth') } catch (e) { throw new BlixardError('InvalidParams', e instanceof BlixardError ? e.message : 'params.auth is malformed') }
})

/** An admin is a key that signs commands: its id must be an Ed25519 libp2p peer id (what
 * `blixard whoami` prints), else nobody could ever sign as it. */
const adminPeerId = s.refine(s.str(ID, { min: 1 }), (v) => isEd25519PeerId(v) ? undefined : {
  kind: 'InvalidParams', message: (p) => `${p} "${v.slice(0, 64)}" is not a libp2p peer id of an Ed25519 key (like 12D3KooW…; \`blixard whoami\` prints yours)`
})

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const consoleData = s.refine(s.str(Math.ceil(MAX_CONSOLE_INPUT_BYTES / 3) * 4, { min: 1 }), (v) =>
  v.length % 4 !== 0 || !BASE64.test(v) ? { kind: 'BadMessage', message: (p) => `${p}: must be base64` } : undefined)

const migrateMode = s.oneOf(['live', 'cold'], { kind: 'InvalidParams', text: (p, x) => `${p} must be "live" or "cold", got ${JSON.stringify(x)}` })

/** Opaque params of the method a prepare or submit names (checked when that method runs). */
const inner = s.custom((x): unknown => x)

export const PARAMS = {
  'cluster.status': s.obj({}, stale),
  'node.list': s.obj({}, stale),
  'node.show': s.obj({ node: ref }, stale),
  'node.drain': s.obj({ node: ref }, { force: s.bool() }),
  'node.undrain': s.obj({ node: ref }),
  'vm.create': s.obj({ spec }, { start: s.bool(), key: s.str(128, { min: 1 }), queue: s.bool() }),
  'vm.list': s.obj({}, { ...stale, node: ref }),
  'vm.show': s.obj({ vm: ref }, stale),
  'vm.start': s.obj({ vm: ref }),
  'vm.stop': s.obj({ vm: ref }),
  'vm.migrate': s.refine(s.obj({ vm: ref }, { to: ref, cancel: s.bool(), mode: migrateMode }), (v) => v.mode !== undefined && v.cancel === true
    ? { kind: 'InvalidParams', message: () => 'params.mode does not go with params.cancel: a cancel stops the live migration in flight' }
    : undefined),
  'vm.delete': s.obj({ vm: ref }),
  'vm.update': s.obj({ vm: ref, spec }, { ifGeneration: counter }),
  'vm.watch': s.obj({}, { vm: ref }),
  'vm.logs': s.obj({ vm: ref }, { follow: s.bool(), tailBytes: s.int(0, 64 * 1024 * 1024), history: s.bool() }),
  'vm.consoleInput': s.obj({ vm: ref, data: consoleData }),
  'cluster.events': s.obj({}, { since: counter, follow: s.bool() }),
  'admin.add': s.obj({ peerId: adminPeerId, name: s.str(128, { min: 1 }) }),
  'admin.remove': s.obj({ peerId: s.str(ID, { min: 1 }) }),
  'admin.list': s.obj({}, stale),
  'node.approve': s.obj({ peerId: adminPeerId }),
  'cluster.joinPolicy': s.obj({ policy: s.oneOf(JOIN_POLICIES, { kind: 'InvalidParams', text: (p) => `${p} must be "open" or "approve"` }) }),
  'vm.explain': s.obj({ vm: ref }, stale),
  'node.load': s.obj({}),
  'cluster.hello': s.obj({}),
  'cluster.join': s.obj({ addrs }),
  'internal.admit': s.obj({ peer: s.str(ID, { min: 1 }), addrs }),
  'internal.propose': s.obj({ env: envelope }),
  'cluster.prepare': s.obj({ method: s.str(64, { min: 1 }) }, { params: inner }),
  'cluster.submit': s.obj({ method: s.str(64, { min: 1 }), cmd: command, auth }, { params: inner }),
  'internal.proposeMany': s.obj({ envs: s.list(MAX_FORWARD_BATCH, envelope) }),
  'internal.renewLease': s.obj({ epoch: counter }),
  'internal.consoleHistory': s.obj({ vm: s.str(ID, { min: 1 }), started: counter })
} as const

/** A method's params as declared in PARAMS. */
type P<M extends keyof typeof PARAMS> = Infer<(typeof PARAMS)[M]>

/** A method's entry: its params checker compiled from PARAMS (absent params are `{}`). */
function method<M extends keyof typeof PARAMS> (m: M, mutating: boolean, streaming: boolean): MethodSpec<P<M>> {
  const check = compile<P<M>>(PARAMS[m] as Schema<P<M>>, 'params', 'params.', 'wire')
  return { mutating, streaming, params: (x) => check(x ?? {}) }
}

/** prepare and submit always hand on the named method's params, `{}` when absent. */
function withInner<T extends { params?: unknown }> (spec: MethodSpec<T>): MethodSpec<T & { params: unknown }> {
  return { ...spec, params: (x) => { const v = spec.params(x); return { ...v, params: v.params ?? {} } } }
}

export const METHODS: MethodTable = {
  ...RESOURCE_METHODS,
  ...SCHED_METHODS,
  ...SNAPSHOT_METHODS,
  ...POOL_METHODS,
  'cluster.status': method('cluster.status', false, false),
  'node.list': method('node.list', false, false),
  'node.show': method('node.show', false, false),
  'node.drain': method('node.drain', true, false),
  'node.undrain': method('node.undrain', true, false),
  'vm.create': method('vm.create', true, false),
  'vm.list': method('vm.list', false, false),
  'vm.show': method('vm.show', false, false),
  'vm.start': method('vm.start', true, false),
  'vm.stop': method('vm.stop', true, false),
  'vm.delete': method('vm.delete', true, false),
  'vm.migrate': method('vm.migrate', true, false),
  'vm.update': method('vm.update', true, false),
  'vm.watch': method('vm.watch', false, true),
  'admin.add': method('admin.add', true, false),
  'admin.remove': method('admin.remove', true, false),
  'admin.list': method('admin.list', false, false),
  'node.approve': method('node.approve', true, false),
  'cluster.joinPolicy': method('cluster.joinPolicy', true, false),
  'vm.explain': method('vm.explain', false, false),
  'cluster.hello': method('cluster.hello', false, false),
  'vm.logs': method('vm.logs', false, true),
  'cluster.events': method('cluster.events', false, true),
  'node.load': method('node.load', false, false),
  // "mutating": only an admin may type into a guest (the RPC server's authorize check)
  'vm.consoleInput': method('vm.consoleInput', true, false),
  // Not "mutating" in the admin sense: holding the cluster key (pnet) is what admits a node.
  'cluster.join': method('cluster.join', false, false),
  'internal.admit': method('internal.admit', true, false),
  'internal.proposeMany': method('internal.proposeMany', true, false),
  'cluster.prepare': withInner(method('cluster.prepare', true, false)),
  'cluster.submit': withInner(method('cluster.submit', true, false)),
  'internal.renewLease': method('internal.renewLease', true, false),
  // a member's call (internal.*); which member, the handler checks against the migration record
  'internal.consoleHistory': method('internal.consoleHistory', true, true),
  'internal.propose': method('internal.propose', true, false)
}

export function isMethod (m: string): m is MethodName {
  return Object.prototype.hasOwnProperty.call(METHODS, m)
}

/** Client-facing writes take an idempotency key; internal.* forward whole envelopes (key inside). */
export function takesIdempotencyKey (method: MethodName): boolean {
  return METHODS[method].mutating && !method.startsWith('internal.')
}

const checkIdempotencyKey = compile(s.str(COMMAND_LIMITS.maxIdempotencyKeyLength, { min: 1 }), `params.${IDEMPOTENCY_PARAM}`, '', 'wire')

/** Runs a method's params validator; shape errors become InvalidParams, spec errors keep their kind. */
export function checkParams<M extends MethodName> (method: M, x: unknown): ParamsOf<M> {
  try {
    if (!takesIdempotencyKey(method) || x == null || typeof x !== 'object' || !(IDEMPOTENCY_PARAM in x)) return METHODS[method].params(x) as ParamsOf<M>
    const { [IDEMPOTENCY_PARAM]: raw, ...rest } = x as Record<string, unknown>
    const inner = METHODS[method].params(rest)
    if (raw === undefined) return inner as ParamsOf<M>
    const idempotencyKey = checkIdempotencyKey(raw)
    return { ...(inner as object), idempotencyKey } as ParamsOf<M>
  } catch (err) {
    if (isWireError(err)) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidParams', err.message)
    throw err
  }
}
