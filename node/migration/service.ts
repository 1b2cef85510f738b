// The host side of a live migration: what this node does for each migration record
// (storage/apply-migration.ts) it takes part in, driven by the record's phase, never by a message
// from the other host. So a restarted daemon, or a new leader, finds the same work to do.
//
//   target, preparing    — builds the host side without fencing the source's disks, starts QEMU
//                          with the same launch spec and `-incoming defer`, has it listen with TLS on
//                          this node's address under a fresh key (node/migration/tls.ts), accepts
//                          /blixard/migrate/1 from the source's peer id only and answers it with the
//                          key and the port, reports target-ready (while QEMU starts: the answer waits
//                          for it). Transport 'stream' instead: `-incoming unix:…`, the bytes bridged
//                          through the stream
//   source, preparing    — primes its QEMU meanwhile (QMP, migration parameters)
//   source, transferring — asks the target for its offer over the stream, then migrates its QEMU
//                          (the driver's own QMP connection) straight to the target's with TLS (or,
//                          transport 'stream', into a local socket that MigrationStreams carries to
//                          the target); reports progress at most every
//                          PROGRESS_REPORT_MS, then source-completed with QEMU's final figures: the
//                          switchover (the source QEMU is paused for good)
//   target, switched     — once its QEMU runs the guest: announce-self (the network learns the
//                          MAC's new port), then reports target-running; the source's QEMU quits
//                          once the switchover committed (its disks closed: locks released)
//   either, on failure   — reports failed; before switchover that aborts to the source
//
// On the leader it also watches that every migration in flight makes steps: one whose phase and
// figures stayed the same for MIGRATION_STALL_MS (nobody drives it: a party's service lost its
// part, a report never committed) is ended by ExpireMigration, the leader's decision signed for its
// term, by the switchover rule. A new leader starts watching afresh: it finishes or aborts what
// its predecessor left.
//
// The agent (node/agent.ts) leaves a VM alone while `holds` says so: no restart or stop of the
// source's guest mid-move, no cleanup of the target's waiting QEMU. When the record ends, the agent
// does what is left: the host that no longer owns the VM removes its QEMU (the paused source after
// a move, the waiting target after an abort).
import { join } from 'node:path'
import { stat } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ApplyResult, CommandEnvelope, MigrationReport } from '../../protocols/commands.ts'
import type { VmRecord } from '../../protocols/model.ts'
import { migrationId } from '../../protocols/migration-phases.ts'
import type { MigrationFigures, MigrationRecord } from '../../protocols/migration-phases.ts'
import { activeMigration } from '../../storage/migration-guard.ts'
import type { StateMachine } from '../../storage/state-machine.ts'
import type { QemuDriver } from '../qemu/driver.ts'
import { launchSpecFromVm } from '../qemu/launch-spec.ts'
import type { HostBindings } from '../qemu/launch-spec.ts'
import { runtimePaths } from '../qemu/paths.ts'
import { announceSelf, cancelMigration, migrateTo, queryMigrate, setMigrationParameters, startMigration, waitForMigration } from '../qemu/migrate.ts'
import type { MigrationProgress } from '../qemu/migrate.ts'
import type { QmpClient } from '../qemu/qmp.ts'
import { QemuError } from '../qemu/errors.ts'
import { loadTinyGuest } from '../qemu/tiny-guest.ts'
import type { TinyGuest } from '../qemu/tiny-guest.ts'
import { MigrationStreams } from './stream.ts'
import type { BridgeStats, BridgeTimes, MigrationHost, MigrationTransport, TlsHandshake } from './stream.ts'
import { DEFAULT_MULTIFD_CHANNELS, MAX_MULTIFD_CHANNELS, PSK_IDENTITY, clearTls, credsId, hostTlsPriority, listenTls, migrateTls, newPsk, removePskDir, writePskDir } from './tls.ts'
import type { TlsOffer } from './tls.ts'
import type { Logger } from '../log.ts'
import type { RpcClient } from '../net/rpc.ts'
import type { ParamsOf } from '../../protocols/rpc.ts'
import { CONSOLE_HISTORY_PULL_MS, pullConsoleHistory, serveConsoleHistory } from './console-history.ts'
import { BlixardError } from '../../protocols/errors.ts'

/** How soon the target asks the source for the console history again after a Conflict. */
const HISTORY_RETRY_MS = 200
/** How often records are looked at besides the kicks on every applied command. */
export const MIGRATION_LOOP_MS = 1_000
/** Progress reports go through Raft: one a second is enough for a person watching. */
export const PROGRESS_REPORT_MS = 1_000
/** A report that did not commit (no leader) is tried again after this, while the record waits for it. */
const REPORT_RETRY_MS = 500
/** How long a report is retried before the service gives up on it (a new leader or a mark-down decides then). */
const REPORT_GIVE_UP_MS = 60_000
/** The target QEMU creates its incoming socket at start: waited for this long. */
const INCOMING_SOCKET_WAIT_MS = 10_000
/** How often the target looks for that socket: QEMU makes it within tens of ms of its spawn, and
 * every poll period of waiting is set-up time the move pays before any byte moves. */
const INCOMING_SOCKET_POLL_MS = 5
/** The target's guest runs within this after the switchover, or the move failed on the target. */
const RESUME_WAIT_MS = 30_000
/** How long the target waits for the source's stream once it is ready. */
const EXPECT_STREAM_MS = 60_000
/** tls: how often the target asks its QEMU whether the migration's connection is in (then its key
 * file goes), and for how long at most */
const KEY_WATCH_POLL_MS = 100
const KEY_WATCH_MS = EXPECT_STREAM_MS + 30_000
const POLL_MS = 50
/** A target without a lease yet (it has just started) waits this long for its first one; the
 * first renewal is acknowledged within a renew interval or two (node/core/lease-rules.ts). */
const TARGET_LEASE_WAIT_MS = 15_000
const LEASE_POLL_MS = 250
/** query-migrate replies that may come late (a loaded host) before the source gives up. */
const MAX_LATE_QMP_REPLIES = 5
/** How long a cancelled migration may take to say how it ended. */
const CANCEL_SETTLE_MS = 10_000
/** A migration with no step (phase or figures) for this long is ended by the leader. A moving one
 * reports figures every PROGRESS_REPORT_MS, so only one nobody drives gets there. */
export const MIGRATION_STALL_MS = 60_000

/** What the leader remembers of a migration in flight: its last step, and since when (leader's clock). */
export type StallWatch = Map<string, { sig: string, since: number }>

/** The migrations in flight that made no step for `stallMs` by `now`, updating `seen` (pure but for
 * `seen`, which only this leader keeps). */
export function stalledMigrations (vms: VmRecord[], seen: StallWatch, now: number, stallMs: number): MigrationRecord[] {
  const out: MigrationRecord[] = []
  const live = new Set<string>()
  for (const vm of vms) {
    const m = activeMigration(vm)
    if (m == null) continue
    const id = migrationId(m)
    live.add(id)
    // bytes, not times: a stuck stream still reports a growing total time
    const sig = JSON.stringify([m.phase, m.figures?.transferredBytes ?? null, m.figures?.remainingBytes ?? null, m.cancelRequested ?? null])
    const s = seen.get(id)
    if (s == null || s.sig !== sig) { seen.set(id, { sig, since: now }); continue }
    if (now - s.since >= stallMs) { out.push(m); s.since = now } // judged once per stall period
  }
  for (const id of seen.keys()) if (!live.has(id)) seen.delete(id)
  return out
}

export interface MigrationServiceDeps {
  self: () => string
  sm: StateMachine
  driver: QemuDriver
  host: MigrationHost
  dataDir: string
  propose: (env: CommandEnvelope) => Promise<ApplyResult>
  /** the host side (TAPs, drives) of a VM about to run here (node/host-resources.ts) */
  bindings: (vm: VmRecord, opts: { fence: boolean }) => Promise<Omit<HostBindings, 'tinyGuest'>>
  /** why no guest may start here now (no liveness lease: node/ha/service.ts), or null */
  mayRun?: () => string | null
  guestDir?: string
  /** is this node the Raft leader (it judges stalled migrations)? */
  isLeader?: () => boolean
  stallMs?: number
  /** bytes per second QEMU may send (default: QEMU's own limit); BLIXARD_MIGRATION_MAX_BANDWIDTH */
  maxBandwidth?: number
  /** how memory travels (default tls); BLIXARD_MIGRATION_TRANSPORT. Both parties must agree: the
   * target refuses a source that asks for the other one, with the reason */
  transport?: MigrationTransport
  /** tls: the IP address this node's QEMU listens on for an incoming migration (the node's own,
   * as its peers reach it); default 127.0.0.1 */
  listenAddress?: () => string | null
  /** the TCP ports a target's QEMU may listen on (the firewall's range); absent: any the kernel picks */
  migrationPorts?: { low: number, high: number }
  /** tls: the multifd channels this node's QEMU listens with as a target (0: one stream; default
   * DEFAULT_MULTIFD_CHANNELS); BLIXARD_MIGRATION_MULTIFD. The source follows the target's offer */
  multifd?: number
  /** an RPC client to a member (the target takes the guest's console history from the source) */
  client?: (peer: string) => Promise<RpcClient>
  log: Logger
  now?: () => number
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

function figuresOf (p: MigrationProgress): MigrationFigures {
  return {
    transferredBytes: p.transferredBytes,
    remainingBytes: p.remainingBytes,
    totalBytes: p.totalBytes,
    dirtyPagesRate: p.dirtyPagesRate,
    expectedDowntimeMs: p.expectedDowntimeMs,
    downtimeMs: p.downtimeMs,
    totalTimeMs: p.totalTimeMs
  }
}

/**
 * Marks of one party's part in a migration, as ms since the record's start (the proposer's clock;
 * on one machine, or hosts with synchronised clocks, the source's and the target's timelines line
 * up): logged as one line when the part ends, so the set-up cost of a move can be read off the
 * two hosts' logs ('migration timeline').
 */
export class MigrationTimeline {
  readonly marks: Record<string, number> = {}
  constructor (private readonly started: number, private readonly clock: () => number = Date.now) {}
  mark (name: string, at = this.clock()): void { this.marks[name] = at - this.started }
  /** a stream's moments (BridgeTimes), prefixed */
  stream (prefix: string, t: BridgeTimes): void {
    for (const [k, v] of Object.entries(t)) if (typeof v === 'number') this.mark(`${prefix}.${k}`, v)
  }
}

export class MigrationService {
  private readonly streams: MigrationStreams
  /** migration ids with a step running here */
  private readonly busy = new Set<string>()
  /** migration ids whose step for this phase already ran here (so a restarted daemon, which has
   * none, knows it lost its part: see kick) */
  private readonly done = new Map<string, MigrationRecord['phase']>()
  /** source side: migration ids whose QEMU got its migration parameters while the target prepared */
  private readonly primed = new Set<string>()
  private timer: NodeJS.Timeout | null = null
  private readonly stalls: StallWatch = new Map()
  private tiny: TinyGuest | null = null
  private stopped = false

  constructor (private readonly d: MigrationServiceDeps) {
    this.streams = new MigrationStreams(d.host)
  }

  private now (): number { return (this.d.now ?? Date.now)() }

  async start (): Promise<void> {
    await this.streams.start()
    try { this.tiny = await loadTinyGuest(this.d.guestDir) } catch { this.tiny = null }
    this.timer = setInterval(() => { this.kick() }, MIGRATION_LOOP_MS)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
    await this.streams.stop()
  }

  /** internal.consoleHistory on the source: the guest's console so far, for the move's target only. */
  consoleHistory (peer: string, p: ParamsOf<'internal.consoleHistory'>): AsyncGenerator<{ text: string }> {
    return serveConsoleHistory({ self: this.d.self, getVm: (id) => this.d.sm.getVm(id) ?? null, driver: this.d.driver }, peer, p)
  }

  /** The agent must leave this VM alone: a migration this host takes part in is in flight. */
  holds (vmId: string): boolean {
    const vm = this.d.sm.getVm(vmId)
    const m = vm == null ? null : activeMigration(vm)
    return m != null && (m.source === this.d.self() || m.target === this.d.self())
  }

  /** Looks at every migration in flight this host takes part in (on a timer, and on every applied command). */
  kick (): void {
    if (this.stopped) return
    const me = this.d.self()
    const live = new Set<string>()
    for (const vm of this.d.sm.listVms()) {
      const m = activeMigration(vm)
      if (m == null || (m.source !== me && m.target !== me)) continue
      const id = migrationId(m)
      live.add(id)
      if (this.busy.has(id) || this.done.get(id) === m.phase) continue
      const step = this.stepFor(vm, m, m.target === me ? 'target' : 'source')
      if (step == null) continue
      this.busy.add(id)
      step().catch((err: unknown) => { this.d.log.warn('migration step failed', { vmId: vm.id, err }) })
        .finally(() => { this.busy.delete(id); this.done.set(id, m.phase); this.kick() })
    }
    for (const id of this.done.keys()) if (!live.has(id)) this.done.delete(id)
    for (const id of this.primed) if (!live.has(id)) this.primed.delete(id)
    this.judgeStalls()
  }

  /** The leader's part: end a migration nobody drives any more. */
  private judgeStalls (): void {
    if (this.d.isLeader?.() !== true) { this.stalls.clear(); return }
    const stallMs = this.d.stallMs ?? MIGRATION_STALL_MS
    for (const m of stalledMigrations(this.d.sm.listVms(), this.stalls, this.now(), stallMs)) {
      const reason = `no step in phase ${m.phase} for ${Math.round(stallMs / 1000)} s`
      this.d.log.warn('migration stalled: ending it', { vmId: m.vm, phase: m.phase, reason })
      void this.d.propose({ cmd: { type: 'ExpireMigration', vm: m.vm, started: m.started, phase: m.phase, reason }, at: this.now() })
        .then((r) => { if (!r.ok) this.d.log.warn('ExpireMigration refused', { vmId: m.vm, error: r.error }) }, (err: unknown) => { this.d.log.debug('ExpireMigration not committed', { vmId: m.vm, err }) })
    }
  }

  private stepFor (vm: VmRecord, m: MigrationRecord, role: 'source' | 'target'): (() => Promise<void>) | null {
    if (role === 'target') {
      switch (m.phase) {
        case 'preparing': return async () => { await this.prepareTarget(vm, m) }
        // we are ready but have no expectation of the stream: this daemon restarted since
        case 'transferring': return this.done.has(migrationId(m)) ? null : async () => { await this.report(m, 'failed', { reason: 'the target daemon restarted while the source was sending' }) }
        case 'switched': return async () => { await this.finishTarget(vm, m) }
        default: return null
      }
    }
    if (m.phase === 'preparing') return async () => { await this.primeSource(vm, m) }
    return m.phase === 'transferring' ? async () => { await this.migrateSource(vm, m) } : null
  }

  /** While the target prepares: the source's QMP connection and QEMU's migration parameters, so
   * that once the target is ready only `migrate` is left (three QMP round trips less on the
   * critical path; under load each was 100-200 ms). Best effort: migrateSource sets them if not. */
  private async primeSource (vm: VmRecord, m: MigrationRecord): Promise<void> {
    try {
      const qmp = await this.d.driver.qmp(vm.id)
      await setMigrationParameters(qmp, this.migrationOptions())
      this.primed.add(migrationId(m))
    } catch (err) {
      this.d.log.debug('source not primed for the migration (set when it starts)', { vmId: vm.id, err })
    }
  }

  private migrationOptions (): { maxBandwidth?: number } {
    return this.d.maxBandwidth != null ? { maxBandwidth: this.d.maxBandwidth } : {}
  }

  // ---- target ----

  private async prepareTarget (vm: VmRecord, m: MigrationRecord): Promise<void> {
    const id = migrationId(m)
    const log = this.d.log.child({ vmId: vm.id, migration: id })
    const tl = new MigrationTimeline(m.started)
    tl.mark('target.preparing')
    try {
      // a target that has just (re)started holds no lease for a moment: it waits for its first
      // one rather than failing a move that placement sent to a ready node
      const held = await heldFor(() => this.d.mayRun?.() ?? null, TARGET_LEASE_WAIT_MS)
      if (held != null) throw new Error(`this host may not run guests now: ${held}`)
      tl.mark('target.leaseHeld')
      if (vm.spec.image.kind === 'tiny' && this.tiny == null) throw new Error('no tiny guest on this host; run scripts/build-tiny-guest.sh')
      // a QEMU of this VM left here by an earlier attempt (the VM is not ours: its source runs it)
      // goes first, with its TAPs, before the new ones are made
      await this.d.driver.cleanup(vm.id)
      // the TAPs on the network's bridge (and its VLAN/VXLAN port) exist before QEMU starts, so
      // they are in place long before the switchover; the MAC is the VM's own (names.ts macFor)
      const host = await this.d.bindings(vm, { fence: false })
      tl.mark('target.hostReady')
      const dir = runtimePaths(this.d.dataDir, vm.id).dir
      const incoming = join(dir, 'incoming.sock')
      const tls = this.transport() === 'tls'
      // the guest keeps the address it has on the source: this host reports it once the guest runs
      const spec = { ...launchSpecFromVm(vm, { tinyGuest: this.tiny ?? undefined, ...host }), readiness: 'qmp' as const, incoming: tls ? 'defer' : incoming, ...(vm.status.ip != null ? { resumedIp: vm.status.ip } : {}) }
      await this.d.driver.start(spec)
      tl.mark('target.qemuSpawned')
      if (tls) {
        const offer = this.offerTls(vm.id, dir, log)
        offer.catch(() => {}) // read by the answer and below
        const answered = this.streams.expect({ id, allow: (p) => p.toString() === m.source, offer: async () => await offer, timeoutMs: EXPECT_STREAM_MS })
        answered.then((st) => {
          tl.stream('target.handshake', st.times)
          log.info('migration offer sent: the source QEMU connects with TLS', { ms: Math.round(st.durationMs) })
        }, (err: unknown) => {
          log.warn('migration handshake failed', { err })
          void this.report(m, 'failed', { reason: `handshake with the source: ${(err as Error).message}` })
        })
        log.info('target ready: QEMU starts and waits for the incoming migration (TLS)', { source: m.source })
        await Promise.all([this.report(m, 'target-ready').then(() => { tl.mark('target.readyCommitted') }), offer.then(() => { tl.mark('target.incomingListening') })])
        log.info('migration timeline (target, preparing)', { marks: tl.marks })
        return
      }
      // only the record's source may open the stream, for this attempt only; it may come before
      // QEMU listens (the ready report below does not wait for that), and then waits for it
      const bridged = this.streams.expect({ id, allow: (p) => p.toString() === m.source, targetSocket: incoming, timeoutMs: EXPECT_STREAM_MS, connectWaitMs: INCOMING_SOCKET_WAIT_MS })
      bridged.then((st) => {
        tl.stream('target.stream', st.times)
        log.info('migration stream ended', { receivedBytes: st.receivedBytes, ms: Math.round(st.durationMs) })
        log.info('migration timeline (target, preparing)', { marks: tl.marks })
      }, (err: unknown) => {
        // no stream, or it broke: the move cannot finish here (a stale record ignores the report)
        log.warn('migration stream failed', { err })
        void this.report(m, 'failed', { reason: `stream from the source: ${(err as Error).message}` })
      })
      // the ready report's Raft round trip overlaps QEMU's start-up (both took 0.5-0.7 s each at
      // load ~22); a QEMU that never listens fails the move (the report of it aborts to the source)
      const listening = waitForPath(incoming, INCOMING_SOCKET_WAIT_MS, INCOMING_SOCKET_POLL_MS).then(() => { tl.mark('target.incomingListening') })
      log.info('target ready: QEMU starts and waits for the incoming migration', { source: m.source })
      await Promise.all([this.report(m, 'target-ready').then(() => { tl.mark('target.readyCommitted') }), listening])
    } catch (err) {
      log.warn('cannot prepare the target', { err })
      await this.report(m, 'failed', { reason: (err as Error).message })
    }
  }

  /** tls: a fresh key in its private file, and the target QEMU listening on this node's address
   * with it. The key file goes once the migration's connection is in (or the wait ends). */
  private async offerTls (vmId: string, dir: string, log: Logger): Promise<TlsOffer> {
    const key = newPsk()
    const pskDir = await writePskDir(dir, PSK_IDENTITY, key)
    try {
      const qmp = await this.d.driver.qmp(vmId)
      const host = this.d.listenAddress?.() ?? '127.0.0.1'
      const multifd = this.d.multifd ?? DEFAULT_MULTIFD_CHANNELS
      const port = await listenTls(qmp, { host, pskDir, credsId: credsId(), multifd, priority: hostTlsPriority(), ...(this.d.migrationPorts !== undefined ? { ports: this.d.migrationPorts } : {}) })
      // with multifd QEMU leaves `setup` only once every channel is in (each reads the key at its handshake)
      void removeKeyWhenConnected(qmp, pskDir).then(() => { log.debug('migration key file removed', { pskDir }) })
      return { host, port, identity: PSK_IDENTITY, key, multifd }
    } catch (err) {
      await removePskDir(pskDir)
      throw err
    }
  }

  private transport (): MigrationTransport { return this.d.transport ?? 'tls' }

  /** After the switchover: waits for the guest to run here, has its NICs announce their new place
   * (announce-self), and reports target-running. */
  private async finishTarget (vm: VmRecord, m: MigrationRecord): Promise<void> {
    const log = this.d.log.child({ vmId: vm.id, migration: migrationId(m) })
    const tl = new MigrationTimeline(m.started)
    tl.mark('target.switchedSeen')
    // taken while the guest resumes; stored before target-running, since once the move ends the
    // source removes its runtime dir and the console with it
    const history = this.takeConsoleHistory(vm, m, log).then(() => { tl.mark('target.historyStored') })
    const deadline = this.now() + RESUME_WAIT_MS
    for (;;) {
      const st = await this.d.driver.status(vm.id).catch(() => null)
      if (st?.state === 'running' && st.ready) break
      if (st == null || st.state !== 'running') { await this.report(m, 'failed', { reason: 'the target QEMU is not running after the switchover' }); return }
      if (this.now() > deadline) { await this.report(m, 'failed', { reason: `the target QEMU did not resume within ${RESUME_WAIT_MS} ms` }); return }
      // the driver marks it ready on QEMU's RESUME event: wake on it, poll as a fallback
      await this.d.driver.waitForEvent(vm.id, (e) => e.type === 'running', POLL_MS).catch(() => {})
    }
    tl.mark('target.resumed')
    await this.announce(vm, log)
    tl.mark('target.announced')
    await history
    await this.report(m, 'target-running')
    tl.mark('target.runningCommitted')
    log.info('migration timeline (target, switched)', { marks: tl.marks })
  }

  /** The guest's console before the move, from the source, stored beside this host's console log
   * (the driver's logs() reads it first). Without it `vm logs` would begin at the switchover: when
   * it cannot be had, a line in its place says so. Never fails the move. */
  private async takeConsoleHistory (vm: VmRecord, m: MigrationRecord, log: Logger): Promise<void> {
    if (this.d.client == null) return
    let text: string
    try {
      const deadline = this.now() + CONSOLE_HISTORY_PULL_MS
      for (;;) {
        try {
          text = await pullConsoleHistory(await this.d.client(m.source), m, Math.max(1, deadline - this.now()))
          break
        } catch (err) {
          // the source's replica may not have applied the switchover yet (its report committed
          // on the leader, and here, first): asked again until it has
          if (!(err instanceof BlixardError && err.kind === 'Conflict') || this.now() > deadline) throw err
          await sleep(HISTORY_RETRY_MS)
        }
      }
      log.info('console history taken over from the source', { bytes: Buffer.byteLength(text) })
    } catch (err) {
      log.warn('console history not taken over from the source', { err })
      text = `[blixard: the console before the live move from ${this.d.sm.getNode(m.source)?.name ?? m.source} could not be fetched: ${(err as Error).message}]\n`
    }
    await this.d.driver.writeConsoleHistory(vm.id, text).catch((err: unknown) => { log.warn('console history not stored', { err }) })
  }

  /** announce-self on the guest's QEMU here. QEMU announces on its own after an incoming migration
   * too; this one is issued once the target knows the guest runs, and its answer is logged. A
   * failure is logged, never a reason to fail the move: the guest runs, and its next packet
   * teaches the network its place anyway. */
  private async announce (vm: VmRecord, log: Logger): Promise<void> {
    try {
      const qmp = await this.d.driver.qmp(vm.id)
      const answer = await announceSelf(qmp)
      log.info('network announced on the target (announce-self)', { nics: vm.spec.networks.length, answer })
    } catch (err) {
      log.warn('announce-self failed on the target', { err })
    }
  }

  // ---- source ----

  private async migrateSource (vm: VmRecord, m: MigrationRecord): Promise<void> {
    const id = migrationId(m)
    const log = this.d.log.child({ vmId: vm.id, migration: id })
    let qmp: QmpClient | undefined
    const tl = new MigrationTimeline(m.started)
    tl.mark('source.transferringSeen')
    let creds: string | null = null
    let control: TlsHandshake | null = null
    try {
      const dir = runtimePaths(this.d.dataDir, vm.id).dir
      let done: Promise<BridgeStats | null> = Promise.resolve(null)
      if (this.transport() === 'tls') {
        // the offer (a round trip to the target, which answers once its QEMU listens) while QMP connects
        const [hs, q] = await Promise.all([this.streams.handshakeTls({ id, peer: peerIdFromString(m.target) }), this.d.driver.qmp(vm.id)])
        control = hs
        qmp = q
        tl.stream('source.handshake', hs.times)
        log.info('migrating live (TLS)', { target: m.target, to: `${hs.offer.host}:${hs.offer.port}`, multifd: hs.offer.multifd ?? 0 })
        if (!this.primed.has(id)) await setMigrationParameters(qmp, this.migrationOptions())
        creds = credsId()
        await migrateTls(qmp, hs.offer, { keyParent: dir, credsId: creds, priority: hostTlsPriority() })
      } else {
        const listenSocket = join(dir, 'outgoing.sock')
        // the stream opens (a round trip to the target) while QMP connects and QEMU is told to migrate
        const [sent, q] = await Promise.all([this.streams.send({ id, peer: peerIdFromString(m.target), listenSocket }), this.d.driver.qmp(vm.id)])
        qmp = q
        done = sent.done
        tl.mark('source.qmpAndListening')
        log.info('migrating live', { target: m.target })
        if (this.primed.has(id)) await migrateTo(qmp, `unix:${listenSocket}`)
        else await startMigration(qmp, `unix:${listenSocket}`, this.migrationOptions())
      }
      tl.mark('source.migrateIssued')
      let lastReport = 0
      const abort = new AbortController()
      const final = await this.waitOut(qmp, abort.signal, log, {
        onProgress: (p) => {
          // cancel asked for, the move ended meanwhile (the target marked down), or the target
          // daemon gone (its control stream broke: its QEMU would take the guest with nobody there
          // to run it): stop sending (QEMU resumes the guest here), unless QEMU completed first:
          // then the switchover stands
          if (!this.stillPhase(m, 'transferring') || this.cancelAsked(m) != null || control?.lost() != null) { abort.abort(); return }
          if (p.status !== 'active' || this.now() - lastReport < PROGRESS_REPORT_MS) return
          lastReport = this.now()
          void this.report(m, 'progress', { figures: figuresOf(p) }, { once: true })
        }
      })
      tl.mark('source.completedSeen')
      log.info('migration completed: the switchover', { downtimeMs: final.downtimeMs, totalTimeMs: final.totalTimeMs, setupTimeMs: final.setupTimeMs, bytes: final.transferredBytes })
      // reported before the stream's close handshake ends: QEMU's completion decides the
      // switchover (a stream that breaks now changes nothing), and the close is a round trip
      // through both daemons and the target QEMU that the move need not wait for
      await this.switchedOver(qmp, m, final)
      tl.mark('source.completedCommitted')
      await control?.end()
      const st = await done.catch((err: unknown) => { log.debug('stream ended with an error after QEMU completed', { err }); return null })
      if (st != null) tl.stream('source.stream', st.times)
      log.info('migration timeline (source)', { marks: tl.marks, qemuTotalMs: final.totalTimeMs, qemuSetupMs: final.setupTimeMs, qemuDowntimeMs: final.downtimeMs, bytes: final.transferredBytes })
    } catch (err) {
      // the target gone, if that is what ended it (read before end(), which is no loss)
      const lost = control?.lost() ?? null
      await control?.end()
      if (qmp != null) {
        // QEMU decides: a migration it completed (even one we stopped watching, or one cancelled
        // too late) is the switchover; one still going is cancelled and waited out
        let st = await queryMigrate(qmp).catch(() => null)
        if (st?.status === 'active' || st?.status === 'setup' || st?.status === 'device' || st?.status === 'pre-switchover') {
          await cancelMigration(qmp).catch(() => {})
          st = await settledMigration(qmp)
        }
        if (st?.status === 'completed') { await this.switchedOver(qmp, m, st); return }
      }
      const cancel = this.cancelAsked(m)
      const reason = cancel != null ? `cancelled: ${cancel}` : lost ?? (err as Error).message
      log.warn('live migration ended on the source; the guest keeps running here', { reason })
      // the guest stays here and may move again: its QEMU drops this move's TLS credentials
      if (qmp != null && creds != null) await clearTls(qmp, creds)
      await this.report(m, 'failed', { reason })
    }
  }

  /** waitForMigration, riding out a QMP reply that came late (a loaded host): QEMU keeps
   * migrating meanwhile, and giving up there would cancel a healthy move. */
  private async waitOut (qmp: QmpClient, signal: AbortSignal, log: Logger, opts: { onProgress: (p: MigrationProgress) => void }): Promise<MigrationProgress> {
    for (let late = 0; ; late++) {
      try {
        return await waitForMigration(qmp, { signal, onProgress: opts.onProgress })
      } catch (err) {
        const slowReply = err instanceof QemuError && err.kind === 'Timeout' && err.message.startsWith('QMP ') && !signal.aborted
        if (!slowReply || late >= MAX_LATE_QMP_REPLIES) throw err
        log.debug('query-migrate answered late; still waiting', { err })
      }
    }
  }

  /** The cancel asked for on this attempt, if any. */
  private cancelAsked (m: MigrationRecord): string | null {
    const cur = this.d.sm.getVm(m.vm)?.migration
    return cur != null && cur.started === m.started ? cur.cancelRequested ?? null : null
  }

  /** QEMU completed: report the switchover. If the record ended meanwhile without it (the target
   * was marked down while the last bytes moved), the source owns the VM again and its guest is
   * paused here: it resumes only when the target is down, hence fenced (a host fences its guests
   * before the leader marks it down); otherwise it stays paused rather than run twice. */
  private async switchedOver (qmp: QmpClient, m: MigrationRecord, final: MigrationProgress): Promise<void> {
    await this.report(m, 'source-completed', { figures: figuresOf(final) })
    const cur = this.d.sm.getVm(m.vm)?.migration
    if (cur != null && cur.started === m.started && cur.phase !== 'aborted' && cur.owner === m.target) {
      // The target owns the VM for good (no path resumes a switched-over source). The paused
      // QEMU quits now rather than wait for the agent's SIGKILL: quitting closes its disks, so
      // librbd hands the image's exclusive lock over cleanly when the target's first write asks
      // for it (or finds it free). A killed holder's lock would have to be broken by the target,
      // which blocklists the old client: fencing, for a host that did nothing wrong.
      // (QEMU may close QMP before its answer arrives: that is the quit too)
      await qmp.execute('quit').then(
        () => { this.d.log.info('source QEMU quit after the switchover: its disks are closed and their locks released', { vmId: m.vm }) },
        (err: unknown) => {
          if (err instanceof QemuError && err.kind === 'QmpClosed') this.d.log.info('source QEMU quit after the switchover: its disks are closed and their locks released', { vmId: m.vm })
          else this.d.log.warn('source QEMU did not quit after the switchover (the agent removes it)', { vmId: m.vm, err })
        })
      return
    }
    if (cur == null || cur.started !== m.started || cur.phase !== 'aborted') return
    if (this.d.sm.getNode(m.target)?.liveness === 'down') {
      this.d.log.warn('migration completed but the move was aborted (target down): resuming the guest here', { vmId: m.vm })
      await qmp.execute('cont').catch((err: unknown) => { this.d.log.error('could not resume the guest', { vmId: m.vm, err }) })
    } else {
      this.d.log.error('migration completed but the move was aborted: the guest stays paused here (its target may run it); stop and start it to recover', { vmId: m.vm, reason: cur.reason })
    }
  }

  private stillPhase (m: MigrationRecord, phase: MigrationRecord['phase']): boolean {
    const cur = this.d.sm.getVm(m.vm)?.migration
    return cur != null && cur.started === m.started && cur.phase === phase
  }

  // ---- reports ----

  /** Proposes this node's report on attempt `m`, retrying while it does not commit (no leader) and
   * the attempt is still in flight; `once` (progress) tries one time. */
  private async report (m: MigrationRecord, event: MigrationReport, extra: { reason?: string, figures?: MigrationFigures } = {}, opts: { once?: boolean } = {}): Promise<void> {
    const giveUp = this.now() + REPORT_GIVE_UP_MS
    for (;;) {
      try {
        const r = await this.d.propose({ cmd: { type: 'ReportMigration', vm: m.vm, node: this.d.self(), started: m.started, event, ...extra }, at: this.now() })
        if (!r.ok) this.d.log.warn('migration report refused', { vmId: m.vm, event, error: r.error })
        return
      } catch (err) {
        if (opts.once === true || this.stopped || this.now() > giveUp) { this.d.log.warn('migration report not committed', { vmId: m.vm, event, err }); return }
        const cur = this.d.sm.getVm(m.vm)?.migration
        if (cur == null || cur.started !== m.started || cur.phase === 'done' || cur.phase === 'aborted') return
        await sleep(REPORT_RETRY_MS)
      }
    }
  }
}

/** After a cancel: query-migrate until QEMU says how it ended (completed, cancelled or failed). */
async function settledMigration (qmp: QmpClient): Promise<MigrationProgress | null> {
  const deadline = Date.now() + CANCEL_SETTLE_MS
  for (;;) {
    const st = await queryMigrate(qmp).catch(() => null)
    if (st == null || st.status === 'completed' || st.status === 'cancelled' || st.status === 'failed' || st.status === 'none') return st
    if (Date.now() > deadline) return st
    await sleep(POLL_MS)
  }
}

/** Why this host may not run guests, asked until it may or `timeoutMs` passed (null: it may). */
async function heldFor (why: () => string | null, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs
  for (let held = why(); ; held = why()) {
    if (held == null || Date.now() > deadline) return held
    await sleep(LEASE_POLL_MS)
  }
}

/** tls, target: removes the key file once the migration's connection is in (QEMU past 'setup':
 * the TLS handshake is done, and QEMU listens no more), QEMU is gone, or the wait ran out. */
async function removeKeyWhenConnected (qmp: QmpClient, pskDir: string): Promise<void> {
  const deadline = Date.now() + KEY_WATCH_MS
  try {
    for (;;) {
      const st = await queryMigrate(qmp)
      if ((st.status !== 'setup' && st.status !== 'none') || Date.now() > deadline) return
      await sleep(KEY_WATCH_POLL_MS)
    }
  } catch { /* QEMU gone: nothing reads the file any more */ } finally {
    await removePskDir(pskDir)
  }
}

async function waitForPath (path: string, timeoutMs: number, pollMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try { await stat(path); return } catch {}
    if (Date.now() > deadline) throw new Error(`the target QEMU did not open ${path} within ${timeoutMs} ms`)
    await sleep(pollMs)
  }
}

/** BLIXARD_MIGRATION_MULTIFD: multifd channels of a TLS migration into this node, 0..MAX_MULTIFD_CHANNELS (0: one stream). */
export function multifdFromEnv (env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BLIXARD_MIGRATION_MULTIFD
  if (v == null || v === '') return DEFAULT_MULTIFD_CHANNELS
  const n = Number(v)
  if (!/^\d+$/.test(v) || n > MAX_MULTIFD_CHANNELS) throw new Error(`BLIXARD_MIGRATION_MULTIFD must be an integer 0..${MAX_MULTIFD_CHANNELS} (multifd channels; 0: one stream), got "${v}"`)
  return n
}

/** BLIXARD_MIGRATION_TRANSPORT: tls (default) or stream. */
export function transportFromEnv (env: NodeJS.ProcessEnv = process.env): MigrationTransport {
  const v = env.BLIXARD_MIGRATION_TRANSPORT
  if (v == null || v === '' || v === 'tls') return 'tls'
  if (v === 'stream') return 'stream'
  throw new Error(`BLIXARD_MIGRATION_TRANSPORT must be tls or stream, got "${v}"`)
}

/** BLIXARD_MIGRATION_MAX_BANDWIDTH (bytes/s), for tests that need a move slow enough to interrupt. */
export function maxBandwidthFromEnv (env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.BLIXARD_MIGRATION_MAX_BANDWIDTH
  if (v == null || v === '') return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`BLIXARD_MIGRATION_MAX_BANDWIDTH must be a positive integer (bytes per second), got "${v}"`)
  return n
}
