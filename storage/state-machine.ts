// The replicated state machine: applies committed command entries to the tables, deterministically.
// Every entry is applied atomically together with the applied index (so a restart resumes exactly),
// or rejected with a named error that changes nothing but the applied index.
// Only envelope.at is a clock here; iteration is always in key order.
import { deleteWarmPool, listPools, setWarmPool } from './apply-pools.ts'
import type { WarmPoolRecord } from '../protocols/pools.ts'
import { createHash } from 'node:crypto'
import type { ApplyResult, BlixError, Command, CommandEnvelope } from '../protocols/commands.ts'
import type { AdminRecord, NetworkRecord, NodeRecord, VmRecord, VolumeRecord } from '../protocols/model.ts'
import { BlixardError } from '../protocols/errors.ts'
import type { Kv, KvTx, Table } from './kv.ts'
import { TABLES } from './kv.ts'
import type { ApplyContext } from './apply-context.ts'
import { OverlayTx } from './overlay-tx.ts'
import { decodeCbor, encodeCbor } from './codec.ts'
import { keyOfInvalid, tryDecodeEnvelope } from './envelope.ts'
import { registerNode, removeNode, updateNode } from './apply-nodes.ts'
import { assignVm, createVm, deleteVm, reportVmStatus, setVmDesiredState, updateVmSpec, vmIdsOn, vmIdsReleasing, rebuildReleasingIndex } from './apply-vms.ts'
import { createVolume, deleteVolume, reportVolume, resizeVolume, snapshotVolume } from './apply-volumes.ts'
import { allocateIp, createNetwork, deleteNetwork, releaseIp } from './apply-networks.ts'
import { markNodeDown, renewLeases } from './apply-ha.ts'
import { cancelMigration, evacuateVm, expireMigration, reportMigration, startMigration } from './apply-migration.ts'
import { isFinal } from '../protocols/migration-phases.ts'
import { listQuotas, setQuota } from './apply-quotas.ts'
import { preemptVm, rebalanceVm } from './apply-sched.ts'
import type { QuotaLimits, QuotaUsage } from '../protocols/model.ts'
import { deleteVmSnapshot, forgetVmSnapshots, reportVmSnapshot, restoreVm, snapshotVm } from './apply-snapshots.ts'
import type { VmSnapshotRecord } from '../protocols/snapshots.ts'
import { snapshotRange } from '../protocols/snapshots.ts'
import { addAdmin, approveNode, joinPolicy, mayJoin, recoverAdmin, removeAdmin, setJoinPolicy } from './apply-admins.ts'
import type { JoinPolicy } from '../protocols/commands.ts'
import { authError, authorityOf } from '../protocols/auth.ts'
import type { AuthState, CommandAuth, TermLeader } from '../protocols/auth.ts'
import type { PreemptBug } from '../placement/plans/preempt.ts'

export { encodeEnvelope, decodeEnvelope, tryDecodeEnvelope } from './envelope.ts'
export type { ReportOutcome } from './apply-vms.ts'

/** Idempotency keys are remembered for this many log indexes after their first apply. */
export const IDEMPOTENCY_WINDOW = 10_000

/** Tables that make up the model (what stateHash covers). */
export const MODEL_TABLES: readonly Table[] = ['nodes', 'vms', 'vmNames', 'vmsByNode', 'volumes', 'networks', 'admins', 'settings', 'approvals', 'recoveryVotes', 'vmSnapshots', 'vmsReleasing']

const SNAPSHOT_VERSION = 1
/** meta key: the vmsReleasing index is built (a store that predates it is indexed once at open) */
const RELEASING_INDEXED = 'releasingIndexed'

/** Rows decoded per page by the lazy listings (each, eachVm). */
const SCAN_PAGE_ROWS = 64
/** The tables listed to clients, and their records. */
interface Listed { nodes: NodeRecord, vms: VmRecord, volumes: VolumeRecord, networks: NetworkRecord, admins: AdminRecord }

interface StoredResult { index: number, result: ApplyResult }

/** Fixed-width so that key order is index order. */
function indexKey (i: number): string {
  return String(i).padStart(16, '0')
}

function dispatch (ctx: ApplyContext, cmd: Command): unknown {
  switch (cmd.type) {
    case 'RegisterNode': return registerNode(ctx, cmd)
    case 'UpdateNode': return updateNode(ctx, cmd)
    case 'RemoveNode': return removeNode(ctx, cmd)
    case 'CreateVm': return createVm(ctx, cmd)
    case 'UpdateVmSpec': return updateVmSpec(ctx, cmd)
    case 'SetVmDesiredState': return setVmDesiredState(ctx, cmd)
    case 'AssignVm': return assignVm(ctx, cmd)
    case 'ReportVmStatus': return reportVmStatus(ctx, cmd)
    case 'DeleteVm': { const r = deleteVm(ctx, cmd); forgetVmSnapshots(ctx, cmd.id); return r }
    case 'CreateVolume': return createVolume(ctx, cmd)
    case 'ResizeVolume': return resizeVolume(ctx, cmd)
    case 'SnapshotVolume': return snapshotVolume(ctx, cmd)
    case 'DeleteVolume': return deleteVolume(ctx, cmd)
    case 'ReportVolume': return reportVolume(ctx, cmd)
    case 'CreateNetwork': return createNetwork(ctx, cmd)
    case 'DeleteNetwork': return deleteNetwork(ctx, cmd)
    case 'AllocateIp': return allocateIp(ctx, cmd)
    case 'ReleaseIp': return releaseIp(ctx, cmd)
    case 'AddAdmin': return addAdmin(ctx, cmd)
    case 'RemoveAdmin': return removeAdmin(ctx, cmd)
    case 'SetJoinPolicy': return setJoinPolicy(ctx, cmd)
    case 'ApproveNode': return approveNode(ctx, cmd)
    case 'RecoverAdmin': return recoverAdmin(ctx, cmd, ctx.signer ?? '')
    case 'RenewLeases': return renewLeases(ctx, cmd)
    case 'MarkNodeDown': return markNodeDown(ctx, cmd)
    case 'StartMigration': return startMigration(ctx, cmd)
    case 'CancelMigration': return cancelMigration(ctx, cmd)
    case 'ReportMigration': return reportMigration(ctx, cmd)
    case 'ExpireMigration': return expireMigration(ctx, cmd)
    case 'EvacuateVm': return evacuateVm(ctx, cmd)
    // quotas and the scheduler's decisions: storage/apply-quotas.ts, storage/apply-sched.ts
    case 'SetQuota': return setQuota(ctx, cmd)
    case 'PreemptVm': return preemptVm(ctx, cmd)
    case 'RebalanceVm': return rebalanceVm(ctx, cmd)
    // VM memory snapshots: storage/apply-snapshots.ts
    case 'SnapshotVm': return snapshotVm(ctx, cmd)
    case 'RestoreVm': return restoreVm(ctx, cmd)
    case 'DeleteVmSnapshot': return deleteVmSnapshot(ctx, cmd)
    case 'ReportVmSnapshot': return reportVmSnapshot(ctx, cmd)
    // warm pools: storage/apply-pools.ts
    case 'SetWarmPool': return setWarmPool(ctx, cmd)
    case 'DeleteWarmPool': return deleteWarmPool(ctx, cmd)
  }
}

/** A used nonce, in the one table that holds them: ordered by the last index its signature is
 * valid at, so expiry is a range from the start. `until` is signed with the nonce, so a replayed
 * signature finds its own row. (Before, a second table keyed by signer and nonce alone answered
 * the lookup: one more put per signed command for no extra protection. Its old rows go with their
 * noncesByUntil rows.) */
function nonceKey (signer: string, nonce: string, until: number): string {
  return `${indexKey(until)}/${signer}/${nonce}`
}

/** The authority checks against a transaction (what apply sees at this index). */
/** The AuthState of a transaction. A class, not an object of closures: one is made for every
 * command checked (before proposing and on apply), and six closures each was measurable garbage
 * on a busy leader. Its methods live on the prototype: widen it with withAdmins, not a spread. */
class TxAuthState implements AuthState {
  constructor (private readonly tx: KvTx) {}
  isAdmin (p: string): boolean { return this.tx.has('admins', p) }
  isNode (p: string): boolean { return this.tx.has('nodes', p) }
  vmNode (id: string): string | null | undefined { return this.tx.get<VmRecord>('vms', id)?.assignedNode }
  nonceUsed (signer: string, nonce: string, until: number): boolean { return this.tx.has('noncesByUntil', nonceKey(signer, nonce, until)) }
  termLeader (): TermLeader | undefined { return this.tx.get<TermLeader>('meta', TERM_LEADER_KEY) }
  migrationParties (id: string, started: number): { source: string, target: string } | undefined {
    const m = this.tx.get<VmRecord>('vms', id)?.migration
    return m === undefined || m.started !== started || isFinal(m.phase) ? undefined : { source: m.source, target: m.target }
  }
}

function authState (tx: KvTx): AuthState {
  return new TxAuthState(tx)
}

/** `st` with another rule for who is an admin (the bootstrap rules of checkAuthority). */
function withAdmins (st: AuthState, isAdmin: (p: string) => boolean): AuthState {
  return {
    isAdmin,
    isNode: (p) => st.isNode(p),
    vmNode: (id) => st.vmNode(id),
    nonceUsed: (signer, nonce, until) => st.nonceUsed(signer, nonce, until),
    termLeader: () => st.termLeader(),
    migrationParties: (id, started) => st.migrationParties?.(id, started)
  }
}

/** The 'meta' row pinning who signs the scheduling decisions of the latest term that had one
 * (protocols/auth.ts leaderError). One row, not one per term: entries apply in log order and log
 * terms never decrease, so only the latest term can still be asked about. In the KV, so snapshots
 * carry it. */
const TERM_LEADER_KEY = 'termLeader'

/** An admin table with no admin at all: a cluster bootstrapped before its first admin was added.
 * Once there is one admin there is always one (RemoveAdmin refuses the last). */
function noAdmins (tx: KvTx): boolean {
  return tx.range<AdminRecord>('admins', { limit: 1 }).length === 0
}

/** Why `env` may not apply at `index`, in an entry of `term`, against `tx` (Unauthorized), or
 * null. Pure. */
export function checkAuthority (tx: KvTx, env: CommandEnvelope, index: number, term?: number): string | null {
  const st = authState(tx)
  const normal = authError(env.cmd, env.auth, index, st, term)
  // The bootstrap rules below only widen who counts as an admin, so a command the normal rule
  // accepts is accepted by them too: they are looked at (two table scans) only when it refuses.
  if (normal === null || env.cmd.type !== 'AddAdmin') return normal
  // The first admins: signed by anyone while no node is registered (the bootstrap node adds
  // every configured admin before it registers itself, so `--admin a --admin b` makes both),
  // then, while there is still no admin at all, by a registered node.
  const noNodes = tx.range<NodeRecord>('nodes', { limit: 1 }).length === 0
  if (noNodes) return authError(env.cmd, env.auth, index, withAdmins(st, () => true))
  if (noAdmins(tx)) return authError(env.cmd, env.auth, index, withAdmins(st, (p) => st.isNode(p)))
  return normal
}

function okResult (value: unknown): ApplyResult {
  return value === undefined ? { ok: true } : { ok: true, value }
}

export interface StateMachineOptions {
  /** 'checked' (the default, and the only mode a daemon uses): every command must carry the
   * signed authority it needs (protocols/auth.ts). 'unchecked' skips that check, for the
   * simulator and the tests of the tables themselves, whose commands are about Raft and apply
   * semantics and use ids that are not peer ids. */
  authority?: 'checked' | 'unchecked'
  /** planted bugs for the simulator's checkers to catch (`npm run sim -- --bug preempt-equal`);
   * a daemon never sets any */
  bugs?: ReadonlySet<PreemptBug>
}

/** For the simulator and table tests: see StateMachineOptions. */
export const UNCHECKED_AUTHORITY: StateMachineOptions = { authority: 'unchecked' }

export class StateMachine {
  private readonly kv: Kv
  private appliedIndex: number
  private readonly checked: boolean
  private readonly bugs: ReadonlySet<PreemptBug>
  /** No used nonce expires before this index (the smallest `until` in noncesByUntil, or Infinity
   * when there is none; -Infinity: not known, look). This and keysForgotten only let expire()
   * skip range scans that would find nothing more (an LMDB range in a write transaction cost
   * ~40-70 µs of CPU per applied entry); they are memory, not state, so replicas stay equal
   * whatever they hold, and any failed batch or restore resets them. */
  private nonceHorizon = -Infinity
  /** Every idempotency key remembered at or below this index is forgotten (-Infinity: not known). */
  private keysForgotten = -Infinity

  constructor (kv: Kv, opts: StateMachineOptions = {}) {
    this.kv = kv
    this.checked = opts.authority !== 'unchecked'
    this.bugs = opts.bugs ?? new Set()
    this.appliedIndex = kv.get<number>('meta', 'applied') ?? 0
    // a store from before the vmsReleasing index: derive it once from the VM records
    if (!kv.has('meta', RELEASING_INDEXED)) kv.transaction((tx) => { rebuildReleasingIndex(tx); tx.put('meta', RELEASING_INDEXED, 1) })
  }

  /**
   * Apply the committed entry at `index`. Indexes must grow but may skip (conf entries are not
   * applied here); an index at or below applied() changes nothing and answers Conflict.
   * Empty data is a leader's no-op. Undecodable or invalid data is rejected (BadMessage,
   * TooLarge, InvalidCommand, InvalidSpec) like any other command: applied still advances.
   * Errors other than a command's rejection (a failing disk) are thrown: better to stop than to diverge.
   */
  apply (index: number, data: Uint8Array, term?: number): ApplyResult {
    return this.applyBatch([{ index, term, data }])[0]
  }

  /**
   * Apply several committed entries, in order, in one store transaction: the same results and
   * the same state as apply() one by one (each command runs in its own savepoint, so a rejected
   * one leaves nothing behind), at the cost of one commit. If the store fails, nothing of the
   * batch stays and the error is thrown. `decoded`, if given, receives each entry's envelope (null
   * for a no-op, an invalid entry or one at or below applied), so callers need not decode again.
   * `term` is the entry's Raft term: a leader-bound command (AssignVm) applies only with it.
   */
  applyBatch (entries: ReadonlyArray<{ index: number, term?: number, data: Uint8Array }>, decoded?: Array<CommandEnvelope | null>): ApplyResult[] {
    const results: ApplyResult[] = []
    let last = this.appliedIndex
    try {
      this.applyEntries(entries, results, decoded, (l) => { last = l })
    } catch (e) {
      this.nonceHorizon = -Infinity // rolled back: look again
      this.keysForgotten = -Infinity
      throw e
    }
    this.appliedIndex = last
    return results
  }

  private applyEntries (entries: ReadonlyArray<{ index: number, term?: number, data: Uint8Array }>, results: ApplyResult[], decoded: Array<CommandEnvelope | null> | undefined, done: (last: number) => void): void {
    let last = this.appliedIndex
    this.kv.transaction(tx => {
      for (const { index, term, data } of entries) {
        if (index <= last) {
          decoded?.push(null)
          results.push({ ok: false, error: { kind: 'Conflict', message: `entry ${index} is at or below applied index ${last}` } })
          continue
        }
        if (data.byteLength === 0) {
          decoded?.push(null)
          results.push({ ok: true })
        } else {
          results.push(this.applyOne(tx, index, term, data, decoded))
        }
        this.expire(tx, index)
        last = index
      }
      if (last > this.appliedIndex) tx.put('meta', 'applied', last)
    })
    done(last)
  }

  applied (): number {
    return this.appliedIndex
  }

  /** The leader's check before it proposes: would `env` be authorized if it applied right after
   * the current state, in an entry of `term` (the leader's current term, which its proposals
   * get)? (Apply checks again at the real index: this only refuses early.) */
  authorityError (env: CommandEnvelope, term?: number): string | null {
    if (!this.checked) return null
    return checkAuthority(this.kv, env, this.appliedIndex + 1, term) // only reads
  }

  /** The stored result of an idempotency key, if it is still remembered. */
  resultFor (key: string): ApplyResult | undefined {
    return this.kv.get<StoredResult>('idempotency', key)?.result
  }

  private applyOne (tx: KvTx, index: number, term: number | undefined, data: Uint8Array, decoded?: Array<CommandEnvelope | null>): ApplyResult {
    const d = tryDecodeEnvelope(data)
    decoded?.push(d.ok ? d.env : null)
    const key = d.ok ? d.env.key : keyOfInvalid(data)
    if (key !== undefined) {
      // a retry of a command already applied (or rejected) gets the same answer and changes nothing
      const prior = tx.get<StoredResult>('idempotency', key)
      if (prior !== undefined) return prior.result
    }
    let result: ApplyResult
    if (!d.ok) {
      result = { ok: false, error: d.error }
    } else {
      // a savepoint: a rejection may come after some writes, and must leave none of them
      const save = new OverlayTx(tx)
      try {
        if (this.checked) {
          const denied = checkAuthority(save, d.env, index, term)
          if (denied !== null) throw BlixardError.quiet('Unauthorized', denied)
          // a validly signed command uses up its nonce whatever its outcome: a captured signature
          // never applies twice, not even after the state changed so that it would now succeed
          this.useNonce(tx, d.env.auth as CommandAuth)
          // and an authorized scheduling decision pins its term's leader, whatever its outcome
          if (authorityOf(d.env.cmd) === 'leader' && term !== undefined) this.pinTermLeader(tx, term, (d.env.auth as CommandAuth).signer)
        }
        result = okResult(dispatch({ tx: save, at: d.env.at, signer: d.env.auth?.signer, ...(this.bugs.size > 0 ? { bugs: this.bugs } : {}) }, d.env.cmd))
        save.commit()
      } catch (e) {
        if (e instanceof BlixardError) result = { ok: false, error: e.toJSON() }
        else throw e
      }
    }
    this.remember(tx, index, key, result)
    return result
  }

  /** Forget idempotency keys older than the window as of `index` (in index order, so every
   * replica forgets the same keys at the same index). */
  private expire (tx: KvTx, index: number): void {
    // nonces whose signature expired before this index can no longer apply anyway (a signature
    // is valid for ~50 000 entries, so most entries have none to forget: the scan is skipped)
    if (this.nonceHorizon < index) {
      for (const [k] of tx.range<number>('noncesByUntil', { end: indexKey(index) })) {
        tx.delete('noncesByUntil', k)
        tx.delete('nonces', k.slice(17)) // the row a replica written before one table was enough also has
      }
      const next = tx.range<number>('noncesByUntil', { limit: 1 })
      this.nonceHorizon = next.length === 0 ? Infinity : Number(next[0][0].slice(0, 16))
    }
    const horizon = index - IDEMPOTENCY_WINDOW
    if (horizon <= 0) return
    if (this.keysForgotten === horizon - 1) {
      // entries apply one index after the other, so only the key remembered at `horizon` is due
      const ik = indexKey(horizon)
      const key = tx.get<string>('idempotencyByIndex', ik)
      if (key !== undefined) { tx.delete('idempotencyByIndex', ik); tx.delete('idempotency', key) }
    } else {
      for (const [ik, key] of tx.range<string>('idempotencyByIndex', { end: indexKey(horizon + 1) })) {
        tx.delete('idempotencyByIndex', ik)
        tx.delete('idempotency', key)
      }
    }
    this.keysForgotten = horizon
  }

  private useNonce (tx: KvTx, a: CommandAuth): void {
    if (a.until < this.nonceHorizon) this.nonceHorizon = a.until
    tx.put('noncesByUntil', nonceKey(a.signer, a.nonce, a.until), 1)
  }

  private pinTermLeader (tx: KvTx, term: number, leader: string): void {
    const pin = tx.get<TermLeader>('meta', TERM_LEADER_KEY)
    if (pin?.term !== term) tx.put('meta', TERM_LEADER_KEY, { term, leader })
  }

  private remember (tx: KvTx, index: number, key: string | undefined, result: ApplyResult): void {
    if (key === undefined) return
    const stored: StoredResult = { index, result }
    tx.put('idempotency', key, stored)
    tx.put('idempotencyByIndex', indexKey(index), key)
  }

  // ---- snapshots ----

  /** The whole state (every table, applied index included) as CBOR. */
  snapshot (): Uint8Array {
    const tables: Record<string, Array<[string, Uint8Array]>> = {}
    for (const t of TABLES) tables[t] = this.kv.rawRange(t)
    return encodeCbor({ version: SNAPSHOT_VERSION, applied: this.appliedIndex, tables })
  }

  /** Replace everything with a snapshot's state, atomically; applied becomes `index`. */
  restore (data: Uint8Array, index: number): void {
    const why = validateSnapshot(data)
    if (why != null) throw new BlixardError('BadMessage', why)
    const tables = (decodeCbor(data) as { tables: Record<string, unknown> }).tables
    this.kv.transaction(tx => {
      for (const t of TABLES) {
        tx.clear(t)
        const rows = tables[t]
        if (rows === undefined) continue
        if (!Array.isArray(rows)) throw new BlixardError('BadMessage', `snapshot table ${t} is not a list`)
        for (const row of rows) {
          if (!Array.isArray(row) || typeof row[0] !== 'string' || !(row[1] instanceof Uint8Array)) throw new BlixardError('BadMessage', `bad row in snapshot table ${t}`)
          tx.putRaw(t, row[0], row[1])
        }
      }
      // a snapshot from before the vmsReleasing index: derive it from the VM records
      if (tables.vmsReleasing === undefined) rebuildReleasingIndex(tx)
      tx.put('meta', RELEASING_INDEXED, 1)
      tx.put('meta', 'applied', index)
    })
    this.appliedIndex = index
    this.nonceHorizon = -Infinity
    this.keysForgotten = -Infinity
  }

  // ---- digests ----

  /** A digest of the model tables (not the applied index or idempotency bookkeeping), so replicas
   * can be compared, and so a rejected command provably changed nothing. */
  stateHash (): string {
    return this.digest(MODEL_TABLES)
  }

  /** A digest of every table, bookkeeping included. */
  fullStateHash (): string {
    return this.digest(TABLES)
  }

  private digest (tables: readonly Table[]): string {
    const h = createHash('sha256')
    const len = Buffer.alloc(4)
    const add = (b: Uint8Array): void => { len.writeUInt32BE(b.byteLength); h.update(len); h.update(b) }
    for (const t of tables) {
      add(Buffer.from(t))
      const rows = this.kv.rawRange(t)
      len.writeUInt32BE(rows.length); h.update(len)
      for (const [k, v] of rows) { add(Buffer.from(k, 'utf8')); add(v) }
    }
    return h.digest('hex')
  }

  // ---- queries (local, possibly stale: linearizability is the caller's ReadIndex) ----

  getNode (id: string): NodeRecord | undefined { return this.kv.get<NodeRecord>('nodes', id) }
  listNodes (): NodeRecord[] { return this.values<NodeRecord>('nodes') }
  getVm (id: string): VmRecord | undefined { return this.kv.get<VmRecord>('vms', id) }
  getVmByName (name: string): VmRecord | undefined {
    const id = this.kv.get<string>('vmNames', name)
    return id === undefined ? undefined : this.getVm(id)
  }

  /** All VMs in id order; with `node`, those assigned to it (null: the unassigned ones). */
  listVms (filter: { node?: string | null } = {}): VmRecord[] {
    if (filter.node === undefined) return this.values<VmRecord>('vms')
    if (filter.node === null) return this.values<VmRecord>('vms').filter(v => v.assignedNode === null)
    return vmIdsOn(this.kv, filter.node).map(id => this.kv.get<VmRecord>('vms', id)).filter((v): v is VmRecord => v !== undefined)
  }

  /** The VMs still releasing `node` (taken off it, their guest maybe still there), by index
   * (sim/checkers/scheduling.ts checks it against the records). */
  listVmsReleasing (node: string): VmRecord[] {
    return vmIdsReleasing(this.kv, node).map(id => this.kv.get<VmRecord>('vms', id)).filter((v): v is VmRecord => v !== undefined)
  }

  /** listVms read lazily, a page at a time: a caller that stops early (an RPC answer past its byte
   * budget, node/net/rpc.ts ListAnswer) has decoded only the records it used. */
  * eachVm (filter: { node?: string | null } = {}): Generator<VmRecord, void, undefined> {
    if (filter.node === undefined) { yield * this.each('vms'); return }
    if (filter.node === null) { for (const v of this.each('vms')) if (v.assignedNode === null) yield v; return }
    for (const id of vmIdsOn(this.kv, filter.node)) { const v = this.kv.get<VmRecord>('vms', id); if (v !== undefined) yield v }
  }

  /** A listed table's records in key order, read SCAN_PAGE_ROWS at a time (see eachVm). */
  * each<T extends keyof Listed> (t: T): Generator<Listed[T], void, undefined> {
    let start: string | undefined
    for (;;) {
      const rows = this.kv.range<Listed[T]>(t, { start, limit: SCAN_PAGE_ROWS })
      for (const [, v] of rows) yield v
      if (rows.length < SCAN_PAGE_ROWS) return
      start = rows[rows.length - 1][0] + '\u0000' // the least key after the last one read
    }
  }

  getVolume (name: string): VolumeRecord | undefined { return this.kv.get<VolumeRecord>('volumes', name) }
  listVolumes (): VolumeRecord[] { return this.values<VolumeRecord>('volumes') }
  getNetwork (name: string): NetworkRecord | undefined { return this.kv.get<NetworkRecord>('networks', name) }
  listNetworks (): NetworkRecord[] { return this.values<NetworkRecord>('networks') }
  /** the declared warm pools, by name */
  listWarmPools (): WarmPoolRecord[] { return listPools(this.kv) }

  /** VM memory snapshots, in (VM id, name) order; with `vm`, that VM's only. */
  listVmSnapshots (vm?: string): VmSnapshotRecord[] {
    return this.kv.range<VmSnapshotRecord>('vmSnapshots', vm === undefined ? {} : snapshotRange(vm)).map(([, v]) => v)
  }
  listAdmins (): AdminRecord[] { return this.values<AdminRecord>('admins') }
  /** Is the admin table empty? (One key read, not the whole table.) */
  noAdmins (): boolean { return noAdmins(this.kv) }
  /** Has no node registered yet? (One key read.) */
  noNodes (): boolean { return this.kv.range<NodeRecord>('nodes', { limit: 1 }).length === 0 }
  /** Every project with a quota or with VMs, its limits (null: none) and what it holds. */
  listQuotas (): Array<{ project: string, limits: QuotaLimits | null, usage: QuotaUsage }> { return listQuotas(this.kv) }
  isAdmin (peerId: string): boolean { return this.kv.has('admins', peerId) }
  joinPolicy (): JoinPolicy { return joinPolicy(this.kv) }
  /** may this peer join (be added as a learner, register as a node) under the join policy? */
  mayJoin (peerId: string): boolean { return mayJoin(this.kv, peerId) }

  private values<T>(t: Table): T[] {
    return this.kv.range<T>(t).map(([, v]) => v)
  }
}

/** Checks that `data` is a state-machine snapshot restore() accepts, without touching any store:
 * null when it is, else what is wrong. Used before a snapshot from the wire is persisted. */
export function validateSnapshot (data: Uint8Array): string | null {
  let snap: unknown
  try { snap = decodeCbor(data) } catch (e) { return `not a state machine snapshot: ${e instanceof Error ? e.message : String(e)}` }
  const o = snap as { version?: unknown, tables?: unknown } | null
  if (o == null || typeof o !== 'object' || o.version !== SNAPSHOT_VERSION || o.tables == null || typeof o.tables !== 'object' || Array.isArray(o.tables)) {
    return `not a state machine snapshot (version ${SNAPSHOT_VERSION})`
  }
  const tables = o.tables as Record<string, unknown>
  for (const t of Object.keys(tables)) {
    if (!(TABLES as readonly string[]).includes(t)) return `snapshot has an unknown table ${t.slice(0, 64)}`
    const rows = tables[t]
    if (!Array.isArray(rows)) return `snapshot table ${t} is not a list`
    for (const row of rows) {
      if (!Array.isArray(row) || row.length !== 2 || typeof row[0] !== 'string' || !(row[1] instanceof Uint8Array)) return `bad row in snapshot table ${t}`
      try { decodeCbor(row[1]) } catch { return `undecodable value for ${row[0].slice(0, 64)} in snapshot table ${t}` }
    }
  }
  return null
}
