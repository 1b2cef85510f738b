// Cost per write of command signatures (protocols/auth.ts), which sit on the write path: µs per
// Ed25519 sign (CLI / node), per verify (leader before proposing, every replica on apply), the
// event loop's share of a verify started on the worker thread (node/preverify.ts: what the leader pays
// for a signed write since its check moved off the loop; followers verify on apply), and per apply of a small command without
// and with the authority check, on the daemon's LMDB store and on the in-memory one. The checked
// apply is timed twice: with signatures this process has not seen, and with signatures already
// verified on the worker thread (the leader's steady state).
//   node --import tsx bench/auth.ts [--n 5000] [--json]
import { performance } from 'node:perf_hooks'
import { loadavg } from 'node:os'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { seededSigner, signCommandSync, verifyAuth } from '../protocols/auth.ts'
import { preverifyAuth, preverifyReady, setPreverifyInlineGap, setPreverifyMinBatch } from '../node/preverify.ts'
import type { CommandAuth } from '../protocols/auth.ts'
import type { Kv } from '../storage/kv.ts'
import { LmdbKv } from '../storage/lmdb-kv.ts'
import type { Command } from '../protocols/commands.ts'
import { validateCommand } from '../protocols/command-schema.ts'
import { MemoryKv } from '../storage/memory-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../storage/state-machine.ts'

const argv = process.argv.slice(2)
const N = Number(argv[argv.indexOf('--n') + 1] ?? 5000) || 5000
const asJson = argv.includes('--json')

const admin = seededSigner(new Uint8Array(32).fill(1))
const boot = seededSigner(new Uint8Array(32).fill(2))

function cmdAt (i: number): Command {
  const v = validateCommand({ type: 'SetVmDesiredState', id: 'v1', desired: i % 2 === 0 ? 'stopped' : 'running' })
  if (!v.ok) throw new Error(v.error.message)
  return v.cmd
}

function time (n: number, fn: (i: number) => void): number {
  for (let i = n; i < n + Math.min(200, n); i++) fn(i) // warm up, on inputs the timed loop does not reuse
  const t = performance.now()
  for (let i = 0; i < n; i++) fn(i)
  return (performance.now() - t) * 1000 / n
}

const dirs: string[] = []
function store (kind: 'lmdb' | 'memory'): Kv {
  if (kind === 'memory') return new MemoryKv()
  const dir = mkdtempSync(join(tmpdir(), 'blixard-bench-auth-'))
  dirs.push(dir)
  return LmdbKv.open(dir, { sync: 'lazy' }) // as the daemon opens its state store
}

function world (checked: boolean, kind: 'lmdb' | 'memory'): { sm: StateMachine, next: () => number } {
  const sm = new StateMachine(store(kind), checked ? {} : UNCHECKED_AUTHORITY)
  let i = 0
  const add = validateCommand({ type: 'AddAdmin', peerId: admin.peerId, name: 'ops' })
  const vm = validateCommand({ type: 'CreateVm', id: 'v1', spec: { name: 'web', vcpus: 1, memoryMiB: 128, diskGiB: 1, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [], kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'always', requires: [] } })
  if (!add.ok || !vm.ok) throw new Error('bad setup')
  sm.apply(++i, encodeEnvelope({ cmd: add.cmd, at: 1, auth: signCommandSync(boot, add.cmd, 'a', 1000) }))
  sm.apply(++i, encodeEnvelope({ cmd: vm.cmd, at: 1, auth: signCommandSync(admin, vm.cmd, 'b', 1000) }))
  return { sm, next: () => ++i }
}

const cmd = cmdAt(0)
const signUs = time(N, (i) => { signCommandSync(admin, cmd, `n${i}`, 10) })
// distinct signatures: a first verify (followers on apply, the leader before proposing) ...
const sigs = Array.from({ length: N + 200 }, (_, i) => signCommandSync(admin, cmd, `v${i}`, 10))
const verifyUs = time(N, (i) => { if (!verifyAuth(cmd, sigs[i])) throw new Error('verify failed') })
// ... and again a window later (the leader's apply of what it checked before proposing, a few
// hundred writes earlier at most: the cache holds 4096)
const WINDOW = 1000
let reverifyMs = 0
for (let start = 0; start < N; start += WINDOW) {
  const batch = Array.from({ length: Math.min(WINDOW, N - start) }, (_, i) => signCommandSync(admin, cmd, `r${start + i}`, 10))
  for (const s of batch) verifyAuth(cmd, s) // the check before proposing, not timed
  const t = performance.now()
  for (const s of batch) if (!verifyAuth(cmd, s)) throw new Error('verify failed')
  reverifyMs += performance.now() - t
}
const reverifyUs = reverifyMs * 1000 / N

// the event loop's share of a verify started on the worker thread, a window of them in flight at once
// (every signature goes to the worker here: none is a lone one left to the synchronous check)
setPreverifyInlineGap(Infinity)
setPreverifyMinBatch(1)
await preverifyReady()
const asyncSigs = Array.from({ length: N }, (_, i) => signCommandSync(admin, cmd, `p${i}`, 10))
let issueMs = 0
for (let start = 0; start < N; start += WINDOW) {
  const t = performance.now()
  const started = asyncSigs.slice(start, start + WINDOW).map(async (a) => await preverifyAuth(cmd, a))
  issueMs += performance.now() - t
  if ((await Promise.all(started)).some((ok) => ok !== true)) throw new Error('preverify failed')
}
const issueUs = issueMs * 1000 / N

/** The same stream of writes, pre-encoded, applied without and with the authority check, on a store. */
async function applyCosts (kind: 'lmdb' | 'memory'): Promise<{ plainUs: number, checkedUs: number, preverifiedUs: number }> {
  const plain = world(false, kind)
  const plainEnvs = Array.from({ length: N + 200 }, (_, i) => encodeEnvelope({ cmd: cmdAt(i), at: 1 }))
  const plainUs = time(N, (i) => { plain.sm.apply(plain.next(), plainEnvs[i]) })
  const signed = (tag: string): { auths: CommandAuth[], envs: Uint8Array[] } => {
    const auths = Array.from({ length: N + 200 }, (_, i) => signCommandSync(admin, cmdAt(i), `${tag}${i}`, 100_000))
    return { auths, envs: auths.map((auth, i) => encodeEnvelope({ cmd: cmdAt(i), at: 1, auth })) }
  }
  const fresh = signed(`w-${kind}-`)
  const checked = world(true, kind)
  const checkedUs = time(N, (i) => {
    const r = checked.sm.apply(checked.next(), fresh.envs[i])
    if (!r.ok) throw new Error(r.error.message)
  })
  // verified ahead on the worker thread, in windows the cache holds (as the leader does when a
  // signed write arrives), then applied: only the apply is timed
  const pre = signed(`q-${kind}-`)
  const again = world(true, kind)
  let ms = 0
  const total = N + Math.min(200, N)
  for (let start = 0; start < total; start += WINDOW) {
    const end = Math.min(total, start + WINDOW)
    await Promise.all(pre.auths.slice(start, end).map(async (a, k) => await preverifyAuth(cmdAt(start + k), a)))
    const t = performance.now()
    for (let i = start; i < end; i++) {
      const r = again.sm.apply(again.next(), pre.envs[i])
      if (!r.ok) throw new Error(r.error.message)
    }
    if (start >= Math.min(200, N)) ms += performance.now() - t // the first window warms up
  }
  return { plainUs, checkedUs, preverifiedUs: ms * 1000 / (total - Math.min(200, N)) }
}
const lmdb = await applyCosts('lmdb')
const memory = await applyCosts('memory')
for (const d of dirs) rmSync(d, { recursive: true, force: true })
const applyUs = lmdb.plainUs
const checkedUs = lmdb.checkedUs

const r2 = (x: number): number => +x.toFixed(2)
const out = {
  n: N,
  signUs: r2(signUs),
  verifyUs: r2(verifyUs),
  reverifyUs: r2(reverifyUs),
  preverifyEventLoopUs: r2(issueUs),
  applyUs: r2(applyUs),
  applyCheckedUs: r2(checkedUs),
  applyPreverifiedUs: r2(lmdb.preverifiedUs),
  memory: { applyUs: r2(memory.plainUs), applyCheckedUs: r2(memory.checkedUs), applyPreverifiedUs: r2(memory.preverifiedUs) },
  verifyToApplyRatio: r2(verifyUs / applyUs),
  checkedToPlainApplyRatio: r2(checkedUs / applyUs),
  preverifiedToPlainApplyRatio: r2(lmdb.preverifiedUs / applyUs),
  loadAverage: loadavg()[0]
}
if (asJson) console.log(JSON.stringify(out))
else {
  console.log(`load average at the end: ${out.loadAverage.toFixed(2)}`)
  console.log(`sign:                ${out.signUs} µs`)
  console.log(`verify:              ${out.verifyUs} µs  (${out.verifyToApplyRatio}× a plain apply)`)
  console.log(`verify again:        ${out.reverifyUs} µs  (a signature this process verified before: a cache hit)`)
  console.log(`preverify, on loop:  ${out.preverifyEventLoopUs} µs  (the event loop's share of a verify run on the worker thread)`)
  console.log(`apply, LMDB (plain):       ${out.applyUs} µs`)
  console.log(`apply, LMDB (checked):     ${out.applyCheckedUs} µs  (${out.checkedToPlainApplyRatio}× plain: verify + nonce bookkeeping)`)
  console.log(`apply, LMDB (preverified): ${out.applyPreverifiedUs} µs  (${out.preverifiedToPlainApplyRatio}× plain: the nonce bookkeeping and a cache hit)`)
  console.log(`apply, memory: plain ${out.memory.applyUs}, checked ${out.memory.applyCheckedUs}, preverified ${out.memory.applyPreverifiedUs} µs`)
}
