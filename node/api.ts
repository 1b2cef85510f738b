// The RPC methods every node serves. Reads are answered from the local
// replica, after a ReadIndex barrier unless the caller asked for `stale`.
// Writes are proposed on the leader: a follower forwards them itself
// (internal.propose), so clients never see a redirect.
import { BlixardError, toBlixError } from '../protocols/errors.ts'
import { randomUUID } from 'node:crypto'
import { pushable } from 'it-pushable'
import type { ApplyResult, Command, CommandEnvelope } from '../protocols/commands.ts'
import type { AdminRecord, NodeRecord, VmRecord } from '../protocols/model.ts'
import { METHODS, checkParams, isMethod } from '../protocols/rpc.ts'
import type { MethodName } from '../protocols/rpc.ts'
import { AUTH_WINDOW, authorityOf } from '../protocols/auth.ts'
import { preverifyAuth } from './preverify.ts'
import type { CommandAuth } from '../protocols/auth.ts'
import type { ForwardedResult, ReadParams, VmWatchEvent } from '../protocols/rpc.ts'
import { ListAnswer, type RpcCallContext, type RpcHandlers } from './net/rpc.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RaftService } from './raft-service.ts'
import type { NodeMetrics } from './metrics.ts'
import { admissionRefusal, drainTargets, explainVm, migrationTarget } from './scheduler.ts'
import type { LoadBoard } from './scheduler.ts'
import type { LoadReport } from '../protocols/load.ts'
import { CONFIG_DEFAULTS, type NodeConfig } from './config.ts'
import { createResourceApi } from './api-resources.ts'
import { missingRef } from '../storage/apply-vms.ts'
import { createSchedApi, quotaRefusal } from './api-sched.ts'
import { createSnapshotApi } from './api-snapshots.ts'
import { createPoolApi } from './api-pools.ts'
import { isJoint } from '../protocols/raft/confchange.ts'
import { CONSOLE_PIECE_UNITS, MAX_CONSOLE_INPUT_BYTES, WATCH_MAX_QUEUED_CHANGES } from '../protocols/limits.ts'
import { textPieces } from './qemu/console-log.ts'

export interface ApiDeps {
  id: () => string
  sm: StateMachine
  raft: () => RaftService | null
  /** proposes on the leader, forwarding when this node is not the leader */
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** subscribe to applied commands (for watch) */
  subscribe: (fn: (index: number, env: CommandEnvelope, result: ApplyResult) => void) => () => void
  load: LoadBoard
  loadReports: () => Array<LoadReport & { ageMs: number, stale: boolean }>
  hello: () => { id: string, inCluster: boolean, lowestKnown: string, leader: string | null }
  join: (peer: string, addrs: string[]) => Promise<{ leader: string }>
  metrics?: NodeMetrics
  now?: () => number
  /** the console of a VM, from this host's driver or proxied from the VM's host */
  vmLogs: (vm: VmRecord, opts: { follow?: boolean, tailBytes?: number, history?: boolean }, signal: AbortSignal) => AsyncIterable<string>
  /** type into a VM's serial console (here, or relayed to its host unless `relayed` already) */
  consoleInput?: (vm: VmRecord, data: Buffer) => Promise<{ bytes: number, node: string }>
  /** recent events, for cluster.events to start with */
  recentEvents: () => Array<{ at: number, index: number, text: string }>
  describe: (index: number, env: CommandEnvelope, r: ApplyResult) => string
  /** subscribe to this node's own events that are not commands (autopilot decisions on the leader) */
  subscribeNotes: (fn: (e: { index: number, at: number, text: string }) => void) => () => void
  /** the node config's [ceph] section (its pool is the default of a volume created here) */
  cephConfig?: NodeConfig['ceph']
  /** the node config's [rebalance] section (what `rebalance --dry-run` reports and plans with) */
  rebalanceConfig?: NodeConfig['rebalance']
}

/** How long (in log indexes) an admin's signature on a prepared command stays valid: half the
 * window the state machine accepts, so a CLI whose node lags behind the leader still lands inside. */
export const SIGNATURE_VALIDITY = AUTH_WINDOW / 2

/** The leader's check before it proposes `env` (and, again, every replica's on apply): refused
 * unless it carries the authority it needs; a scheduling decision only if this leader signed it
 * for `term`, the leader's current term (the term its proposal's entry gets; apply refuses a
 * decision whose signed term differs from its entry's). A retry of an already applied command
 * (same idempotency key) passes: apply answers it with the first result and changes nothing. */
export function leaderRefusal (sm: StateMachine, self: string, env: CommandEnvelope, term: number | undefined): string | null {
  if (env.key !== undefined && sm.resultFor(env.key) !== undefined) return null
  if (authorityOf(env.cmd) === 'leader' && env.auth?.signer !== self) {
    return `${env.cmd.type} is the leader's decision: signed by ${env.auth?.signer ?? 'nobody'}, not by the leader ${self}`
  }
  return sm.authorityError(env, term)
}

/** An admin write runs once to find its command (prepare), then again with that command signed by
 * the admin (submit): see cluster.prepare. Outside both, a write proposes an unsigned command,
 * which the state machine refuses unless it is one the node signs itself. */
type Signing = { mode: 'prepare' } | { mode: 'submit', cmd: Command, auth: CommandAuth }

/** Thrown by a write in prepare mode: the command it would have proposed. */
class Prepared {
  constructor (readonly cmd: Command) {}
}

// A refusal on apply is an answer for the caller, not a fault here: no stack is captured (with
// every write of bench:raft refused as AlreadyExists, the capture showed in the leader's profile)
function fail (r: ApplyResult): never {
  if (r.ok) throw new Error('unreachable')
  throw BlixardError.quiet(r.error.kind, r.error.message, r.error.leader)
}

export function createApi (d: ApiDeps): RpcHandlers {
  const now = d.now ?? Date.now

  const read = async (p: ReadParams): Promise<void> => {
    if (p.stale === true) return
    const raft = d.raft()
    if (raft == null) throw new BlixardError('Unavailable', 'this node has not joined a cluster yet; retry with --stale or ask another node')
    await raft.readBarrier()
  }

  // A write forwarded to the leader is applied there first: before answering from the local replica,
  // wait until it has applied as far (else vm.create through a follower could answer NotFound).
  const caughtUp = async (): Promise<void> => {
    const raft = d.raft()
    if (raft != null && !raft.isLeader()) await raft.readBarrier()
  }

  /** The signing of the admin write a cluster.prepare/submit call runs, keyed by the call context
   * it passes to the handler: explicit context, one handler set for every call (building a set per
   * call cost the leader ~0.2 ms of allocation and GC per signed write at 256 clients), where an
   * AsyncLocalStorage would put promise hooks on every promise the node makes. */
  const signing = new WeakMap<RpcCallContext, Signing>()

  const proposeCmd = async (cmd: Command, key: string | undefined, ctx: RpcCallContext): Promise<ApplyResult> => {
    const s = signing.get(ctx)
    if (s?.mode === 'prepare') throw new Prepared(cmd)
    if (s?.mode === 'submit') {
      if (s.cmd.type !== cmd.type) throw new BlixardError('InvalidParams', `the signed command is a ${s.cmd.type}, this write is a ${cmd.type}`)
      return await d.propose({ cmd: s.cmd, at: now(), key: key ?? randomUUID(), auth: s.auth })
    }
    return await d.propose({ cmd, at: now(), key: key ?? randomUUID() })
  }

  // A write that names a VM or node resolves the name on this replica only after a ReadIndex
  // barrier: a node that just restarted or healed would otherwise answer NotFound for a VM whose
  // create was acknowledged, or act on an old record. A failed barrier proposes nothing (definite).
  const barrier = async (): Promise<void> => {
    const raft = d.raft()
    if (raft == null) throw new BlixardError('Unavailable', 'this node has not joined a cluster yet; ask another node')
    await raft.readBarrier()
  }

  /** After the barrier, a key already applied answers with its stored result before any name is
   * resolved: a retry must not answer NotFound for a VM its own first attempt deleted. */
  const prior = (key: string | undefined): { value: unknown } | null => {
    const r = key === undefined ? undefined : d.sm.resultFor(key)
    if (r === undefined) return null
    if (!r.ok) fail(r)
    return { value: r.value }
  }

  /** Proposes `cmd` under the client's idempotency key (or a fresh one) and answers with the
   * result of this very command as applied (a retried key: the first attempt's result). */
  const propose = async (cmd: Command, key: string | undefined, ctx: RpcCallContext): Promise<unknown> => {
    const r = await proposeCmd(cmd, key, ctx)
    if (!r.ok) fail(r)
    return r.value
  }

  const write = async (cmd: Command, key: string | undefined, ctx: RpcCallContext): Promise<unknown> => {
    const value = await propose(cmd, key, ctx)
    await caughtUp()
    return value
  }

  const vmRef = (ref: string): VmRecord => {
    const vm = d.sm.getVm(ref) ?? d.sm.getVmByName(ref)
    if (vm == null) throw new BlixardError('NotFound', `no VM named or with id '${ref}'`)
    return vm
  }

  const typeInto = async (ref: string, data: string): Promise<{ bytes: number, node: string }> => {
    if (d.consoleInput == null) throw new BlixardError('Unavailable', 'this node serves no consoles')
    const bytes = Buffer.from(data, 'base64')
    if (bytes.length > MAX_CONSOLE_INPUT_BYTES) throw new BlixardError('InvalidParams', `params.data: at most ${MAX_CONSOLE_INPUT_BYTES} bytes per call, got ${bytes.length}`)
    // as vm.logs: a VM whose create this follower just forwarded is found here too
    await caughtUp()
    return await d.consoleInput(vmRef(ref), bytes)
  }

  const nodeRef = (ref: string): NodeRecord => {
    const n = d.sm.getNode(ref) ?? d.sm.listNodes().find((x) => x.name === ref || x.id.endsWith(ref))
    if (n == null) throw new BlixardError('NotFound', `no node named or with id '${ref}'`)
    return n
  }


  const setNodeState = async (ref: string, state: 'draining' | 'ready', key: string | undefined, ctx: RpcCallContext): Promise<NodeRecord> => {
    await barrier()
    const done = prior(key); if (done != null) return done.value as NodeRecord
    const n = nodeRef(ref)
    return await propose({ type: 'UpdateNode', id: n.id, state }, key, ctx) as NodeRecord
  }

  const setDesired = async (ref: string, desired: 'running' | 'stopped', key: string | undefined, ctx: RpcCallContext): Promise<VmRecord> => {
    await barrier()
    const done = prior(key); if (done != null) return done.value as VmRecord
    const vm = vmRef(ref)
    return await propose({ type: 'SetVmDesiredState', id: vm.id, desired }, key, ctx) as VmRecord
  }

  const handlers: RpcHandlers = {
    ...createResourceApi({ sm: d.sm, read, barrier, write, defaultPool: () => d.cephConfig?.pool ?? 'rbd' }),
    ...createSchedApi({ sm: d.sm, load: d.load, now, read, write, rebalance: d.rebalanceConfig ?? CONFIG_DEFAULTS.rebalance }),
    ...createSnapshotApi({ sm: d.sm, read, barrier, prior, write, vmRef }),
    ...createPoolApi({ sm: d.sm, read, barrier, prior, write }),
    'cluster.status': async (p) => {
      await read(p)
      const raft = d.raft()
      const st = raft?.status()
      return {
        id: d.id(),
        leader: st?.lead ?? null,
        term: st?.term ?? 0,
        commit: st?.commit ?? 0,
        applied: d.sm.applied(),
        voters: st?.conf.voters ?? [],
        learners: st?.conf.learners ?? [],
        joint: st == null || !isJoint(st.conf) ? null : { votersOutgoing: [...(st.conf.votersOutgoing ?? [])], learnersNext: [...(st.conf.learnersNext ?? [])] }
      }
    },
    'node.list': async (p) => { await read(p); return new ListAnswer(d.sm.each('nodes'), 'node.list') },
    'node.show': async (p) => { await read(p); return nodeRef(p.node) },
    'node.drain': async (p, ctx) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as NodeRecord
      const n = nodeRef(p.node)
      if (p.force === true) return await propose({ type: 'UpdateNode', id: n.id, state: 'draining', force: true }, p.idempotencyKey, ctx) as NodeRecord
      // checked here to answer at once with the reasons, and again on apply against the plan's
      // premise (its target nodes still ready), which is what makes racing drains safe
      const t = n.state === 'draining' ? { onto: [] } : drainTargets(d.sm.listNodes(), d.sm.listVms(), d.load.hints(), n)
      if ('stranded' in t) {
        throw new BlixardError('Conflict', `draining node ${n.name} would strand ${t.stranded.length} VM(s) that no other node can take now: ${t.stranded.join('; ')}; node ${n.name} was not drained`)
      }
      return await propose({ type: 'UpdateNode', id: n.id, state: 'draining', onto: t.onto }, p.idempotencyKey, ctx) as NodeRecord
    },
    'node.undrain': async (p, ctx) => await setNodeState(p.node, 'ready', p.idempotencyKey, ctx),
    'vm.create': async (p, ctx) => {
      // Fail fast: a VM to be started that fits no node now is refused with the reason, unless the
      // caller chose to queue it. A retried key answers with its first result before any check.
      if (p.start !== false && p.queue !== true) {
        await barrier()
        const done = prior(p.idempotencyKey ?? p.key); if (done != null) return done.value as VmRecord
        // a volume or network that does not exist is the first thing to say (in the words the
        // state machine refuses it with on apply), before which nodes could take the VM
        const missing = missingRef(p.spec, { network: (n) => d.sm.getNetwork(n) != null, volume: (v) => d.sm.getVolume(v) != null })
        if (missing !== null) throw new BlixardError('NotFound', missing)
        // over its project's quota: said before "no node fits" (apply refuses it with these words too)
        const over = quotaRefusal(d.sm, p.spec)
        if (over != null) throw new BlixardError('QuotaExceeded', over)
        const why = admissionRefusal(d.sm.listNodes(), d.sm.listVms(), d.load.hints(), p.spec)
        if (why != null) throw new BlixardError('NoCapacity', `${why}. Add --queue to accept it as pending until a node fits.`)
      }
      // a retried key answers with the VM its first attempt created, whatever id we draw now
      return await propose({ type: 'CreateVm', id: randomUUID(), spec: p.spec, desired: p.start === false ? 'stopped' : 'running' }, p.idempotencyKey ?? p.key, ctx) as VmRecord
    },
    'vm.list': async (p) => {
      await read(p)
      // drawn a page at a time while encoded: too many VMs for one answer are refused (TooLarge)
      // before the table is held in memory
      return new ListAnswer(d.sm.eachVm(p.node != null ? { node: nodeRef(p.node).id } : {}), p.node != null ? 'vm.list --node' : 'vm.list (narrow it with --node NODE)')
    },
    'vm.show': async (p) => { await read(p); return vmRef(p.vm) },
    'vm.start': async (p, ctx) => await setDesired(p.vm, 'running', p.idempotencyKey, ctx),
    'vm.stop': async (p, ctx) => await setDesired(p.vm, 'stopped', p.idempotencyKey, ctx),
    'vm.migrate': async (p, ctx) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as VmRecord
      const vm = vmRef(p.vm)
      if (p.cancel === true) return await propose({ type: 'CancelMigration', vm: vm.id }, p.idempotencyKey, ctx) as VmRecord
      let target: string
      if (p.to != null) target = nodeRef(p.to).id
      else {
        const t = migrationTarget(d.sm, d.load, vm)
        if ('why' in t) throw new BlixardError('NoCapacity', `no other node can take VM ${vm.spec.name}: ${t.why}. Free capacity, or name a node with --to NODE`)
        target = t.node
      }
      return await propose({ type: 'StartMigration', vm: vm.id, target, ...(p.mode === 'cold' ? { cold: true as const } : {}) }, p.idempotencyKey, ctx) as VmRecord
    },
    'vm.update': async (p, ctx) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as VmRecord
      const vm = vmRef(p.vm)
      return await propose({ type: 'UpdateVmSpec', id: vm.id, spec: p.spec, ...(p.ifGeneration !== undefined ? { ifGeneration: p.ifGeneration } : {}) }, p.idempotencyKey, ctx) as VmRecord
    },
    'vm.delete': async (p, ctx) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as { id: string }
      const vm = vmRef(p.vm)
      return await propose({ type: 'DeleteVm', id: vm.id }, p.idempotencyKey, ctx) as { id: string }
    },
    'vm.explain': async (p) => {
      await read(p)
      return explainVm(d.sm, d.load, vmRef(p.vm).id)
    },
    // Both start from this replica's state: after the barrier, so that a VM whose create was just
    // acknowledged (by the leader, through this node) is found here too. A follower learns the
    // commit index with the leader's next message (or within COMMIT_NOTICE_DELAY_MS), so without it
    // `vm create --wait` through a follower could watch before its replica applied the create.
    'vm.watch': (p, ctx) => (async function * () {
      await caughtUp()
      yield * watch(d, p.vm ?? null, ctx.signal, vmRef)
    })(),
    'vm.logs': (p, ctx) => (async function * () {
      await caughtUp()
      const vm = vmRef(p.vm)
      // a console read at once (a moved guest's history alone is up to 1 MiB) goes in frame-sized pieces
      for await (const text of d.vmLogs(vm, { follow: p.follow, tailBytes: p.tailBytes, history: p.history }, ctx.signal)) {
        for (const piece of textPieces(text, CONSOLE_PIECE_UNITS)) yield { text: piece }
      }
    })(),
    'cluster.events': (p, ctx) => events(d, p, ctx.signal),
    'vm.consoleInput': async (p) => await typeInto(p.vm, p.data),
    'admin.add': async (p, ctx) => {
      // the applied record itself: no scan of the admin table on every write
      return await propose({ type: 'AddAdmin', peerId: p.peerId, name: p.name }, p.idempotencyKey, ctx) as AdminRecord
    },
    'admin.remove': async (p, ctx) => { await propose({ type: 'RemoveAdmin', peerId: p.peerId }, p.idempotencyKey, ctx); return { peerId: p.peerId } },
    'admin.list': async (p) => { await read(p); return new ListAnswer(d.sm.each('admins'), 'admin.list') },
    'node.approve': async (p, ctx) => await write({ type: 'ApproveNode', peerId: p.peerId }, undefined, ctx) as { peerId: string, approvedAt: number },
    'cluster.joinPolicy': async (p, ctx) => await write({ type: 'SetJoinPolicy', policy: p.policy }, undefined, ctx) as { policy: 'open' | 'approve' },
    'cluster.hello': () => d.hello(),
    'node.load': () => d.loadReports(),
    'cluster.join': async (p, ctx) => await d.join(ctx.peer, p.addrs),
    'internal.admit': async (p) => await d.join(p.peer, p.addrs),
    'internal.proposeMany': async (p) => {
      const raft = d.raft()
      if (raft == null || !raft.isLeader()) throw new BlixardError('NotLeader', 'this node is not the leader', raft?.leaderId() ?? undefined)
      // all of them into the same Raft round; each answers on its own
      return await Promise.all(p.envs.map(async (env): Promise<ForwardedResult> => {
        try {
          // a forwarder is not trusted: the command must carry its own authority
          if (env.auth !== undefined) await preverifyAuth(env.cmd, env.auth)
          const why = leaderRefusal(d.sm, d.id(), env, raft.term())
          if (why !== null) throw new BlixardError('Unauthorized', why)
          return { ok: true, result: await raft.propose(env) }
        } catch (err) { return { ok: false, error: toBlixError(err) } }
      }))
    },
    'internal.propose': async (p) => {
      if (p.env.auth !== undefined) await preverifyAuth(p.env.cmd, p.env.auth)
      const raft = d.raft()
      if (raft == null || !raft.isLeader()) throw new BlixardError('NotLeader', 'this node is not the leader', raft?.leaderId() ?? undefined)
      const why = leaderRefusal(d.sm, d.id(), p.env, raft.term())
      if (why !== null) throw new BlixardError('Unauthorized', why)
      return await raft.propose(p.env)
    }
  }

  /** The handler of an admin write that cluster.prepare/submit may run. */
  const adminWrite = (method: string, s: Signing): ((params: unknown, ctx: RpcCallContext) => Promise<unknown>) => {
    if (!isMethod(method) || !METHODS[method].mutating || METHODS[method].streaming || method.startsWith('internal.') || method === 'cluster.prepare' || method === 'cluster.submit') {
      throw new BlixardError('InvalidParams', `${method} is not an admin write that can be signed`)
    }
    const h = handlers[method as MethodName] as unknown as (params: unknown, ctx: RpcCallContext) => Promise<unknown>
    return async (params, ctx) => {
      const c: RpcCallContext = { ...ctx }
      signing.set(c, s)
      return await h(checkParams(method, params), c)
    }
  }

  handlers['cluster.prepare'] = async (p, ctx) => {
    const run = adminWrite(p.method, { mode: 'prepare' })
    const until = d.sm.applied() + SIGNATURE_VALIDITY
    try {
      // a handler returns without proposing only when its idempotency key was already applied
      return { done: await run(p.params, ctx) }
    } catch (e) {
      if (e instanceof Prepared) return { cmd: e.cmd, until }
      throw e
    }
  }
  handlers['cluster.submit'] = async (p, ctx) => {
    // the signature is checked off the event loop first; the synchronous check where the write
    // is decided then finds it in the cache (node/preverify.ts)
    await preverifyAuth(p.cmd, p.auth)
    const run = adminWrite(p.method, { mode: 'submit', cmd: p.cmd, auth: p.auth })
    return await run(p.params, ctx)
  }
  return handlers
}

/** A stream of changes to one VM (or all): the current state first, then every change as it applies. */
async function * watch (d: ApiDeps, ref: string | null, signal: AbortSignal, vmRef: (r: string) => VmRecord): AsyncGenerator<VmWatchEvent> {
  const feed = boundedFeed<VmWatchEvent>(signal, WATCH_MAX_QUEUED_CHANGES)
  const target = ref == null ? null : vmRef(ref).id
  const unsubscribe = d.subscribe((_i, env, result) => {
    if (!result.ok || feed.behind()) return
    for (const id of idsTouched(env.cmd)) {
      if (target != null && id !== target) continue
      const vm = d.sm.getVm(id)
      if (!feed.push(vm == null ? { type: 'delete', id } : { type: 'put', vm })) break
    }
  })
  try {
    // the current state, drawn a page at a time (not held whole); a change made meanwhile is
    // also in the feed, and a put seen twice is harmless
    if (target != null) yield { type: 'put', vm: vmRef(target) }
    else for (const vm of d.sm.eachVm()) { if (signal.aborted || feed.behind()) break; yield { type: 'put', vm } }
    yield * feed.items
  } finally {
    unsubscribe()
    feed.close()
  }
}

function fellBehind (): BlixardError {
  return new BlixardError('TooLarge', `this watch fell more than ${WATCH_MAX_QUEUED_CHANGES} changes behind its reader; start it again (it begins with the current state)`)
}

/** What a stream has yet to send its reader, bounded: it ends when `signal` aborts, and once the
 * reader leaves `bound` items untaken it drops them and fails with fellBehind() (a reader that
 * does not take its changes must not make the node hold them without end). */
function boundedFeed<T> (signal: AbortSignal, bound: number): { push: (x: T) => boolean, behind: () => boolean, items: AsyncIterable<T>, close: () => void } {
  const queue = pushable<T>({ objectMode: true })
  let behind = false
  const onAbort = (): void => { queue.end() }
  if (signal.aborted) queue.end()
  else signal.addEventListener('abort', onAbort, { once: true })
  return {
    /** false once the reader has fallen behind: nothing more is taken */
    push: (x) => {
      if (behind) return false
      if (queue.readableLength >= bound) { behind = true; queue.end(fellBehind()); return false }
      queue.push(x)
      return true
    },
    behind: () => behind,
    items: queue,
    close: () => { signal.removeEventListener('abort', onAbort); queue.end() }
  }
}

/** How many recent events a stream starts with when the caller gives no `since`. */
const EVENTS_BACKLOG = 20

/** The node's recent events (all it keeps since `since`, else the last EVENTS_BACKLOG), then,
 * unless `follow` is false, every new one as it happens. */
async function * events (d: ApiDeps, p: { since?: number, follow?: boolean }, signal: AbortSignal): AsyncGenerator<{ index: number, at: number, text: string }> {
  const recent = d.recentEvents()
  const since = p.since
  const backlog = since === undefined ? recent.slice(-EVENTS_BACKLOG) : recent.filter((e) => e.at >= since)
  if (p.follow === false) { yield * backlog; return }
  // the backlog is bounded by what the node keeps; what arrives after it, by WATCH_MAX_QUEUED_CHANGES
  const feed = boundedFeed<{ index: number, at: number, text: string }>(signal, backlog.length + WATCH_MAX_QUEUED_CHANGES)
  for (const e of backlog) feed.push(e)
  const unsubscribe = d.subscribe((i, env, r) => {
    const text = d.describe(i, env, r)
    if (text === '') return // routine, not an event (lease renewals every few seconds)
    feed.push({ index: i, at: env.at, text })
  })
  const unsubscribeNotes = d.subscribeNotes((e) => { feed.push(e) })
  try {
    yield * feed.items
  } finally { unsubscribe(); unsubscribeNotes(); feed.close() }
}

/** The VMs a command is about (their watchers and their history on the dashboard). */
export function idsTouched (cmd: Command): string[] {
  switch (cmd.type) {
    case 'CreateVm': case 'UpdateVmSpec': case 'SetVmDesiredState': case 'AssignVm': case 'DeleteVm':
      return [cmd.id]
    case 'ReportVmStatus':
      return [...new Set(cmd.reports.map((r) => r.id))]
    case 'StartMigration': case 'CancelMigration': case 'ReportMigration': case 'ExpireMigration': case 'EvacuateVm':
      return [cmd.vm]
    case 'RebalanceVm': return [cmd.vm]
    case 'PreemptVm': return [cmd.vm, ...cmd.victims]
    default:
      return []
  }
}
