// The project's own Jepsen-style run: real blixard-node processes, each in its own network
// namespace on a bridge (10.79.0.x/24 in a switch namespace with no uplink: nothing leaves the
// machine), clients in a namespace of their own (test/chaos/client.ts), and a nemesis that kills
// nodes with -9, pauses them with SIGSTOP, cuts one off the network (the leader, often), and
// kills them all at once. Afterwards everything heals, every register is read from every node,
// and the history is checked: linearizable per register (Wing–Gong search with memoization,
// sim/checkers/linearizability.ts), no NotFound for a register whose create was acknowledged,
// every node alive and answering. Used by test/chaos/chaos.test.ts (short) and
// scripts/chaos.ts (`npm run chaos -- --minutes N`).
import '../../node/polyfill.ts'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { writeClusterKey } from '../../node/keygen.ts'
import { NetnsSwitch } from '../cluster/netns-switch.ts'
import { checkLinearizable } from '../../sim/checkers/linearizability.ts'
import { Prng } from '../../sim/prng.ts'
import { REGISTER_MODEL, staleNotFound } from './register-model.ts'
import type { ChaosOp } from './register-model.ts'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
/** How long a nemesis fault lasts, and the pause between faults (ms). */
const FAULT_MS = [1_000, 4_000] as const
const GAP_MS = [1_000, 3_000] as const
const FORM_TIMEOUT_MS = 60_000

export interface ChaosOptions {
  nodes: 3 | 5
  /** how long the workload runs under faults */
  workloadMs: number
  clients: number
  registers: number
  seed: number
  log: (line: string) => void
}

export interface ChaosResult {
  ops: number
  ok: number
  unknown: number
  faults: Record<string, number>
  nonLinearizable: string[]
  /** registers still not linearizable once NotFound answers are ignored */
  otherAnomalies: string[]
  inconclusive: string[]
  staleNotFound: ChaosOp[]
  deadNodes: number[]
  finalReadsMissing: number
  elapsedMs: number
}

interface Node { i: number, id: string, dir: string, addr: string, ip: string, proc: ChildProcess | null, paused: boolean, cut: boolean }

function describe (op: ChaosOp): string {
  const out = op.out === null ? '?' : op.out.ok ? `ok g${op.out.gen ?? '-'}=${op.out.value ?? '-'}` : op.out.error
  const arg = op.kind === 'read' ? '' : op.kind === 'cas' ? `(${op.value} if g${op.expect})` : `(${op.value})`
  return `    c${op.client} ${op.kind}${arg} [${op.call.toFixed(0)}, ${op.ret?.toFixed(0) ?? 'inf'}] -> ${out} @n${op.node + 1}`
}


export async function runChaos (o: ChaosOptions): Promise<ChaosResult> {
  if (process.getuid?.() !== 0) throw new Error('the chaos run needs root (ip netns)')
  const t0 = Date.now()
  const net = new NetnsSwitch(`bj${process.pid % 100000}`, '10.79.0')
  const CL = `${net.tag}cl`
  const nsOf = (i: number): string => `${net.tag}n${i + 1}`
  const ipOf = (i: number): string => net.addr(i + 1)
  const dir = mkdtempSync(join(tmpdir(), 'blixard-chaos-'))
  const rng = new Prng(o.seed).fork('nemesis')
  const teardown = (): void => { net.teardown() }
  process.on('exit', teardown)
  net.up()
  for (let i = 0; i < o.nodes; i++) net.attach(nsOf(i), `v${i + 1}`, i + 1)
  net.attach(CL, 'vc', 100)

  const key = join(dir, 'cluster.key')
  await writeClusterKey(key)
  const cliDir = join(dir, 'cli')
  const adminId = peerIdFromPrivateKey((await loadOrCreateIdentity(cliDir)).privateKey).toString()
  const nodes: Node[] = await Promise.all(Array.from({ length: o.nodes }, async (_, i) => {
    const ndir = join(dir, `n${i + 1}`)
    mkdirSync(ndir, { recursive: true })
    const id = peerIdFromPrivateKey((await loadOrCreateIdentity(ndir)).privateKey).toString()
    return { i, id, dir: ndir, ip: ipOf(i), addr: `/ip4/${ipOf(i)}/tcp/7000/p2p/${id}`, proc: null, paused: false, cut: false }
  }))
  const start = (n: Node): void => {
    const out = openSync(join(n.dir, 'log'), 'a')
    const boot = nodes.filter((x) => x !== n).map((x) => x.addr).join(',')
    n.proc = spawn('ip', ['netns', 'exec', nsOf(n.i), process.execPath, '--max-semi-space-size=4', join(ROOT, 'bin', 'blixard-node.js'),
      '--name', `n${n.i + 1}`, '--data-dir', n.dir, '--listen', `/ip4/${n.ip}/tcp/7000`, '--cluster-key-file', key,
      '--bootstrap', boot, '--metrics-port', '0', '--bootstrap-expect', String(o.nodes), '--admin', adminId], { cwd: ROOT, stdio: ['ignore', out, out] })
    n.paused = false
  }
  const kill = async (n: Node): Promise<void> => {
    const p = n.proc
    if (p == null) return
    n.proc = null
    if (p.exitCode != null || p.signalCode != null) return
    // `ip netns exec` execs node, so the pid is the daemon's own
    const gone = new Promise((resolve) => p.on('exit', resolve))
    p.kill('SIGKILL')
    await gone
  }
  const signal = (n: Node, sig: 'SIGSTOP' | 'SIGCONT'): void => { if (n.proc?.pid != null) { try { process.kill(n.proc.pid, sig) } catch { /* gone */ } } }
  const cut = (n: Node, down: boolean): void => { net.setPort(`v${n.i + 1}`, !down); n.cut = down }

  for (const n of nodes) start(n)
  const client = spawn('ip', ['netns', 'exec', CL, process.execPath, '--import', 'tsx', join(ROOT, 'test', 'chaos', 'client.ts'), key, cliDir, String(o.registers), ...nodes.map((n) => n.addr)],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
  const ops: ChaosOp[] = []
  let status: Array<{ id: string, leader: string | null, term: number, voters: number } | null> = []
  let finalMissing = 0
  const done = new Map<string, () => void>()
  createInterface({ input: client.stdout! }).on('line', (line) => {
    const m = JSON.parse(line) as { status?: typeof status, op?: ChaosOp, gaveUp?: boolean, done?: string }
    if (m.status !== undefined) status = m.status
    if (m.op !== undefined) ops.push(m.op)
    if (m.gaveUp === true) finalMissing++
    if (m.done !== undefined) done.get(m.done)?.()
  })
  const order = async (cmd: Record<string, unknown>): Promise<void> => {
    const finished = new Promise<void>((resolve) => done.set(cmd.cmd as string, resolve))
    client.stdin!.write(JSON.stringify(cmd) + '\n')
    await finished
  }
  const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
  const leader = (): Node | null => {
    const id = status.find((s) => s?.leader != null)?.leader
    return nodes.find((n) => n.id === id) ?? null
  }
  const faults: Record<string, number> = {}
  const deadNodes: number[] = []
  try {
    const formedBy = Date.now() + FORM_TIMEOUT_MS
    while (!(status.length === o.nodes && status.every((s) => s?.leader != null && s.voters >= Math.min(3, o.nodes)))) {
      if (Date.now() > formedBy) throw new Error(`the cluster did not form in ${FORM_TIMEOUT_MS} ms: ${JSON.stringify(status)}`)
      await sleep(200)
    }
    o.log(`chaos: ${o.nodes} nodes formed in ${Date.now() - t0} ms; workload ${o.workloadMs} ms, ${o.clients} clients, ${o.registers} registers, seed ${o.seed}`)
    let running = true
    const workload = order({ cmd: 'run', ms: o.workloadMs, clients: o.clients, seed: o.seed }).finally(() => { running = false })
    await sleep(1_000)
    const minority = Math.floor((o.nodes - 1) / 2)
    while (running) {
      const action = rng.pick(['kill', 'kill', 'pause', 'cut-leader', 'cut', 'kill-all'] as const)
      const hold = rng.range(FAULT_MS[0], FAULT_MS[1])
      const victims: Node[] = []
      if (action === 'kill-all') victims.push(...nodes)
      else if (action === 'cut-leader') { const l = leader(); if (l !== null) victims.push(l) }
      else victims.push(...rng.shuffle(nodes).slice(0, rng.range(1, minority)))
      if (victims.length === 0) { await sleep(200); continue }
      faults[action] = (faults[action] ?? 0) + 1
      o.log(`chaos: +${((Date.now() - t0) / 1000).toFixed(1)}s ${action} ${victims.map((v) => `n${v.i + 1}`).join(',')} for ${hold} ms`)
      if (action === 'kill' || action === 'kill-all') await Promise.all(victims.map(kill))
      else if (action === 'pause') victims.forEach((v) => { signal(v, 'SIGSTOP'); v.paused = true })
      else victims.forEach((v) => { cut(v, true) })
      await sleep(hold)
      if (action === 'kill' || action === 'kill-all') victims.forEach(start)
      else if (action === 'pause') victims.forEach((v) => { signal(v, 'SIGCONT'); v.paused = false })
      else victims.forEach((v) => { cut(v, false) })
      await sleep(rng.range(GAP_MS[0], GAP_MS[1]))
    }
    await workload
    o.log(`chaos: healed at +${((Date.now() - t0) / 1000).toFixed(1)}s; final reads`)
    await order({ cmd: 'final' })
    for (const n of nodes) if (n.proc == null || n.proc.exitCode != null || n.proc.signalCode != null) deadNodes.push(n.i + 1)
  } catch (err) {
    for (const n of nodes) {
      let text = ''
      try { text = readFileSync(join(n.dir, 'log'), 'utf8') } catch { /* none */ }
      o.log(`--- n${n.i + 1} log tail\n${text.split('\n').filter((l) => !l.includes('"debug"')).slice(-15).map((l) => l.slice(0, 300)).join('\n')}`)
    }
    throw err
  } finally {
    client.kill('SIGKILL')
    for (const n of nodes) { if (n.paused) signal(n, 'SIGCONT') }
    await Promise.all(nodes.map(kill))
    teardown()
    rmSync(dir, { recursive: true, force: true })
  }

  const answers = new Map<string, number>()
  for (const op of ops) {
    const k = `${op.kind}:${op.out === null ? 'unknown' : op.out.ok ? 'ok' : op.out.error}`
    answers.set(k, (answers.get(k) ?? 0) + 1)
  }
  o.log(`chaos: answers ${JSON.stringify(Object.fromEntries([...answers].sort()))}`)
  const byReg = new Map<string, ChaosOp[]>()
  for (const op of ops) {
    if (op.out?.ok === false && op.out.error === 'NotSent') continue // never reached a node
    if (op.kind === 'read' && op.out === null) continue // a read with no answer changed nothing
    const list = byReg.get(op.reg) ?? []
    list.push(op)
    byReg.set(op.reg, list)
  }
  const nonLinearizable: string[] = []
  const otherAnomalies: string[] = []
  const inconclusive: string[] = []
  for (const [reg, list] of [...byReg].sort()) {
    const r = checkLinearizable(list, REGISTER_MODEL)
    // The same history with every NotFound answer read as "did nothing": what is left of a
    // violation then is not the stale-name bug but something worse (a stale read, a lost write).
    if (r === 'violation' && checkLinearizable(list.filter((op) => !(op.out?.ok === false && op.out.error === 'NotFound')), REGISTER_MODEL) === 'violation') otherAnomalies.push(reg)
    if (r === 'violation') {
      nonLinearizable.push(`${reg} (${list.length} ops)`)
      o.log(`chaos: ${reg} is not linearizable:\n${list.map(describe).join('\n')}`)
    }
    if (r === 'budget') inconclusive.push(reg)
  }
  return {
    ops: ops.length,
    ok: ops.filter((op) => op.out?.ok === true).length,
    unknown: ops.filter((op) => op.out === null && op.kind !== 'read').length,
    faults,
    nonLinearizable,
    otherAnomalies,
    inconclusive,
    staleNotFound: staleNotFound(ops),
    deadNodes,
    finalReadsMissing: finalMissing,
    elapsedMs: Date.now() - t0
  }
}
