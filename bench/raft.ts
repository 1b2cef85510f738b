// Raft writes end to end, Blixard against etcd in the same run on the same machine:
// 3 blixard-node processes and 3 etcd members (Debian etcd-server, defaults, fsync on), all on
// 127.0.0.1. For 1, 16 and 256 concurrent clients: write throughput and p50/p99 latency, with
// the clients writing to the leader and then to a follower (both systems forward a follower's
// write to the leader). Then failover (kill -9 of the leader to the first successful write), a
// node's idle RSS and CPU (both clusters idle for --idle seconds first, before any load), and the
// time a 4th blixard-node takes to become a learner.
//
// Clients: each is a closed loop with one write in flight, on its own stream: Blixard, one
// RpcClient (one libp2p stream) per client; etcd, one gRPC call at a time per client. Clients
// share connections 32 to one (1 and 16 clients: one connection; 256: eight), the same layout for
// both: libp2p (TCP + pnet + Noise + Yamux) for Blixard, HTTP/2 (h2c) for etcd.
// Writes: etcd KV.Put of a 256 B value; Blixard admin.add, a 256 B command (bench/raft/blixard.ts).
//
// The daemon runs compiled (dist/, built first with `npm run build`), as an installed package and
// the NixOS unit run it; `--tsx` runs it from the TypeScript sources instead, as a checkout's
// `blixard-node` does (tsx's loader and source maps: ~35 MiB more idle RSS; the same with trees
// from before the compiled mode, to compare with them).
//
// npm run bench:raft [-- --json] [--duration 5] [--warmup 1] [--clients 1,16,256]
//   [--targets leader,follower|none] [--idle 20] [--failovers 3] [--no-freeze] [--no-join] [--keep] [--tsx]
//   [--etcd-tls] [--learners N|0,5,15] [--learner-clients 16]
//   [--cost-model] [--cost-clients 256] [--strace-seconds 3]
//
// Extra measurements, all off by default (the default run is the one above):
// --etcd-tls  a second etcd cluster, with peer and client TLS and client certificates required
//     (CA, member and client certificates made with openssl, ECDSA P-256, SAN IP:127.0.0.1), runs
//     every level too, written over h2 with TLS: the report gains an "etcd TLS" column and the
//     target ">= 1.2x etcd with TLS at 256 clients" (Blixard's transport is always encrypted).
// --learners N (or a list; up to 15)  after the other phases (before the 4th-node join), N more
//     blixard-node processes join the way a new host does, in steps; at 0 and at each count, one
//     closed loop of --learner-clients clients to the leader: the leader process's CPU per write,
//     commit p50/p99, RSS, and the ratio to 0 with the target "leader CPU per write with N learners
//     <= 2x with 0". Autopilot makes 5 of the 3+N nodes voters once 5 are healthy; the table says
//     how many voters and learners each level had. Each node is ~100-140 MiB RSS: 15 add ~2 GiB.
// --cost-model  after everything else, the main cluster stops and a fresh 3-node cluster runs under
//     V8's sampling profiler (--cpu-prof); one level (--cost-clients to the leader) is measured and
//     each node's main-thread samples in the recorded window are bucketed by stage from their script
//     URL (bench/raft/cost.ts: RPC, auth, write path, Raft step, log + fsync, apply, transport, GC,
//     other), against /proc's all-thread CPU; then strace -c -f on every node for --strace-seconds
//     under the same load counts syscalls per committed Raft entry (socket writes and reads, fsyncs,
//     epoll, futex). Profiler and ptrace slow the nodes: a breakdown, not a throughput figure.
//     Needs strace; `--targets none --failovers 0 --no-freeze --no-join` runs it alone.
import '../node/polyfill.ts'
import { freeBase } from './raft/ports.ts'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { cpus, freemem, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeEnvelope } from '../storage/state-machine.ts'
import { closedLoop, failoverProbe, median, processCpuMs } from './raft/load.ts'
import type { LoadResult, WriteFn } from './raft/load.ts'
import { etcdCerts, etcdCluster, etcdLeader, etcdStatus, EtcdGrpc, putFrame } from './raft/etcd.ts'
import type { EtcdCluster, EtcdMember } from './raft/etcd.ts'
import { blixardCluster, clientHost, rpcTo, waitForCluster, adminWrite, rssMiB } from './raft/blixard.ts'
import type { BlixardBench, Status } from './raft/blixard.ts'
import type { BlixardHost } from '../node/net/host.ts'
import type { RpcClient } from '../node/net/rpc.ts'
import type { LocalNode } from '../scripts/local-cluster.ts'
import { learnerCounts, learnerReport, learnerScale } from './raft/learners.ts'
import { bucketProfile, costReport, groupSyscalls, mainThreadCpuMs, monoUs, profileFlags, readProfile, scaleToCpu, STAGES, STRACE_ATTACH_MS, straceCounts, threadCpuMsByName, threadDelta } from './raft/cost.ts'
import type { CostModel, NodeCost, Stage } from './raft/cost.ts'
import type { LearnerLevel } from './raft/learners.ts'

const argv = process.argv.slice(2)
const opt = (name: string, dflt: string): string => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt }
const JSON_OUT = argv.includes('--json')
const DURATION_MS = 1000 * Number(opt('--duration', '5'))
/** How long both formed clusters stay idle before their idle CPU and RSS are read. A daemon a few
 * seconds after start still holds its start's garbage: V8 shrinks the heap only once the process
 * has been idle a while (bench:idle, compiled: RSS median 114 MiB at 3 s, 88 MiB at 20 s, heap
 * total 59 → 30 MiB); etcd's RSS is flat from the start. */
const IDLE_MS = 1000 * Number(opt('--idle', '20'))
const WARMUP_MS = 1000 * Number(opt('--warmup', '1'))
const LEVELS = opt('--clients', '1,16,256').split(',').map(Number)
// `--targets none` skips the throughput levels (e.g. to run only --learners or --cost-model)
const TARGETS = opt('--targets', 'leader,follower').split(',').filter((t): t is 'leader' | 'follower' => t === 'leader' || t === 'follower')
const FAILOVERS = Number(opt('--failovers', '3'))
const JOIN = !argv.includes('--no-join')
const FREEZE = !argv.includes('--no-freeze')
const KEEP = argv.includes('--keep')
const COMPILED = !argv.includes('--tsx')
const LEARNERS = argv.includes('--learners') ? learnerCounts(argv[argv.indexOf('--learners') + 1]) : null
const LEARNER_CLIENTS = Number(opt('--learner-clients', '16'))
const ETCD_TLS = argv.includes('--etcd-tls')
const COST = argv.includes('--cost-model')
const COST_CLIENTS = Number(opt('--cost-clients', '256'))
/** how long strace counts syscalls during the cost model's level */
const STRACE_MS = 1000 * Number(opt('--strace-seconds', '3'))
/** clients per connection (libp2p connection or HTTP/2 session) */
const PER_CONN = 32
const VALUE_BYTES = 256

const say = (s: string): void => { if (!JSON_OUT) process.stderr.write(`bench:raft: ${s}\n`) }
const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0)
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** etcdTls: the same level against the etcd cluster with TLS (--etcd-tls) */
/** one node's CPU (all threads, /proc) per write over a level's recorded window */
interface NodeCpu { node: string, leader: boolean, cpuMsPerWrite: number }
interface Pair { target: string, clients: number, blixard: LoadResult, blixardPerNode: NodeCpu[], etcd: LoadResult, etcdTls?: LoadResult }

async function main (): Promise<void> {
  const t0 = Date.now()
  const load0 = loadavg()[0]
  const dir = mkdtempSync(join(tmpdir(), 'blixard-bench-raft-'))
  // no VM runs here: BLIXARD_ACCEL=tcg spares each daemon its KVM test boot at start (a QEMU spinning
  // up to 8 s on a host whose KVM cannot run the guest, on the cores both clusters share)
  const DAEMON_ENV = { BLIXARD_ACCEL: 'tcg', ...(COMPILED ? { BLIXARD_COMPILED: '1' } : {}) }
  const connsFor = (clients: number): number => Math.ceil(clients / PER_CONN)
  const maxConns = Math.max(...(TARGETS.length > 0 ? LEVELS : []).map(connsFor), LEARNERS != null ? connsFor(LEARNER_CLIENTS) : 1)
  const maxLearners = LEARNERS == null ? 0 : Math.max(...LEARNERS)
  const totalNodes = 3 + (JOIN ? 1 : 0) + maxLearners
  let etcd: EtcdCluster | null = null
  let etcdTls: EtcdCluster | null = null
  let bx: BlixardBench | null = null
  let profiled: BlixardBench | null = null
  const hosts: BlixardHost[] = []
  const stopAll = (): void => { etcd?.stop(); etcdTls?.stop(); bx?.stop(); profiled?.stop() }
  process.on('SIGINT', () => { stopAll(); process.exit(130) })
  try {
    // ---- start both clusters at once ----
    const eBase = await freeBase(6, false)
    etcd = etcdCluster(join(dir, 'etcd'), [...Array(6).keys()].map((i) => eBase + i))
    for (const m of etcd.members) etcd.start(m)
    if (ETCD_TLS) {
      const tBase = await freeBase(6, false)
      etcdTls = etcdCluster(join(dir, 'etcd-tls'), [...Array(6).keys()].map((i) => tBase + i), etcdCerts(join(dir, 'etcd-certs'), ['e1', 'e2', 'e3']))
      for (const m of etcdTls.members) etcdTls.start(m)
    }
    const bBase = await freeBase(totalNodes, true)
    if (COMPILED) {
      say('building the daemon (npm run build) to run it as installed')
      execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'ignore', 'inherit'] })
    }
    bx = await blixardCluster(join(dir, 'blixard'), bBase, totalNodes, 1 + maxConns, DAEMON_ENV)
    const e = etcd
    const b = bx
    say(`dir ${dir}; etcd client ports ${eBase}.., blixard ports ${bBase}..; daemon ${COMPILED ? 'compiled (dist/)' : 'from sources (tsx)'}`)
    await etcdLeader(e)
    const et = etcdTls
    if (et != null) await etcdLeader(et)
    const { control, formedAt } = await connectHosts(b, hosts)
    say(`both clusters up (${((Date.now() - t0) / 1000).toFixed(1)} s; blixard formed in ${((Date.now() - formedAt) / 1000).toFixed(1)} s after etcd)`)
    const sample = encodeEnvelope({ cmd: { type: 'AddAdmin', peerId: b.admins[1].peerId, name: 'w0-0-'.padEnd(110, 'x') }, at: Date.now(), key: crypto.randomUUID() })

    // ---- idle RSS, before any load ----
    const idle0 = { b: b.voters.map((n) => processCpuMs(n.proc?.pid)), e: e.members.map((m) => processCpuMs(m.proc?.pid)) }
    await sleep(IDLE_MS)
    const idleCpu = {
      blixard: b.voters.map((n, i) => (processCpuMs(n.proc?.pid) - idle0.b[i]) * 100 / IDLE_MS),
      etcd: e.members.map((m, i) => (processCpuMs(m.proc?.pid) - idle0.e[i]) * 100 / IDLE_MS)
    }
    const rssB = b.voters.map((n) => rssMiB(n.proc?.pid ?? 0))
    const rssE = e.members.map((m) => rssMiB(m.proc?.pid ?? 0))
    say(`after ${IDLE_MS / 1000} s idle: RSS MiB: blixard ${rssB.map((x) => x.toFixed(0)).join(' ')}, etcd ${rssE.map((x) => x.toFixed(0)).join(' ')}; idle CPU %: blixard ${idleCpu.blixard.map((x) => x.toFixed(1)).join(' ')}, etcd ${idleCpu.etcd.map((x) => x.toFixed(1)).join(' ')}`)

    const bStatus = async (): Promise<Status> => await waitForCluster(control, b.voters.find((n) => n.proc != null) ?? b.voters[0], (s) => s.leader != null)
    const bLeader = async (): Promise<LocalNode> => {
      const s = await bStatus()
      // with --learners, autopilot makes added nodes voters too, and one of them may lead
      const n = b.nodes.find((x) => x.peerId === s.leader && x.proc != null)
      if (n == null) throw new Error(`blixard leader ${String(s.leader)} is not one of the started nodes`)
      return n
    }
    const value = Buffer.alloc(VALUE_BYTES, 0x61)

    // ---- throughput and latency ----
    const pairs: Pair[] = []
    for (const target of TARGETS) {
      for (const clients of LEVELS) {
        const conns = connsFor(clients)
        const el = await etcdLeader(e)
        const em = target === 'leader' ? el : e.members.find((m) => m !== el && m.proc != null) as EtcdMember
        const etcdLevel = async (c: EtcdCluster, em: EtcdMember): Promise<LoadResult> => {
          const sessions = await Promise.all([...Array(conns).keys()].map(async () => await EtcdGrpc.connect(em.clientPort, em.tls)))
          const ew: WriteFn[] = [...Array(clients).keys()].map((i) => {
            let seq = 0
            const s = sessions[i % conns]
            return async () => { await s.put(putFrame(Buffer.from(`/bench/${target}/${clients}/${i}/${seq++}`), value)) }
          })
          const r = await closedLoop(ew, WARMUP_MS, DURATION_MS, () => sum(c.members.map((m) => processCpuMs(m.proc?.pid))))
          for (const s of sessions) s.close()
          return r
        }
        const er = await etcdLevel(e, em)
        let tr: LoadResult | undefined
        if (et != null) {
          const tl = await etcdLeader(et)
          tr = await etcdLevel(et, target === 'leader' ? tl : et.members.find((m) => m !== tl && m.proc != null) as EtcdMember)
        }

        const bl = await bLeader()
        const bn = target === 'leader' ? bl : b.voters.find((n) => n !== bl && n.proc != null) as LocalNode
        const rpcs: RpcClient[] = await Promise.all([...Array(clients).keys()].map(async (i) => await rpcTo(hosts[1 + (i % conns)], bn)))
        const bw: WriteFn[] = rpcs.map((c, i) => { const w = adminWrite(c, b.admins[1 + (i % conns)].peerId, `w${clients}-${i}`); return async () => { await w() } })
        // each node's CPU over the recorded window too: all three share this machine's cores, so the
        // sum decides throughput here, while on three hosts the busiest node (the leader) would
        // (closedLoop reads the servers' CPU at the start and the end of the recorded window)
        const cpu: number[][] = []
        const br = await closedLoop(bw, WARMUP_MS, DURATION_MS, () => { const v = b.voters.map((n) => processCpuMs(n.proc?.pid)); cpu.push(v); return sum(v) })
        await Promise.all(rpcs.map(async (c) => { await c.close() }))
        const perNode = b.voters.map((n, i) => ({ node: n.name, leader: n === bl, cpuMsPerWrite: br.writes > 0 ? (cpu[1][i] - cpu[0][i]) / br.writes : NaN }))
        pairs.push({ target, clients, blixard: br, blixardPerNode: perNode, etcd: er, ...(tr != null ? { etcdTls: tr } : {}) })
        const line = (x: LoadResult): string => `${x.perSec.toFixed(0)}/s p50 ${x.p50Ms.toFixed(1)} p99 ${x.p99Ms.toFixed(1)} ms, servers ${x.serverCpuMsPerWrite.toFixed(2)} cpu-ms/write (${x.serverCpuPct.toFixed(0)}%), client ${x.clientCpuPct.toFixed(0)}%, ${x.errors} errors`
        const nodesLine = perNode.map((p) => `${p.node}${p.leader ? ' (leader)' : ''} ${p.cpuMsPerWrite.toFixed(2)}`).join(', ')
        say(`${target} ${clients} clients: blixard ${line(br)} [cpu-ms/write by node: ${nodesLine}]; etcd ${line(er)}${tr != null ? `; etcd TLS ${line(tr)}` : ''}`)
      }
    }

    // ---- failover: kill -9 of the leader, writes to a surviving member ----
    // Besides the first write, when a survivor first names a new leader (polled every 10 ms):
    // the election alone, without the write path's retries.
    const fo = { blixardMs: [] as number[], etcdMs: [] as number[], blixardLeaderMs: [] as number[], etcdLeaderMs: [] as number[] }
    for (let trial = 0; trial < FAILOVERS; trial++) {
      {
        const el = await etcdLeader(e)
        const survivor = e.members.find((m) => m !== el) as EtcdMember
        const g = await EtcdGrpc.connect(survivor.clientPort)
        await g.put(putFrame(Buffer.from('/bench/failover/warm'), value))
        let seq = 0
        const oldId = (await etcdStatus(el)).memberId
        const elected = newLeaderAfter(async () => { const st = await etcdStatus(survivor); return st.leader !== '0' && st.leader !== oldId })
        const ms = await failoverProbe(() => e.kill(el), async (t) => { await g.put(putFrame(Buffer.from(`/bench/failover/${trial}/${seq++}`), value), t) })
        fo.etcdMs.push(ms)
        fo.etcdLeaderMs.push(await elected)
        g.close()
        e.start(el)
        await etcdCaughtUp(e)
      }
      {
        const bl = await bLeader()
        const survivor = b.voters.find((n) => n !== bl) as LocalNode
        const c = await rpcTo(hosts[1], survivor)
        const w = adminWrite(c, b.admins[1].peerId, `fo${trial}`)
        await w()
        const sc = await rpcTo(control, survivor, 1_000)
        const elected = newLeaderAfter(async () => { const st = await sc.call('cluster.status', { stale: true }, { timeoutMs: 500 }); return st.leader != null && st.leader !== bl.peerId })
        const ms = await failoverProbe(() => b.kill(bl), async (t) => { await w(t) })
        fo.blixardMs.push(ms)
        fo.blixardLeaderMs.push(await elected)
        await sc.close()
        await c.close()
        b.start(bl)
        await blixardCaughtUp(control, b, survivor, bl)
      }
      say(`failover ${trial + 1}/${FAILOVERS}: blixard ${fo.blixardMs[trial].toFixed(0)} ms (new leader named at ${fo.blixardLeaderMs[trial].toFixed(0)}), etcd ${fo.etcdMs[trial].toFixed(0)} ms (${fo.etcdLeaderMs[trial].toFixed(0)})`)
    }

    // ---- a frozen leader (SIGSTOP): its sockets stay open, as with a hung or unplugged host, so
    // only the election timeout reveals it; kill -9 above is the case where the kernel resets them
    const frozen = { blixardMs: NaN, etcdMs: NaN }
    if (FREEZE) {
      {
        const el = await etcdLeader(e)
        const survivor = e.members.find((m) => m !== el) as EtcdMember
        const g = await EtcdGrpc.connect(survivor.clientPort)
        await g.put(putFrame(Buffer.from('/bench/frozen/warm'), value))
        let seq = 0
        frozen.etcdMs = await failoverProbe(() => { el.proc?.kill('SIGSTOP') }, async (t) => { await g.put(putFrame(Buffer.from(`/bench/frozen/${seq++}`), value), t) })
        g.close()
        const gone = exited(el.proc)
        e.kill(el)
        await gone // its ports must be free before it starts again
        e.start(el)
        await etcdCaughtUp(e)
      }
      {
        const bl = await bLeader()
        const survivor = b.voters.find((n) => n !== bl) as LocalNode
        const c = await rpcTo(hosts[1], survivor)
        const w = adminWrite(c, b.admins[1].peerId, 'frozen')
        await w()
        frozen.blixardMs = await failoverProbe(() => { bl.proc?.kill('SIGSTOP') }, async (t) => { await w(t) })
        await c.close()
        const gone = exited(bl.proc)
        b.kill(bl)
        await gone
        b.start(bl)
        await blixardCaughtUp(control, b, survivor, bl)
      }
      say(`frozen leader (SIGSTOP): blixard ${frozen.blixardMs.toFixed(0)} ms, etcd ${frozen.etcdMs.toFixed(0)} ms`)
    }

    // ---- the replica set grows: nodes added as learners, leader CPU per write at each count ----
    let learners: LearnerLevel[] | null = null
    if (LEARNERS != null) {
      const extra = b.nodes.slice(JOIN ? 4 : 3)
      const perNode = Math.max(...b.voters.map((n) => rssMiB(n.proc?.pid ?? 0)))
      const need = maxLearners * perNode * 1.3 // RSS grows under load
      if (need > freemem() / 2 ** 20) say(`learners: ${maxLearners} more nodes may need ~${need.toFixed(0)} MiB, more than the ${(freemem() / 2 ** 20).toFixed(0)} MiB free`)
      learners = await learnerScale({
        b, extra, control, hosts: hosts.slice(1), admins: b.admins.slice(1).map((a) => a.peerId), perConn: PER_CONN,
        clients: LEARNER_CLIENTS, warmupMs: WARMUP_MS, durationMs: DURATION_MS, leader: bLeader, say
      }, LEARNERS)
    }

    // ---- a 4th node joins as a learner (after --learners: into the grown cluster) ----
    let joined: { spawnToLearnerMs: number, startedToLearnerMs: number | null } | null = null
    if (JOIN) {
      const n4 = b.nodes[3]
      const ts = Date.now()
      b.start(n4)
      const anyVoter = b.voters.find((n) => n.proc != null) as LocalNode
      await waitForCluster(control, anyVoter, (s) => s.learners.includes(n4.peerId) || s.voters.includes(n4.peerId), 30_000)
      const at = Date.now()
      joined = { spawnToLearnerMs: at - ts, startedToLearnerMs: startedAt(n4) == null ? null : at - (startedAt(n4) as number) }
      say(`4th node a learner ${joined.spawnToLearnerMs} ms after spawn (${joined.startedToLearnerMs ?? '?'} ms after its host started)`)
    }

    // ---- the cost model: a fresh cluster under the profiler, one level, then strace ----
    let cost: CostModel | null = null
    if (COST) {
      // the main cluster and its clients stop first: the profiled cluster runs alone
      for (const h of hosts.splice(0)) { try { await h.stop() } catch { /* stopping anyway */ } }
      b.stop()
      const profDir = join(dir, 'profiles')
      const conns = connsFor(COST_CLIENTS)
      const pb = await blixardCluster(join(dir, 'blixard-prof'), await freeBase(3, true), 3, 1 + conns, DAEMON_ENV, profileFlags(profDir))
      profiled = pb
      cost = await costModel(pb, hosts, profDir, conns, (w: RpcClient, i: number) => adminWrite(w, pb.admins[1 + (i % conns)].peerId, `c${i}`))
    }

    report({ pairs, fo, frozen, rssB, rssE, idleCpu, join: joined, learners, cost, commandBytes: sample.length, etcdPutBytes: putFrame(Buffer.from('/bench/leader/256/255/9999'), value).length - 5, seconds: (Date.now() - t0) / 1000, load: [load0, loadavg()[0]] })
  } finally {
    await Promise.all(hosts.map(async (h) => { try { await h.stop() } catch { /* stopping anyway */ } }))
    stopAll()
    await sleep(300)
    if (!KEEP) rmSync(dir, { recursive: true, force: true })
    else say(`kept ${dir}`)
  }
}

/**
 * The cost model's run on a profiled cluster `pb` (its nodes write V8 CPU profiles into profDir on
 * exit): one level of COST_CLIENTS clients to the leader, whose recorded window marks the samples
 * that count; then strace -c on every node while the same load runs, against the Raft entries the
 * leader applied meanwhile; then SIGTERM, so each node writes its profile, and the buckets.
 */
async function costModel (pb: BlixardBench, hosts: BlixardHost[], profDir: string, conns: number, writer: (c: RpcClient, i: number) => (timeoutMs?: number) => Promise<void>): Promise<CostModel> {
  const { control } = await connectHosts(pb, hosts)
  const mine = hosts.slice(hosts.length - pb.admins.length)
  const st = await waitForCluster(control, pb.voters[0], (s) => s.leader != null)
  const leader = pb.voters.find((n) => n.peerId === st.leader)
  if (leader == null) throw new Error(`cost model: leader ${String(st.leader)} is not one of the profiled nodes`)
  const nodes = [leader, ...pb.voters.filter((n) => n !== leader)]
  const pids = nodes.map((n) => n.proc?.pid ?? 0)
  const rpcs: RpcClient[] = await Promise.all([...Array(COST_CLIENTS).keys()].map(async (i) => await rpcTo(mine[1 + (i % conns)], leader)))
  const ws: WriteFn[] = rpcs.map((c, i) => { const w = writer(c, i); return async () => { await w() } })
  let from = 0
  let to = 0
  let cpu0: number[] = []
  let cpu1: number[] = []
  let main0: number[] = []
  let main1: number[] = []
  let th0: Array<Map<string, number>> = []
  let th1: Array<Map<string, number>> = []
  say(`cost model: ${COST_CLIENTS} clients to the profiled leader ${leader.name}`)
  const r = await closedLoop(ws, WARMUP_MS, DURATION_MS, () => processCpuMs(leader.proc?.pid), undefined, {
    start: () => { from = monoUs(); cpu0 = pids.map((p) => processCpuMs(p)); main0 = pids.map((p) => mainThreadCpuMs(p)); th0 = pids.map((p) => threadCpuMsByName(p)) },
    stop: () => { to = monoUs(); cpu1 = pids.map((p) => processCpuMs(p)); main1 = pids.map((p) => mainThreadCpuMs(p)); th1 = pids.map((p) => threadCpuMsByName(p)) }
  })
  // syscalls: strace every thread of every node while the same load runs
  const sc = await rpcTo(control, leader)
  const applied = async (): Promise<number> => (await sc.call('cluster.status', { stale: true }, { timeoutMs: 5_000 })).applied
  // the load runs from before strace attaches until after it detaches (STRACE_LOAD_MARGIN_MS each side)
  const bg = closedLoop(ws, 0, STRACE_ATTACH_MS + STRACE_MS + 6 * STRACE_LOAD_MARGIN_MS)
  await sleep(STRACE_LOAD_MARGIN_MS)
  const traces = pids.map((pid, i) => straceCounts(pid, join(profDir, `strace-${nodes[i].name}.txt`)))
  await sleep(STRACE_ATTACH_MS)
  const a0 = await applied()
  const s0 = performance.now()
  await sleep(STRACE_MS)
  const a1 = await applied()
  let counts: Array<Record<string, number>>
  try { counts = await Promise.all(traces.map(async (t) => await t.stop())) } catch (err) { say(`cost model: ${(err as Error).message}`); counts = pids.map(() => ({})) }
  const straceMs = performance.now() - s0
  await bg
  await sc.close()
  await Promise.all(rpcs.map(async (c) => { await c.close() }))
  // SIGTERM: each node stops and writes its profile on exit
  for (const n of nodes) n.proc?.kill('SIGTERM')
  await Promise.race([Promise.all(nodes.map(async (n) => { await exited(n.proc) })), sleep(PROFILE_EXIT_WAIT_MS)])
  const entries = a1 - a0
  const out: NodeCost[] = nodes.map((n, i) => {
    const prof = readProfile(profDir, pids[i])
    if (prof == null) say(`cost model: ${n.name} (pid ${pids[i]}) wrote no profile into ${profDir}`)
    const b = prof == null ? null : bucketProfile(prof, from, to)
    const mainMsPerWrite = (main1[i] - main0[i]) / r.writes
    const shares = b == null ? null : scaleToCpu(b, mainMsPerWrite)
    const stageMsPerWrite = Object.fromEntries(STAGES.map((s) => [s, shares == null ? NaN : shares[s]])) as Record<Stage, number>
    const sampled = b == null ? NaN : STAGES.reduce((a, s) => a + b.ms[s], 0) + b.idleMs
    const procMsPerWrite = (cpu1[i] - cpu0[i]) / r.writes
    const grouped = groupSyscalls(counts[i])
    return {
      role: i === 0 ? 'leader' as const : 'follower' as const,
      name: n.name,
      stageMsPerWrite,
      idleShare: b == null ? NaN : b.idleMs / sampled,
      procMsPerWrite,
      mainMsPerWrite,
      offMainMsPerWrite: procMsPerWrite - mainMsPerWrite,
      threadsMsPerWrite: Object.fromEntries(Object.entries(threadDelta(th0[i], th1[i])).map(([t, ms]) => [t, ms / r.writes])),
      syscallsPerWrite: Object.fromEntries(Object.entries(grouped).map(([g, c]) => [g, c / entries])),
      syscalls: counts[i]
    }
  })
  return { clients: COST_CLIENTS, writes: r.writes, perSec: r.perSec, windowMs: (to - from) / 1000, straceEntries: entries, straceMs, nodes: out }
}

/** Load time before strace attaches, and (several times over) after it detaches. */
const STRACE_LOAD_MARGIN_MS = 500
/** How long profiled nodes get to stop after SIGTERM and write their profiles. */
const PROFILE_EXIT_WAIT_MS = 30_000

/** Client hosts, one per bench admin (pushed onto `hosts`; hosts[0] is the control host), connected
 * to every voter, once the voters formed and every voter applied the admins. */
async function connectHosts (b: BlixardBench, hosts: BlixardHost[]): Promise<{ control: BlixardHost, formedAt: number }> {
  const mine: BlixardHost[] = []
  for (const id of b.admins) { const h = await clientHost(b.keyFile, id); hosts.push(h); mine.push(h) }
  const control = mine[0]
  // libp2p accepts at most 5 new connections a second from one IP (inboundConnectionThreshold),
  // and every client here is 127.0.0.1: connect each host to each node up front, paced.
  for (const h of mine) {
    await Promise.all(b.voters.map(async (n) => { for (let i = 0; i < 50; i++) { try { await h.dial(multiaddr(n.addr)); return } catch { await sleep(300) } } }))
    await sleep(300)
  }
  const formedAt = Date.now()
  await waitForCluster(control, b.voters[0], (s) => s.leader != null && s.voters.length === 3)
  // every node must have applied every admin before it authorizes their writes: the bootstrap node
  // adds the configured admins one by one, and under load the last of them lands seconds after the
  // first (a run at load ~20 lost 4084 writes to "is not an admin" when only the first was awaited)
  for (const n of b.voters) {
    const c = await rpcTo(control, n)
    for (const a of b.admins) {
      const w = adminWrite(c, a.peerId, 'ready')
      const deadline = Date.now() + 120_000
      for (let ok = false; !ok;) {
        try { await w(2_000); ok = true } catch (err) {
          if (Date.now() > deadline) throw new Error(`node ${n.name} did not take a write of admin ${a.peerId} for 120 s: ${(err as Error).message}`)
          await sleep(200)
        }
      }
    }
    await c.close()
  }
  return { control, formedAt }
}

/** Starts now; answers ms until `elected()` first holds (polled every 10 ms, errors count as no). */
async function newLeaderAfter (elected: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (await elected().catch(() => false)) return performance.now() - t0
    if (performance.now() - t0 > 30_000) return NaN
    await sleep(10)
  }
}

/** Resolves when the process has exited (at once if there is none). */
async function exited (proc: { exitCode: number | null, signalCode: string | null, once: (ev: 'exit', fn: () => void) => unknown } | null | undefined): Promise<void> {
  if (proc == null || proc.exitCode != null || proc.signalCode != null) return
  await new Promise<void>((resolve) => { proc.once('exit', resolve) })
}

/** Waits until all 3 etcd members run, agree on a leader, and sit at the same raft index. */
async function etcdCaughtUp (e: EtcdCluster): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    await etcdLeader(e)
    const st = await Promise.all(e.members.map(async (m) => await etcdStatus(m).catch(() => null)))
    if (st.every((s) => s != null) && new Set(st.map((s) => s?.raftIndex)).size === 1) return
    await sleep(100)
  }
  throw new Error('restarted etcd member did not catch up')
}

/** Waits until the restarted node follows the leader and has applied what the leader had committed. */
async function blixardCaughtUp (control: BlixardHost, b: BlixardBench, survivor: LocalNode, restarted: LocalNode): Promise<void> {
  const lead = await waitForCluster(control, survivor, (s) => s.leader != null)
  await waitForCluster(control, restarted, (s) => s.leader != null && s.applied >= lead.commit && s.voters.length === 3, 60_000)
}

/** When the node logged 'node started' (its libp2p host is up), from its log file. */
function startedAt (n: LocalNode): number | null {
  try {
    for (const line of readFileSync(join(n.dir, 'log'), 'utf8').split('\n')) {
      if (!line.includes('"node started"')) continue
      const ts = (JSON.parse(line) as { ts?: string }).ts
      if (ts != null) return Date.parse(ts)
    }
  } catch { /* no log yet */ }
  return null
}

interface Report {
  pairs: Pair[]
  fo: { blixardMs: number[], etcdMs: number[], blixardLeaderMs: number[], etcdLeaderMs: number[] }
  /** SIGSTOP of the leader: no connection reset, the election timeout decides */
  frozen: { blixardMs: number, etcdMs: number }
  rssB: number[]
  rssE: number[]
  /** % of one core per member over 3 idle seconds */
  idleCpu: { blixard: number[], etcd: number[] }
  join: { spawnToLearnerMs: number, startedToLearnerMs: number | null } | null
  learners: LearnerLevel[] | null
  cost: CostModel | null
  commandBytes: number
  etcdPutBytes: number
  seconds: number
  /** 1-minute load average at the start and at the end */
  load: number[]
}

function report (r: Report): void {
  const ratio = (a: number, b: number): number => a / b
  const at256 = r.pairs.find((p) => p.target === 'leader' && p.clients === 256) ?? r.pairs.find((p) => p.clients === 256)
  const foB = median(r.fo.blixardMs)
  const foE = median(r.fo.etcdMs)
  const rssB = Math.max(...r.rssB)
  const targets = {
    throughput256: at256 == null ? null : { ratio: ratio(at256.blixard.perSec, at256.etcd.perSec), want: '>= 0.5', pass: ratio(at256.blixard.perSec, at256.etcd.perSec) >= 0.5 },
    p99at256: at256 == null ? null : { ratio: ratio(at256.blixard.p99Ms, at256.etcd.p99Ms), want: '<= 2', pass: ratio(at256.blixard.p99Ms, at256.etcd.p99Ms) <= 2 },
    failover: { ratio: ratio(foB, foE), want: '<= 1', pass: foB <= foE },
    idleRss: { mib: rssB, want: '<= 100 MiB', pass: rssB <= 100 },
    // as test/cluster counts it: from the moment the node is up (its host started), not from spawn
    join: r.join?.startedToLearnerMs == null ? null : { ms: r.join.startedToLearnerMs, want: '<= 5000 ms after the node is up', pass: r.join.startedToLearnerMs <= 5000 },
    // target: at 256 clients, >= 1.2x etcd running with TLS (the transport encryption Blixard always has)
    tlsThroughput256: at256?.etcdTls == null ? null : { ratio: ratio(at256.blixard.perSec, at256.etcdTls.perSec), want: '>= 1.2', pass: ratio(at256.blixard.perSec, at256.etcdTls.perSec) >= 1.2 }
  }
  const lrep = r.learners == null ? null : learnerReport(r.learners)
  if (JSON_OUT) {
    const out = {
      config: { daemon: COMPILED ? 'compiled' : 'tsx', etcdTls: ETCD_TLS, learners: LEARNERS, costModel: COST ? { clients: COST_CLIENTS, straceS: STRACE_MS / 1000 } : null, durationS: DURATION_MS / 1000, warmupS: WARMUP_MS / 1000, clientsPerConnection: PER_CONN, valueBytes: VALUE_BYTES, blixardCommandBytes: r.commandBytes, etcdPutRequestBytes: r.etcdPutBytes, failoverTrials: r.fo.etcdMs.length },
      runs: r.pairs.map((p) => ({
        ...p,
        ratio: { perSec: ratio(p.blixard.perSec, p.etcd.perSec), p50: ratio(p.blixard.p50Ms, p.etcd.p50Ms), p99: ratio(p.blixard.p99Ms, p.etcd.p99Ms) },
        ...(p.etcdTls != null ? { ratioTls: { perSec: ratio(p.blixard.perSec, p.etcdTls.perSec), p50: ratio(p.blixard.p50Ms, p.etcdTls.p50Ms), p99: ratio(p.blixard.p99Ms, p.etcdTls.p99Ms) } } : {})
      })),
      failover: { ...r.fo, blixardMedianMs: foB, etcdMedianMs: foE, ratio: ratio(foB, foE) },
      frozenLeader: { ...r.frozen, ratio: ratio(r.frozen.blixardMs, r.frozen.etcdMs) },
      idleRssMiB: { blixard: r.rssB, etcd: r.rssE, ratio: ratio(rssB, Math.max(...r.rssE)) },
      idleCpuPct: r.idleCpu,
      join: r.join,
      ...(r.cost != null ? { costModel: r.cost } : {}),
      ...(r.learners != null ? { learners: { clients: LEARNER_CLIENTS, levels: r.learners, target: lrep?.target ?? null } } : {}),
      targets,
      machine: { cores: cpus().length, loadAverage: r.load },
      seconds: r.seconds
    }
    process.stdout.write(JSON.stringify(out) + '\n')
    return
  }
  // [figure, blixard, etcd, decimals, etcd with TLS (--etcd-tls; null: not measured)]
  const rows: Array<[string, number, number | null, number, number | null]> = []
  const f = (x: number, d: number): string => Number.isFinite(x) ? x.toFixed(d) : '—'
  const tlsCols = r.pairs.some((p) => p.etcdTls != null)
  for (const p of r.pairs) {
    const k = `${p.target.padEnd(8)} ${String(p.clients).padStart(3)} cl`
    const t = p.etcdTls
    rows.push([`${k}  writes/s`, p.blixard.perSec, p.etcd.perSec, 0, t?.perSec ?? null])
    rows.push([`${k}  p50 ms`, p.blixard.p50Ms, p.etcd.p50Ms, 2, t?.p50Ms ?? null])
    rows.push([`${k}  p99 ms`, p.blixard.p99Ms, p.etcd.p99Ms, 2, t?.p99Ms ?? null])
    rows.push([`${k}  server cpu ms/write`, p.blixard.serverCpuMsPerWrite, p.etcd.serverCpuMsPerWrite, 2, t?.serverCpuMsPerWrite ?? null])
    const lead = p.blixardPerNode.find((n) => n.leader)
    if (lead != null) rows.push([`${k}  of which leader node`, lead.cpuMsPerWrite, null, 2, null])
  }
  rows.push([`failover ms (median of ${r.fo.etcdMs.length})`, foB, foE, 0, null])
  rows.push(['  of which new leader named ms', median(r.fo.blixardLeaderMs), median(r.fo.etcdLeaderMs), 0, null])
  if (Number.isFinite(r.frozen.blixardMs)) rows.push(['failover ms, frozen leader (1 trial)', r.frozen.blixardMs, r.frozen.etcdMs, 0, null])
  rows.push(['idle RSS MiB (max of 3 nodes)', rssB, Math.max(...r.rssE), 0, null])
  rows.push(['idle CPU % of a core (max of 3)', Math.max(...r.idleCpu.blixard), Math.max(...r.idleCpu.etcd), 1, null])
  if (r.join != null) rows.push(['4th node learner ms (from spawn)', r.join.spawnToLearnerMs, null, 0, null])
  if (r.join?.startedToLearnerMs != null) rows.push(['4th node learner ms (from host up)', r.join.startedToLearnerMs, null, 0, null])
  const lines = [
    `Raft writes on 127.0.0.1, 3 nodes each: blixard-node vs etcd ${'3.4'} (defaults, fsync on). ${DURATION_MS / 1000} s per level after ${WARMUP_MS / 1000} s warmup.`,
    `Each client: one write in flight on its own stream, ${PER_CONN} clients per connection. Value ${VALUE_BYTES} B (blixard command ${r.commandBytes} B, etcd PutRequest ${r.etcdPutBytes} B).`,
    '',
    ...(tlsCols ? ['etcd TLS: a second etcd cluster with peer and client TLS (client certificates required), written over h2 with TLS (--etcd-tls).'] : []),
    `${'figure'.padEnd(34)} ${'blixard'.padStart(10)} ${'etcd'.padStart(10)} ${'blixard/etcd'.padStart(13)}${tlsCols ? ` ${'etcd TLS'.padStart(10)} ${'blixard/TLS'.padStart(12)}` : ''}`
  ]
  for (const [name, bv, ev, d, tv] of rows) {
    lines.push(`${name.padEnd(34)} ${f(bv, d).padStart(10)} ${(ev == null ? '—' : f(ev, d)).padStart(10)} ${(ev == null ? '—' : f(bv / ev, 2)).padStart(13)}` +
      (tlsCols ? ` ${(tv == null ? '—' : f(tv, d)).padStart(10)} ${(tv == null ? '—' : f(bv / tv, 2)).padStart(12)}` : ''))
  }
  const errs = r.pairs.filter((p) => p.blixard.errors + p.etcd.errors + (p.etcdTls?.errors ?? 0) > 0)
  for (const p of errs) {
    lines.push(`errors: ${p.target} ${p.clients} clients: blixard ${p.blixard.errors}${p.blixard.firstError != null ? ` (${p.blixard.firstError})` : ''}, etcd ${p.etcd.errors}${p.etcd.firstError != null ? ` (${p.etcd.firstError})` : ''}` +
      (p.etcdTls != null ? `, etcd TLS ${p.etcdTls.errors}${p.etcdTls.firstError != null ? ` (${p.etcdTls.firstError})` : ''}` : ''))
  }
  lines.push('')
  const trials = (w: number[], l: number[]): string => w.map((x, i) => `${x.toFixed(0)} (leader ${l[i].toFixed(0)})`).join(', ')
  lines.push(`failover trials ms, kill to first write (to new leader named): blixard ${trials(r.fo.blixardMs, r.fo.blixardLeaderMs)}; etcd ${trials(r.fo.etcdMs, r.fo.etcdLeaderMs)}`)
  lines.push('(kill -9: the kernel resets the dead leader\'s connections and Blixard\'s followers campaign at once; a frozen leader (SIGSTOP) resets nothing, as a hung or unplugged host, and both wait out their election timeouts)')
  const mark = (t: { pass: boolean } | null): string => t == null ? 'n/a' : t.pass ? 'PASS' : 'MISS'
  lines.push(`targets: writes at 256 clients ${targets.throughput256 == null ? '' : f(targets.throughput256.ratio, 2)}x etcd (>= 0.5) ${mark(targets.throughput256)}; ` +
    `p99 at 256 ${targets.p99at256 == null ? '' : f(targets.p99at256.ratio, 2)}x (<= 2) ${mark(targets.p99at256)}; ` +
    `failover ${f(targets.failover.ratio, 2)}x (<= 1) ${mark(targets.failover)}; idle RSS ${f(rssB, 0)} MiB (<= 100) ${mark(targets.idleRss)}; ` +
    `learner ${targets.join == null ? '' : `${targets.join.ms} ms after up `}(<= 5000) ${mark(targets.join)}` +
    (targets.tlsThroughput256 == null ? '' : `; writes at 256 clients ${f(targets.tlsThroughput256.ratio, 2)}x etcd with TLS (>= 1.2) ${mark(targets.tlsThroughput256)}`))
  if (lrep != null) lines.push('', ...lrep.lines)
  if (r.cost != null) lines.push('', ...costReport(r.cost))
  lines.push(`(${r.seconds.toFixed(0)} s in all; ${cpus().length} cores, 1-min load average ${r.load.map((x) => x.toFixed(1)).join(' → ')}: everything here shares them)`)
  process.stdout.write(lines.join('\n') + '\n')
}

main().then(() => process.exit(0), (err) => { process.stderr.write(`bench:raft failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
