// The RPC methods every node serves. Reads are answered from the local
// replica, after a ReadIndex barrier unless the caller asked for `stale`.
// Writes are proposed on the leader: a follower forwards them itself
// (internal.propose), so clients never see a redirect.
import { randomUUID } from 'node:crypto'
import type { ApplyResult, Command, CommandEnvelope } from '../protocols/commands.ts'
import type { AdminRecord, NodeRecord, VmRecord } from '../protocols/model.ts'
import { RpcError, toRpcErrorBody } from '../protocols/rpc.ts'
import type { ForwardedResult, ReadParams, VmWatchEvent } from '../protocols/rpc.ts'
import type { RpcHandlers } from './net/rpc.ts'
import type { StateMachine } from '../storage/state-machine.ts'
import type { RaftDriver } from './raft-driver.ts'
import type { NodeMetrics } from './metrics.ts'
import { explainVm } from './scheduler.ts'
import type { LoadBoard } from './scheduler.ts'
import type { LoadReport } from '../protocols/load.ts'
import type { RbdClient } from '../storage/rbd.ts'
import type { NodeConfig } from './config.ts'
import { createResourceApi } from './api-resources.ts'
import { cephSettings, rbdClientFor } from './ceph-env.ts'

export interface ApiDeps {
  id: () => string
  sm: StateMachine
  driver: () => RaftDriver | null
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
  vmLogs: (vm: VmRecord, opts: { follow?: boolean, tailBytes?: number }, signal: AbortSignal) => AsyncIterable<string>
  /** recent events, for cluster.events to start with */
  recentEvents: () => Array<{ at: number, index: number, text: string }>
  describe: (index: number, env: CommandEnvelope, r: ApplyResult) => string
  /** this node's Ceph client for volume RPCs; default: one for cephConfig (none: metadata only) */
  ceph?: () => { rbd: RbdClient, pool: string } | null
  /** the node config's [ceph] section */
  cephConfig?: NodeConfig['ceph']
}

function fail (r: ApplyResult): never {
  if (r.ok) throw new Error('unreachable')
  throw new RpcError(r.error.kind, r.error.message, r.error.leader)
}

export function createApi (d: ApiDeps): RpcHandlers {
  const now = d.now ?? Date.now

  const read = async (p: ReadParams): Promise<void> => {
    if (p.stale === true) return
    const drv = d.driver()
    if (drv == null) throw new RpcError('Unavailable', 'this node has not joined a cluster yet; retry with --stale or ask another node')
    await drv.readBarrier()
  }

  // A write forwarded to the leader is applied there first: before answering from the local replica,
  // wait until it has applied as far (else vm.create through a follower could answer NotFound).
  const caughtUp = async (): Promise<void> => {
    const drv = d.driver()
    if (drv != null && !drv.isLeader()) await drv.readBarrier()
  }

  // A write that names a VM or node resolves the name on this replica only after a ReadIndex
  // barrier: a node that just restarted or healed would otherwise answer NotFound for a VM whose
  // create was acknowledged, or act on an old record. A failed barrier proposes nothing (definite).
  const barrier = async (): Promise<void> => {
    const drv = d.driver()
    if (drv == null) throw new RpcError('Unavailable', 'this node has not joined a cluster yet; ask another node')
    await drv.readBarrier()
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
  const propose = async (cmd: Command, key: string | undefined): Promise<unknown> => {
    const r = await d.propose({ cmd, at: now(), key: key ?? randomUUID() })
    if (!r.ok) fail(r)
    return r.value
  }

  const write = async (cmd: Command, key?: string): Promise<unknown> => {
    const value = await propose(cmd, key)
    await caughtUp()
    return value
  }

  const vmRef = (ref: string): VmRecord => {
    const vm = d.sm.getVm(ref) ?? d.sm.getVmByName(ref)
    if (vm == null) throw new RpcError('NotFound', `no VM named or with id '${ref}'`)
    return vm
  }

  const nodeRef = (ref: string): NodeRecord => {
    const n = d.sm.getNode(ref) ?? d.sm.listNodes().find((x) => x.name === ref || x.id.endsWith(ref))
    if (n == null) throw new RpcError('NotFound', `no node named or with id '${ref}'`)
    return n
  }

  const configured = d.cephConfig == null ? null : cephSettings(d.cephConfig)
  const envCeph = configured == null ? null : { rbd: rbdClientFor(configured), pool: configured.pool }

  const setNodeState = async (ref: string, state: 'draining' | 'ready', key: string | undefined): Promise<NodeRecord> => {
    await barrier()
    const done = prior(key); if (done != null) return done.value as NodeRecord
    const n = nodeRef(ref)
    return await propose({ type: 'UpdateNode', id: n.id, state }, key) as NodeRecord
  }

  const setDesired = async (ref: string, desired: 'running' | 'stopped', key: string | undefined): Promise<VmRecord> => {
    await barrier()
    const done = prior(key); if (done != null) return done.value as VmRecord
    const vm = vmRef(ref)
    return await propose({ type: 'SetVmDesiredState', id: vm.id, desired }, key) as VmRecord
  }

  return {
    ...createResourceApi({ sm: d.sm, read, barrier, write: async (cmd, key) => await write(cmd, key), ceph: d.ceph ?? (() => envCeph) }),
    'cluster.status': async (p) => {
      await read(p)
      const drv = d.driver()
      const st = drv?.status()
      return {
        id: d.id(),
        leader: st?.lead ?? null,
        term: st?.term ?? 0,
        commit: st?.commit ?? 0,
        applied: d.sm.applied(),
        voters: st?.conf.voters ?? [],
        learners: st?.conf.learners ?? []
      }
    },
    'node.list': async (p) => { await read(p); return d.sm.listNodes() },
    'node.show': async (p) => { await read(p); return nodeRef(p.node) },
    'node.drain': async (p) => await setNodeState(p.node, 'draining', p.idempotencyKey),
    'node.undrain': async (p) => await setNodeState(p.node, 'ready', p.idempotencyKey),
    'vm.create': async (p) => {
      // a retried key answers with the VM its first attempt created, whatever id we draw now
      return await propose({ type: 'CreateVm', id: randomUUID(), spec: p.spec, desired: p.start === false ? 'stopped' : 'running' }, p.idempotencyKey ?? p.key) as VmRecord
    },
    'vm.list': async (p) => { await read(p); return d.sm.listVms(p.node != null ? { node: nodeRef(p.node).id } : {}) },
    'vm.show': async (p) => { await read(p); return vmRef(p.vm) },
    'vm.start': async (p) => await setDesired(p.vm, 'running', p.idempotencyKey),
    'vm.stop': async (p) => await setDesired(p.vm, 'stopped', p.idempotencyKey),
    'vm.update': async (p) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as VmRecord
      const vm = vmRef(p.vm)
      return await propose({ type: 'UpdateVmSpec', id: vm.id, spec: p.spec, ...(p.ifGeneration !== undefined ? { ifGeneration: p.ifGeneration } : {}) }, p.idempotencyKey) as VmRecord
    },
    'vm.delete': async (p) => {
      await barrier()
      const done = prior(p.idempotencyKey); if (done != null) return done.value as { id: string }
      const vm = vmRef(p.vm)
      return await propose({ type: 'DeleteVm', id: vm.id }, p.idempotencyKey) as { id: string }
    },
    'vm.explain': async (p) => {
      await read(p)
      return explainVm(d.sm, d.load, vmRef(p.vm).id)
    },
    'vm.watch': (p, ctx) => watch(d, p.vm ?? null, ctx.signal, vmRef),
    'vm.logs': (p, ctx) => (async function * () {
      const vm = vmRef(p.vm)
      for await (const text of d.vmLogs(vm, { follow: p.follow, tailBytes: p.tailBytes }, ctx.signal)) yield { text }
    })(),
    'cluster.events': (_p, ctx) => events(d, ctx.signal),
    'admin.add': async (p) => {
      // the applied record itself: no scan of the admin table on every write
      return await propose({ type: 'AddAdmin', peerId: p.peerId, name: p.name }, p.idempotencyKey) as AdminRecord
    },
    'admin.remove': async (p) => { await propose({ type: 'RemoveAdmin', peerId: p.peerId }, p.idempotencyKey); return { peerId: p.peerId } },
    'admin.list': async (p) => { await read(p); return d.sm.listAdmins() },
    'cluster.hello': () => d.hello(),
    'node.load': () => d.loadReports(),
    'cluster.join': async (p, ctx) => await d.join(ctx.peer, p.addrs),
    'internal.admit': async (p) => await d.join(p.peer, p.addrs),
    'internal.proposeMany': async (p) => {
      const drv = d.driver()
      if (drv == null || !drv.isLeader()) throw new RpcError('NotLeader', 'this node is not the leader', drv?.leaderId() ?? undefined)
      // all of them into the same Raft round; each answers on its own
      return await Promise.all(p.envs.map(async (env): Promise<ForwardedResult> => {
        try { return { ok: true, result: await drv.propose(env) } } catch (err) { return { ok: false, error: toRpcErrorBody(err) } }
      }))
    },
    'internal.propose': async (p) => {
      const drv = d.driver()
      if (drv == null || !drv.isLeader()) throw new RpcError('NotLeader', 'this node is not the leader', drv?.leaderId() ?? undefined)
      return await drv.propose(p.env)
    }
  }
}

/** A stream of changes to one VM (or all): the current state first, then every change as it applies. */
async function * watch (d: ApiDeps, ref: string | null, signal: AbortSignal, vmRef: (r: string) => VmRecord): AsyncGenerator<VmWatchEvent> {
  const queue: VmWatchEvent[] = []
  let wake: (() => void) | null = null
  const target = ref == null ? null : vmRef(ref).id
  const unsubscribe = d.subscribe((_i, env, result) => {
    if (!result.ok) return
    const ids = idsTouched(env.cmd)
    for (const id of ids) {
      if (target != null && id !== target) continue
      const vm = d.sm.getVm(id)
      queue.push(vm == null ? { type: 'delete', id } : { type: 'put', vm })
    }
    if (queue.length > 0) { wake?.(); wake = null }
  })
  try {
    if (target != null) queue.push({ type: 'put', vm: vmRef(target) })
    else for (const vm of d.sm.listVms()) queue.push({ type: 'put', vm })
    while (!signal.aborted) {
      while (queue.length > 0) yield queue.shift()!
      await new Promise<void>((resolve) => {
        wake = resolve
        signal.addEventListener('abort', () => resolve(), { once: true })
      })
    }
  } finally {
    unsubscribe()
  }
}

async function * events (d: ApiDeps, signal: AbortSignal): AsyncGenerator<{ index: number, at: number, text: string }> {
  const queue = d.recentEvents().slice(-20)
  let wake: (() => void) | null = null
  const unsubscribe = d.subscribe((i, env, r) => { queue.push({ index: i, at: env.at, text: d.describe(i, env, r) }); wake?.(); wake = null })
  try {
    while (!signal.aborted) {
      while (queue.length > 0) yield queue.shift()!
      await new Promise<void>((resolve) => { wake = resolve; signal.addEventListener('abort', () => resolve(), { once: true }) })
    }
  } finally { unsubscribe() }
}

function idsTouched (cmd: Command): string[] {
  switch (cmd.type) {
    case 'CreateVm': case 'UpdateVmSpec': case 'SetVmDesiredState': case 'AssignVm': case 'DeleteVm':
      return [cmd.id]
    case 'ReportVmStatus':
      return [...new Set(cmd.reports.map((r) => r.id))]
    default:
      return []
  }
}
