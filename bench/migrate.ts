// npm run bench:migrate [-- --json] [--trials N] [--sizes 128,512,1024] [--variants direct,tcp,tls,tls1,libp2p]
//
// Live migration: a running tiny guest (TCG, console heartbeat every HEARTBEAT_MS) migrates the way
// the product moves it (tls: the two daemons' libp2p stream hands over a fresh key, the port and the
// multifd channel count, then QEMU migrates over its own TCP with TLS-PSK on DEFAULT_MULTIFD_CHANNELS
// channels, AES-GCM first where the CPU has AES-NI: node/migration/tls.ts), the same over one stream
// with QEMU's default ciphers (tls1: the product before multifd), plain TCP on loopback with no
// encryption (tcp: what TLS adds over the same socket kind), through the older
// libp2p data path (libp2p: the bytes carried by the stream, node/migration/stream.ts: pnet + Noise
// + yamux between two libp2p hosts on 127.0.0.1) and, in the same run, directly QEMU to QEMU over a
// loopback unix socket (the anchor: the physical limit on this machine). Per guest size and path: QEMU's downtime and total
// time, and the downtime the guest saw (the longest gap between heartbeat lines as they reached
// the host: the source's console until it stops, the target's after it resumes). One guest per
// size moves from QEMU to QEMU along the chain of trials, the paths alternating in order so that
// neither always goes first. Medians of --trials, and each path's ratio to direct: of total time and
// of CPU per MiB (both QEMUs' user+system time from /proc/PID/stat over the move, divided by the MiB
// QEMU transferred: unlike wall time it hardly moves with the machine's load; the guest's own share
// is in every path alike).
//
// Both paths use the same QEMU parameters (downtime limit DEFAULT_DOWNTIME_LIMIT_MS, QEMU's own
// bandwidth default unless --max-bandwidth BYTES/s, 0 = unlimited).
import '../node/polyfill.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import { createConnection, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLUSTER_KEY, testHost, until } from '../test/net/helpers.ts'
import { buildQemuArgv, tscKhzFromCpuinfo } from '../node/qemu/cmdline.ts'
import { buildTinyGuest, parseReadyMarker, tinyGuestBoot, type TinyGuest } from '../node/qemu/tiny-guest.ts'
import { waitForText } from '../node/qemu/file-tail.ts'
import { QmpClient } from '../node/qemu/qmp.ts'
import { incomingArgs, localMigrationUri, runState, setMigrationParameters, startMigration, waitForMigration, type MigrationProgress, type StartMigrationOptions } from '../node/qemu/migrate.ts'
import { MigrationStreams, type BridgeStats, type TlsHandshake } from '../node/migration/stream.ts'
import { DEFAULT_MULTIFD_CHANNELS, PSK_IDENTITY, credsId, hostTlsPriority, listenTls, migrateTls, newPsk, removePskDir, writePskDir, type TlsOffer } from '../node/migration/tls.ts'
import type { BlixardHost } from '../node/net/host.ts'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createInterface } from 'node:readline'

const argv = process.argv.slice(2)
const arg = (f: string): string | undefined => { const i = argv.indexOf(f); return i >= 0 ? argv[i + 1] : undefined }
const json = argv.includes('--json')
const TRIALS = Number(arg('--trials') ?? 3)
const SIZES = (arg('--sizes') ?? '128,512,1024').split(',').map(Number)
const VARIANTS = (arg('--variants') ?? 'direct,tcp,tls,tls1,libp2p').split(',')
/** variants that hand over a key on the libp2p control stream and migrate with QEMU's TLS */
const isTls = (v: string): boolean => v === 'tls' || v === 'tls1'
const MAX_BANDWIDTH = arg('--max-bandwidth') != null ? Number(arg('--max-bandwidth')) : undefined
/** the guest prints a counter this often: the resolution of the guest-seen downtime */
const HEARTBEAT_MS = 20
const BOOT_TIMEOUT_MS = 90_000
const MIGRATE_TIMEOUT_MS = 120_000
/** heartbeats the target must print before a migration's gap is measured */
const BEATS_AFTER = 5
/** the target bounds */
const MAX_RATIO = 1.5
const MAX_GUEST_DOWNTIME_MS = 300

const say = (s: string): void => { if (!json) process.stderr.write(s + '\n') }
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }

interface Beat { n: number, t: number }
interface Qemu { dir: string, child: ChildProcess, qmp: QmpClient, serialSock: string, serialLog: string, incomingUri: string | null, beats: Beat[], console: Socket | null }
interface Result { variant: string, sizeMiB: number, downtimeMs: number, totalTimeMs: number, wallMs: number, qemuCpuMsPerMiB: number, setupTimeMs: number, guestGapMs: number, switchoverGapMs: number, transferredMiB: number, cpuMsPerMiB: number, mbps: number, stream?: BridgeStats, timeline?: Record<string, number> }

let guest: TinyGuest
const procs: Qemu[] = []
process.on('exit', () => { for (const q of procs) q.child.kill('SIGKILL') })
const tscKhz = tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'))

/** Reads the console socket, stamping each heartbeat line with the time it reached the host. */
function watchConsole (q: Qemu): void {
  const s = createConnection(q.serialSock)
  let pending = ''
  s.setEncoding('utf8')
  s.on('data', (d: string) => {
    const t = performance.now()
    pending += d
    let i: number
    while ((i = pending.indexOf('\n')) >= 0) {
      const m = /BLIXARD-HEARTBEAT (\d+)/.exec(pending.slice(0, i))
      if (m != null) q.beats.push({ n: Number(m[1]), t })
      pending = pending.slice(i + 1)
    }
  })
  s.on('error', () => {})
  q.console = s
}

async function launch (sizeMiB: number, incoming: boolean | 'defer'): Promise<Qemu> {
  const dir = await mkdtemp(join(tmpdir(), 'blx-bmig-'))
  const serialLog = join(dir, 'serial.log')
  const serialSock = join(dir, 'serial.sock')
  const qmpSock = join(dir, 'qmp.sock')
  const { binary, args } = buildQemuArgv(
    { vmId: 'bmig', vcpus: 1, memoryMiB: sizeMiB, boot: tinyGuestBoot(guest, { hostname: 'bmig', heartbeatMs: HEARTBEAT_MS }) },
    { accel: 'tcg', tscKhz }, { serialSock, serialLog, qmpSock })
  const incomingUri = incoming === 'defer' ? 'defer' : incoming ? `unix:${join(dir, 'in.sock')}` : null
  const child = spawn(binary, [...args, ...(incomingUri != null ? incomingArgs(incomingUri) : [])], { stdio: ['ignore', 'ignore', 'inherit'] })
  const qmp = await QmpClient.connect(qmpSock, { timeoutMs: 10_000 })
  const q: Qemu = { dir, child, qmp, serialSock, serialLog, incomingUri, beats: [], console: null }
  procs.push(q)
  watchConsole(q)
  return q
}

async function retire (q: Qemu): Promise<void> {
  q.child.kill('SIGKILL')
  q.console?.destroy()
  await q.qmp.close().catch(() => {})
  await rm(q.dir, { recursive: true, force: true })
}

/** CPU time (user + system, ms) a process has used so far, from /proc: 0 once it is gone. */
function cpuMsOf (pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS
  } catch { return 0 }
}
/** USER_HZ on Linux */
const CLOCK_TICKS = 100

/** From the source's last heartbeat to the target's first: the pause at switchover alone. */
function switchoverGap (src: Qemu, dst: Qemu): number {
  const last = src.beats.at(-1)
  const first = dst.beats.find((b) => last == null || b.n > last.n)
  return last != null && first != null ? first.t - last.t : NaN
}

/** The longest wait between consecutive heartbeats across the move (source's, then target's). */
function guestGap (src: Qemu, dst: Qemu, fromT: number): number {
  const byN = new Map<number, number>()
  for (const b of src.beats) if (b.t >= fromT) byN.set(b.n, b.t)
  for (const b of dst.beats) if (!byN.has(b.n)) byN.set(b.n, b.t)
  const ns = [...byN.keys()].sort((a, b) => a - b)
  let gap = 0
  for (let i = 1; i < ns.length; i++) gap = Math.max(gap, (byN.get(ns[i]) ?? 0) - (byN.get(ns[i - 1]) ?? 0))
  return gap
}

/** The two daemons' sides: the source here, the target here too or in a process of its own. */
interface Net {
  src: BlixardHost
  srcStreams: MigrationStreams
  dstPeer: PeerId
  expect: (id: string, targetSocket: string) => Promise<BridgeStats>
  stop: () => Promise<void>
  windowBytes?: number
  framePayloadBytes?: number
  /** tls: the target's side of the handshake (it answers with `offer` once its QEMU listens) */
  expectTls?: (id: string, offer: () => Promise<TlsOffer>) => Promise<BridgeStats>
}

/** `libp2p[:w=MiB][:y=MiB][:f=KiB][:p]`: the bridge's credit window, yamux's initial stream window,
 * the DATA frame payload (defaults: the code's), p: the target daemon in a process of its own */
function parseVariant (v: string): { windowBytes?: number, streamWindowBytes?: number, framePayloadBytes?: number, process: boolean } {
  const out: { windowBytes?: number, streamWindowBytes?: number, framePayloadBytes?: number, process: boolean } = { process: false }
  const [kind, ...kv] = v.split(':')
  if (isTls(kind)) return out
  if (kind !== 'libp2p') throw new Error(`unknown variant ${v}: direct or libp2p[:w=MiB][:y=MiB][:p]`)
  for (const p of kv) {
    if (p === 'p') { out.process = true; continue }
    const [k, n] = p.split('=')
    const bytes = Math.round(Number(n) * 1048576)
    if (!Number.isFinite(bytes) || bytes <= 0) throw new Error(`variant ${v}: ${p} is not a size in MiB`)
    if (k === 'w') out.windowBytes = bytes
    else if (k === 'y') out.streamWindowBytes = bytes
    else if (k === 'f') out.framePayloadBytes = Math.round(Number(n) * 1024)
    else throw new Error(`variant ${v}: unknown parameter ${k}`)
  }
  return out
}

async function makeNet (v: string): Promise<Net> {
  const o = parseVariant(v)
  const src = await testHost({ streamWindowBytes: o.streamWindowBytes, clusterKey: CLUSTER_KEY })
  const srcStreams = new MigrationStreams(src)
  await srcStreams.start()
  if (!o.process) {
    const dst = await testHost({ streamWindowBytes: o.streamWindowBytes })
    const dstStreams = new MigrationStreams(dst)
    await dstStreams.start()
    await src.dial(dst.getMultiaddrs()[0])
    return {
      src,
      srcStreams,
      dstPeer: dst.peerId,
      windowBytes: o.windowBytes,
      framePayloadBytes: o.framePayloadBytes,
      expect: async (id, targetSocket) => await dstStreams.expect({ id, allow: (p) => p.equals(src.peerId), targetSocket, windowBytes: o.windowBytes }),
      expectTls: async (id, offer) => await dstStreams.expect({ id, allow: (p) => p.equals(src.peerId), offer }),
      stop: async () => { await srcStreams.stop(); await dstStreams.stop(); await Promise.all([src.stop(), dst.stop()]) }
    }
  }
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'migrate-peer.ts'), '--cluster-key', Buffer.from(CLUSTER_KEY).toString('base64'), ...(o.streamWindowBytes != null ? ['--stream-window', String(o.streamWindowBytes)] : [])], { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = new Map<string, { resolve: (s: BridgeStats) => void, reject: (e: Error) => void }>()
  const addr = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`migrate-peer exited ${code}`)) })
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line) as { addr?: string, done?: string, stats?: BridgeStats, failed?: string, error?: string }
      if (m.addr != null) resolve(m.addr)
      if (m.done != null && m.stats != null) waiting.get(m.done)?.resolve(m.stats)
      if (m.failed != null) waiting.get(m.failed)?.reject(new Error(m.error))
    })
  })
  const ma = multiaddr(addr)
  await src.dial(ma)
  const dstPeer = peerIdFromString(ma.getComponents().find((c) => c.name === 'p2p')?.value ?? '')
  return {
    src,
    srcStreams,
    dstPeer,
    windowBytes: o.windowBytes,
    expect: async (id, targetSocket) => await new Promise<BridgeStats>((resolve, reject) => {
      waiting.set(id, { resolve, reject })
      child.stdin?.write(JSON.stringify({ expect: { id, allow: src.peerId.toString(), targetSocket, windowBytes: o.windowBytes } }) + '\n')
    }),
    stop: async () => { child.stdin?.end(); await srcStreams.stop(); await src.stop(); setTimeout(() => child.kill('SIGKILL'), 2000).unref() }
  }
}

async function migrateOnce (variant: string, sizeMiB: number, src: Qemu, net: Net | undefined, seq: number): Promise<{ dst: Qemu, r: Result }> {
  const tls = isTls(variant)
  // tls: the product's defaults; tls1: one stream, QEMU's own cipher preference
  const multifd = variant === 'tls' ? DEFAULT_MULTIFD_CHANNELS : 0
  const priority = variant === 'tls' ? hostTlsPriority() : undefined
  const dst = await launch(sizeMiB, tls || variant === 'tcp' ? 'defer' : true)
  let target = dst.incomingUri ?? ''
  if (variant === 'tcp') {
    await dst.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' })
    const r = await dst.qmp.execute('query-migrate') as { 'socket-address'?: Array<{ port?: string | number }> }
    target = `tcp:127.0.0.1:${Number(r['socket-address']?.[0]?.port)}`
  }
  const opts: StartMigrationOptions = MAX_BANDWIDTH != null ? { maxBandwidth: MAX_BANDWIDTH === 0 ? Number.MAX_SAFE_INTEGER : MAX_BANDWIDTH } : {}
  let streamStats: Promise<[BridgeStats, BridgeStats]> | null = null
  let uri = target
  let control: TlsHandshake | null = null
  let pskDir: string | null = null
  if (tls && net?.expectTls != null) {
    // the product's sequence (node/migration/service.ts): the target's QEMU listens with TLS under
    // a fresh key, the source gets the offer over the libp2p stream, then QEMU migrates on its own
    const id = `bench-${seq}`
    const key = newPsk()
    pskDir = await writePskDir(dst.dir, PSK_IDENTITY, key)
    const port = await listenTls(dst.qmp, { host: '127.0.0.1', pskDir, credsId: credsId(), multifd, priority })
    const answered = net.expectTls(id, async () => ({ host: '127.0.0.1', port, identity: PSK_IDENTITY, key, multifd }))
    answered.catch(() => {})
    control = await net.srcStreams.handshakeTls({ id, peer: net.dstPeer })
    await setMigrationParameters(src.qmp, opts)
  } else if (net != null) {
    const id = `bench-${seq}`
    const accepted = net.expect(id, target.slice('unix:'.length))
    accepted.catch(() => {})
    const out = join(src.dir, `out-${seq}.sock`)
    // the expectation reaches a peer process over a pipe: give it a moment before the stream opens
    await new Promise((resolve) => setTimeout(resolve, 50))
    const { done } = await net.srcStreams.send({ id, peer: net.dstPeer, listenSocket: out, windowBytes: net.windowBytes, framePayloadBytes: net.framePayloadBytes })
    streamStats = Promise.all([done, accepted])
    uri = localMigrationUri(`unix:${out}`)
  }
  const t0 = performance.now()
  const wall0 = Date.now()
  const cpu0 = process.cpuUsage()
  const qcpu0 = cpuMsOf(src.child.pid) + cpuMsOf(dst.child.pid)
  if (control != null) await migrateTls(src.qmp, control.offer, { keyParent: src.dir, credsId: credsId(), priority })
  else await startMigration(src.qmp, uri, opts)
  const p: MigrationProgress = await waitForMigration(src.qmp, { timeoutMs: MIGRATE_TIMEOUT_MS, pollMs: 20 })
  const completedAt = Date.now()
  // both QEMUs' CPU over the move (the guest's own share included: the same on every path)
  const qemuCpuMs = cpuMsOf(src.child.pid) + cpuMsOf(dst.child.pid) - qcpu0
  await control?.end()
  if (pskDir != null) await removePskDir(pskDir)
  const both = streamStats != null ? await streamStats : undefined
  const stats = both?.[0]
  // the source's and the target's stream moments, ms after `migrate` was issued (negative: before)
  const timeline: Record<string, number> | undefined = both == null ? undefined : {
    ...Object.fromEntries(Object.entries(both[0].times).map(([k, v]) => [`src.${k}`, v - wall0])),
    ...Object.fromEntries(Object.entries(both[1].times).map(([k, v]) => [`dst.${k}`, v - wall0])),
    completedSeen: completedAt - wall0
  }
  const cpu = process.cpuUsage(cpu0)
  await until(async () => await runState(dst.qmp) === 'running', 10_000, 'target running')
  await until(() => dst.beats.length >= BEATS_AFTER, 20_000, 'heartbeats on the target')
  const r: Result = {
    variant,
    sizeMiB,
    downtimeMs: p.downtimeMs ?? NaN,
    totalTimeMs: p.totalTimeMs ?? NaN,
    // from `migrate` issued to completed seen here, the same clock for every path
    wallMs: completedAt - wall0,
    qemuCpuMsPerMiB: qemuCpuMs / (p.transferredBytes / 1048576),
    setupTimeMs: p.setupTimeMs ?? NaN,
    guestGapMs: guestGap(src, dst, t0 - 1000),
    switchoverGapMs: switchoverGap(src, dst),
    transferredMiB: p.transferredBytes / 1048576,
    // this process's CPU (user+system) over the move: both daemons' sides unless the target runs apart
    cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / (p.transferredBytes / 1048576),
    mbps: p.mbps ?? NaN,
    stream: stats,
    timeline
  }
  await retire(src)
  return { dst, r }
}

async function main (): Promise<void> {
  const [l1, l5, l15] = loadavg()
  say(`load average at start: ${l1.toFixed(2)} ${l5.toFixed(2)} ${l15.toFixed(2)} (2 cores; sizes ${SIZES.join(',')} MiB, ${TRIALS} trials, heartbeat ${HEARTBEAT_MS} ms, max-bandwidth ${MAX_BANDWIDTH ?? 'QEMU default'})`)
  guest = await buildTinyGuest()
  const nets = new Map<string, Net>()
  for (const v of VARIANTS) if (v !== 'direct' && v !== 'tcp' && !v.startsWith('libp2p') && !isTls(v)) throw new Error(`unknown variant ${v}: direct, tcp, tls, tls1 or libp2p[:...]`)
  for (const v of VARIANTS) if (v !== 'direct' && v !== 'tcp') nets.set(v, await makeNet(v))
  const results: Result[] = []
  let seq = 0
  try {
    for (const size of SIZES) {
      let q = await launch(size, false)
      await waitForText(q.serialLog, parseReadyMarker, { timeoutMs: BOOT_TIMEOUT_MS })
      await until(() => q.beats.length >= BEATS_AFTER, 20_000, 'heartbeats on the first guest')
      for (let t = 0; t < TRIALS; t++) {
        // alternate the order: the guest ages along the chain, neither path always sees it younger
        const order = t % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()
        for (const v of order) {
          const { dst: next, r } = await migrateOnce(v, size, q, nets.get(v), seq++)
          q = next
          results.push(r)
          say(`  ${size} MiB ${v.padEnd(8)} downtime ${r.downtimeMs} ms, total ${r.totalTimeMs} ms (wall ${r.wallMs} ms), guest gap ${r.guestGapMs.toFixed(0)} ms (switchover ${r.switchoverGapMs.toFixed(0)}), ${r.transferredMiB.toFixed(1)} MiB at ${r.mbps.toFixed(0)} Mbit/s, bench process CPU ${r.cpuMsPerMiB.toFixed(1)} ms/MiB, QEMUs' CPU ${r.qemuCpuMsPerMiB.toFixed(1)} ms/MiB${r.stream != null ? `, ${r.stream.pauses} pauses` : ''}, QEMU setup ${r.setupTimeMs} ms`)
          if (r.timeline != null) say(`    timeline (ms after migrate): ${Object.entries(r.timeline).sort((a, b) => a[1] - b[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`)
        }
      }
      await retire(q)
    }
  } finally {
    for (const q of procs) q.child.kill('SIGKILL')
    for (const n of nets.values()) await n.stop()
  }
  const summary = SIZES.map((size) => {
    const per: Record<string, { downtimeMs: number, totalTimeMs: number, wallMs: number, qemuCpuMsPerMiB: number, guestGapMs: number }> = {}
    for (const v of VARIANTS) {
      const rs = results.filter((r) => r.sizeMiB === size && r.variant === v)
      per[v] = { downtimeMs: median(rs.map((r) => r.downtimeMs)), totalTimeMs: median(rs.map((r) => r.totalTimeMs)), wallMs: median(rs.map((r) => r.wallMs)), qemuCpuMsPerMiB: median(rs.map((r) => r.qemuCpuMsPerMiB)), guestGapMs: median(rs.map((r) => r.guestGapMs)) }
    }
    const ratios: Record<string, number> = {}
    const cpuRatios: Record<string, number> = {}
    for (const v of VARIANTS) {
      if (v === 'direct' || per.direct == null) continue
      ratios[v] = per[v].totalTimeMs / per.direct.totalTimeMs
      cpuRatios[v] = per[v].qemuCpuMsPerMiB / per.direct.qemuCpuMsPerMiB
    }
    return { sizeMiB: size, medians: per, totalTimeRatio: ratios, cpuPerMiBRatio: cpuRatios }
  })
  const [e1, e5, e15] = loadavg()
  if (json) {
    process.stdout.write(JSON.stringify({ loadAtStart: [l1, l5, l15], loadAtEnd: [e1, e5, e15], trials: TRIALS, heartbeatMs: HEARTBEAT_MS, maxBandwidth: MAX_BANDWIDTH ?? null, summary, results }) + '\n')
    return
  }
  say(`medians of ${TRIALS} (load at end ${e1.toFixed(2)} ${e5.toFixed(2)} ${e15.toFixed(2)}):`)
  for (const s of summary) {
    for (const v of VARIANTS) {
      const m = s.medians[v]
      say(`  ${String(s.sizeMiB).padStart(5)} MiB ${v.padEnd(8)} total ${m.totalTimeMs.toFixed(0)} ms (wall ${m.wallMs.toFixed(0)}), QEMUs' CPU ${m.qemuCpuMsPerMiB.toFixed(1)} ms/MiB${v !== 'direct' && s.cpuPerMiBRatio[v] != null ? ` (${s.cpuPerMiBRatio[v].toFixed(2)}× direct)` : ''}, downtime ${m.downtimeMs.toFixed(0)} ms (QEMU), ${m.guestGapMs.toFixed(0)} ms (guest-seen)${v !== 'direct' && s.totalTimeRatio[v] != null ? `  ratio ${s.totalTimeRatio[v].toFixed(2)}× direct ${s.totalTimeRatio[v] <= MAX_RATIO ? '≤' : '>'} ${MAX_RATIO}` : ''}${m.guestGapMs > MAX_GUEST_DOWNTIME_MS ? `  guest gap > ${MAX_GUEST_DOWNTIME_MS} ms` : ''}`)
    }
  }
}

main().then(() => { process.exit(0) }, (e) => { process.stderr.write(`bench:migrate failed: ${(e as Error).stack ?? String(e)}\n`); process.exit(1) })
