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
import { arr, bad, bool, int, obj, opt, str } from './validate.ts'
import { MAX_CONSOLE_INPUT_BYTES, MAX_FORWARD_BATCH, MAX_NODE_ID_LENGTH } from './limits.ts'
import { RESOURCE_METHODS } from './rpc-resources.ts'
import type { ResourceMethods } from './rpc-resources.ts'
import { SCHED_METHODS } from './rpc-sched.ts'
import type { SchedMethods } from './rpc-sched.ts'
import { SNAPSHOT_METHODS } from './rpc-snapshots.ts'
import type { SnapshotMethods } from './rpc-snapshots.ts'

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

export interface RpcMethods extends ResourceMethods, SchedMethods, SnapshotMethods {
  'cluster.status': { params: ReadParams, result: ClusterStatus }
  'node.list': { params: ReadParams, result: NodeRecord[] }
  'node.show': { params: ReadParams & { node: string }, result: NodeRecord }
  'node.drain': { params: { node: string } & IdempotentParams, result: NodeRecord }
  'node.undrain': { params: { node: string } & IdempotentParams, result: NodeRecord }
  'vm.create': { params: { spec: VmSpec, start?: boolean, key?: string, queue?: boolean } & IdempotentParams, result: VmRecord }
  'vm.list': { params: ReadParams & { node?: string }, result: VmRecord[] }
  'vm.show': { params: ReadParams & { vm: string }, result: VmRecord }
  'vm.start': { params: { vm: string } & IdempotentParams, result: VmRecord }
  'vm.stop': { params: { vm: string } & IdempotentParams, result: VmRecord }
  /** starts a live migration of a running VM (to `to`, else where placement puts it), or with
   * `cancel` cancels the one in flight; answers with the VM, its migration record on it */
  /** mode: live (default; refused with the reason when the VM cannot move live) or cold (stopped here, booted there) */
  'vm.migrate': { params: { vm: string, to?: string, cancel?: boolean, mode?: 'live' | 'cold' } & IdempotentParams, result: VmRecord }
  'vm.delete': { params: { vm: string } & IdempotentParams, result: { id: string } }
  /** replaces a VM's spec (a new generation): its host restarts the guest with it */
  /** ifGeneration: only if the VM is still at that generation (else Conflict) */
  'vm.update': { params: { vm: string, spec: VmSpec, ifGeneration?: number } & IdempotentParams, result: VmRecord }
  'vm.watch': { params: { vm?: string }, result: VmWatchEvent }
  /** a VM's serial console: what is logged so far (or its last tailBytes), then with follow what comes next */
  'vm.logs': { params: { vm: string, follow?: boolean, tailBytes?: number }, result: { text: string } }
  /** type into a VM's serial console (admin only: it is a root shell on most guests); `data` is
   * base64, at most MAX_CONSOLE_INPUT_BYTES once decoded. Only the node the VM is on takes it,
   * from the admin's own connection: no node relays it, since a relay would have to trust the
   * relaying member's word that an admin asked (a key holder is a host, not an admin) */
  'vm.consoleInput': { params: { vm: string, data: string }, result: { bytes: number, node: string } }
  /** a live stream of cluster events: one line per applied command */
  'cluster.events': { params: { since?: number, follow?: boolean }, result: ClusterEvent }
  'admin.add': { params: { peerId: string, name: string } & IdempotentParams, result: AdminRecord }
  'admin.remove': { params: { peerId: string } & IdempotentParams, result: { peerId: string } }
  'admin.list': { params: ReadParams, result: AdminRecord[] }
  /** join policy "approve": let this peer id join as a host */
  'node.approve': { params: { peerId: string }, result: { peerId: string, approvedAt: number } }
  'cluster.joinPolicy': { params: { policy: 'open' | 'approve' }, result: { policy: 'open' | 'approve' } }
  'vm.explain': { params: ReadParams & { vm: string }, result: VmExplanation }
  /** the gossiped load reports this node holds, aged on its clock */
  'node.load': { params: Record<string, never>, result: Array<LoadReport & { ageMs: number, stale: boolean }> }
  /** a fresh node's question during cluster formation (node/bootstrap.ts) */
  'cluster.hello': { params: Record<string, never>, result: ClusterHello }
  /** a fresh node with the key asks to be added as a learner; its addresses let the leader reach it */
  'cluster.join': { params: { addrs: string[] }, result: { leader: string } }
  /** member to leader: add this joiner as a learner */
  'internal.admit': { params: { peer: string, addrs: string[] }, result: { leader: string } }
  /** member to leader: propose a client's command (writes are forwarded, never bounced) */
  'internal.propose': { params: { env: CommandEnvelope }, result: ApplyResult }
  /** Admin writes in two steps, so that the admin's own key signs the exact command (protocols/auth.ts):
   * prepare answers the command a mutating `method` would propose and the last index its signature
   * may apply at; submit runs `method` again with that command, signed, in place of the one it builds. */
  /** `done`: the request's idempotency key was already applied; this is its result and there is nothing to sign */
  'cluster.prepare': { params: { method: string, params: unknown }, result: { cmd: Command, until: number } | { done: unknown } }
  'cluster.submit': { params: { method: string, params: unknown, cmd: Command, auth: CommandAuth }, result: unknown }
  /** a follower's forwarded writes, batched: one answer per envelope, in order */
  'internal.proposeMany': { params: { envs: CommandEnvelope[] }, result: ForwardedResult[] }
  /** member to leader: renew the CALLER's liveness lease (its peer id is the stream's) at `epoch`;
   * answered once the leader's RenewLeases batch holding it committed (node/ha/service.ts) */
  'internal.renewLease': { params: { epoch: number }, result: { outcome: 'renewed' | 'rejoined' | 'stale' | 'notFound', epoch: number, seq: number } }
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
  /** a VM that fits nowhere: the preemption the scheduler would make for it (issue 19), or why none */
  preemption?: { nodeId: string | null, evictions: string[], reason: string } | null
  decision: {
    vmId: string
    nodeId: string | null
    total: number | null
    rejections: Record<string, number> | null
    nodes: Array<{ nodeId: string, feasible: boolean, filter?: string, reason?: string, scores?: { fit: number, affinity: number, domain: number, pressure: number }, total?: number }> | null
  }
}

export type MethodName = keyof RpcMethods
/** Methods answered with a stream of results. */
export type StreamingMethodName = 'vm.watch' | 'vm.logs' | 'cluster.events'
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

const ID = MAX_NODE_ID_LENGTH
/** vm and node references: an id or a name */
const ref = (x: unknown, path: string): string => str(x, path, ID, 1)
const stale = (o: Record<string, unknown>): ReadParams => {
  const s = opt(o, 'stale', bool, 'params')
  return s === undefined ? {} : { stale: s }
}
const params = (x: unknown, allowed: readonly string[], required: readonly string[] = []): Record<string, unknown> =>
  obj(x ?? {}, 'params', allowed, required)

function spec (x: unknown): VmSpec {
  try {
    return validateVmSpec(x, 'params.spec')
  } catch (err) {
    if (err instanceof BlixardError) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidSpec', err.message)
    throw err
  }
}

export const METHODS: MethodTable = {
  ...RESOURCE_METHODS,
  ...SCHED_METHODS,
  ...SNAPSHOT_METHODS,
  'cluster.status': { mutating: false, streaming: false, params: (x) => stale(params(x, ['stale'])) },
  'node.list': { mutating: false, streaming: false, params: (x) => stale(params(x, ['stale'])) },
  'node.show': {
    mutating: false, streaming: false,
    params: (x) => { const o = params(x, ['node', 'stale'], ['node']); return { ...stale(o), node: ref(o.node, 'params.node') } }
  },
  'node.drain': { mutating: true, streaming: false, params: (x) => ({ node: ref(params(x, ['node'], ['node']).node, 'params.node') }) },
  'node.undrain': { mutating: true, streaming: false, params: (x) => ({ node: ref(params(x, ['node'], ['node']).node, 'params.node') }) },
  'vm.create': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['spec', 'start', 'key', 'queue'], ['spec'])
      const out: ParamsOf<'vm.create'> = { spec: spec(o.spec) }
      const start = opt(o, 'start', bool, 'params'); if (start !== undefined) out.start = start
      const queue = opt(o, 'queue', bool, 'params'); if (queue !== undefined) out.queue = queue
      const key = opt(o, 'key', (v, p) => str(v, p, 128, 1), 'params'); if (key !== undefined) out.key = key
      return out
    }
  },
  'vm.list': {
    mutating: false, streaming: false,
    params: (x) => {
      const o = params(x, ['stale', 'node'])
      const node = opt(o, 'node', ref, 'params')
      return node === undefined ? stale(o) : { ...stale(o), node }
    }
  },
  'vm.show': {
    mutating: false, streaming: false,
    params: (x) => { const o = params(x, ['vm', 'stale'], ['vm']); return { ...stale(o), vm: ref(o.vm, 'params.vm') } }
  },
  'vm.start': { mutating: true, streaming: false, params: (x) => ({ vm: ref(params(x, ['vm'], ['vm']).vm, 'params.vm') }) },
  'vm.stop': { mutating: true, streaming: false, params: (x) => ({ vm: ref(params(x, ['vm'], ['vm']).vm, 'params.vm') }) },
  'vm.delete': { mutating: true, streaming: false, params: (x) => ({ vm: ref(params(x, ['vm'], ['vm']).vm, 'params.vm') }) },
  'vm.migrate': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['vm', 'to', 'cancel', 'mode'], ['vm'])
      const to = o.to === undefined ? undefined : ref(o.to, 'params.to')
      const cancel = opt(o, 'cancel', bool, 'params')
      if (o.mode !== undefined && o.mode !== 'live' && o.mode !== 'cold') throw new BlixardError('InvalidParams', `params.mode must be "live" or "cold", got ${JSON.stringify(o.mode)}`)
      const mode = o.mode as 'live' | 'cold' | undefined
      if (mode !== undefined && cancel === true) throw new BlixardError('InvalidParams', 'params.mode does not go with params.cancel: a cancel stops the live migration in flight')
      return { vm: ref(o.vm, 'params.vm'), ...(to !== undefined ? { to } : {}), ...(cancel !== undefined ? { cancel } : {}), ...(mode !== undefined ? { mode } : {}) }
    }
  },
  'vm.update': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['vm', 'spec', 'ifGeneration'], ['vm', 'spec'])
      const g = opt(o, 'ifGeneration', int, 'params')
      return { vm: ref(o.vm, 'params.vm'), spec: spec(o.spec), ...(g !== undefined ? { ifGeneration: g } : {}) }
    }
  },
  'vm.watch': {
    mutating: false, streaming: true,
    params: (x) => { const vm = opt(params(x, ['vm']), 'vm', ref, 'params'); return vm === undefined ? {} : { vm } }
  },
  'admin.add': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['peerId', 'name'], ['peerId', 'name'])
      return { peerId: adminPeerId(o.peerId), name: str(o.name, 'params.name', 128, 1) }
    }
  },
  'admin.remove': { mutating: true, streaming: false, params: (x) => ({ peerId: str(params(x, ['peerId'], ['peerId']).peerId, 'params.peerId', ID, 1) }) },
  'admin.list': { mutating: false, streaming: false, params: (x) => stale(params(x, ['stale'])) },
  'node.approve': { mutating: true, streaming: false, params: (x) => ({ peerId: adminPeerId(params(x, ['peerId'], ['peerId']).peerId) }) },
  'cluster.joinPolicy': {
    mutating: true, streaming: false,
    params: (x) => {
      const v = params(x, ['policy'], ['policy']).policy
      if (v !== 'open' && v !== 'approve') throw new BlixardError('InvalidParams', 'params.policy must be "open" or "approve"')
      return { policy: v }
    }
  },
  'vm.explain': {
    mutating: false, streaming: false,
    params: (x) => { const o = params(x, ['vm', 'stale'], ['vm']); return { ...stale(o), vm: ref(o.vm, 'params.vm') } }
  },
  'cluster.hello': { mutating: false, streaming: false, params: (x) => { params(x, []); return {} } },
  'vm.logs': {
    mutating: false, streaming: true,
    params: (x) => {
      const o = params(x, ['vm', 'follow', 'tailBytes'], ['vm'])
      const out: ParamsOf<'vm.logs'> = { vm: ref(o.vm, 'params.vm') }
      const follow = opt(o, 'follow', bool, 'params'); if (follow !== undefined) out.follow = follow
      const tail = opt(o, 'tailBytes', (v, p) => int(v, p, 0, 64 * 1024 * 1024), 'params'); if (tail !== undefined) out.tailBytes = tail
      return out
    }
  },
  'cluster.events': {
    mutating: false, streaming: true,
    params: (x) => {
      const o = params(x, ['since', 'follow'])
      const out: ParamsOf<'cluster.events'> = {}
      const since = opt(o, 'since', int, 'params'); if (since !== undefined) out.since = since
      const follow = opt(o, 'follow', bool, 'params'); if (follow !== undefined) out.follow = follow
      return out
    }
  },
  'node.load': { mutating: false, streaming: false, params: (x) => { params(x, []); return {} } },
  // "mutating": only an admin may type into a guest (the RPC server's authorize check)
  'vm.consoleInput': { mutating: true, streaming: false, params: (x) => consoleInput(x) },
  // Not "mutating" in the admin sense: holding the cluster key (pnet) is what admits a node.
  'cluster.join': { mutating: false, streaming: false, params: (x) => ({ addrs: addrList(params(x, ['addrs'], ['addrs']).addrs, 'params.addrs') }) },
  'internal.admit': {
    mutating: true, streaming: false,
    params: (x) => { const o = params(x, ['peer', 'addrs'], ['peer', 'addrs']); return { peer: str(o.peer, 'params.peer', ID, 1), addrs: addrList(o.addrs, 'params.addrs') } }
  },
  'internal.proposeMany': {
    mutating: true, streaming: false,
    params: (x) => {
      const list = arr(params(x, ['envs'], ['envs']).envs, 'params.envs', MAX_FORWARD_BATCH)
      return {
        envs: list.map((e, i) => {
          const v = validateEnvelope(e)
          if (!v.ok) throw new BlixardError(v.error.kind, `params.envs[${i}]: ${v.error.message}`)
          return v.cmd
        })
      }
    }
  },
  'cluster.prepare': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['method', 'params'], ['method'])
      return { method: str(o.method, 'params.method', 64, 1), params: o.params ?? {} }
    }
  },
  'cluster.submit': {
    mutating: true, streaming: false,
    params: (x) => {
      const o = params(x, ['method', 'params', 'cmd', 'auth'], ['method', 'cmd', 'auth'])
      const v = validateCommand(o.cmd)
      if (!v.ok) throw new BlixardError(v.error.kind, `params.cmd: ${v.error.message}`)
      let auth: CommandAuth
      try { auth = commandAuth(o.auth, 'params.auth') } catch (e) { throw new BlixardError('InvalidParams', e instanceof BlixardError ? e.message : 'params.auth is malformed') }
      return { method: str(o.method, 'params.method', 64, 1), params: o.params ?? {}, cmd: v.cmd, auth }
    }
  },
  'internal.renewLease': {
    mutating: true, streaming: false,
    params: (x) => ({ epoch: int(params(x, ['epoch'], ['epoch']).epoch, 'params.epoch', 0, Number.MAX_SAFE_INTEGER) })
  },
  'internal.propose': {
    mutating: true, streaming: false,
    params: (x) => {
      const v = validateEnvelope(params(x, ['env'], ['env']).env)
      if (!v.ok) throw new BlixardError(v.error.kind, `params.env: ${v.error.message}`)
      return { env: v.cmd }
    }
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

function consoleInput (x: unknown): { vm: string, data: string } {
  const o = params(x, ['vm', 'data'], ['vm', 'data'])
  const data = str(o.data, 'params.data', Math.ceil(MAX_CONSOLE_INPUT_BYTES / 3) * 4, 1)
  if (data.length % 4 !== 0 || !BASE64.test(data)) bad('params.data', 'must be base64')
  return { vm: ref(o.vm, 'params.vm'), data }
}

/** An admin is a key that signs commands: its id must be an Ed25519 libp2p peer id (what
 * `blixard whoami` prints), else nobody could ever sign as it. */
function adminPeerId (x: unknown): string {
  const s = str(x, 'params.peerId', ID, 1)
  if (!isEd25519PeerId(s)) throw new BlixardError('InvalidParams', `params.peerId "${s.slice(0, 64)}" is not a libp2p peer id of an Ed25519 key (like 12D3KooW…; \`blixard whoami\` prints yours)`)
  return s
}

function addrList (x: unknown, path: string): string[] {
  return arr(x, path, 16).map((a, i) => str(a, `${path}[${i}]`, 256, 1))
}

export function isMethod (m: string): m is MethodName {
  return Object.prototype.hasOwnProperty.call(METHODS, m)
}

/** Client-facing writes take an idempotency key; internal.* forward whole envelopes (key inside). */
export function takesIdempotencyKey (method: MethodName): boolean {
  return METHODS[method].mutating && !method.startsWith('internal.')
}

/** Runs a method's params validator; shape errors become InvalidParams, spec errors keep their kind. */
export function checkParams<M extends MethodName> (method: M, x: unknown): ParamsOf<M> {
  try {
    if (!takesIdempotencyKey(method) || x == null || typeof x !== 'object' || !(IDEMPOTENCY_PARAM in x)) return METHODS[method].params(x) as ParamsOf<M>
    const { [IDEMPOTENCY_PARAM]: raw, ...rest } = x as Record<string, unknown>
    const inner = METHODS[method].params(rest)
    if (raw === undefined) return inner as ParamsOf<M>
    const idempotencyKey = str(raw, `params.${IDEMPOTENCY_PARAM}`, COMMAND_LIMITS.maxIdempotencyKeyLength, 1)
    return { ...(inner as object), idempotencyKey } as ParamsOf<M>
  } catch (err) {
    if (isWireError(err)) throw new BlixardError(err.kind === 'TooLarge' ? 'TooLarge' : 'InvalidParams', err.message)
    throw err
  }
}
