// Cost per write of command signatures (protocols/auth.ts), which sit on the write path: µs per
// Ed25519 sign (CLI / node), per verify (leader before proposing, every replica on apply), and per
// apply of a small command without and with the authority check, on an in-memory store. The
// checked apply verifies signatures this process has not seen (a follower's case).
//   node --import tsx bench/auth.ts [--n 5000] [--json]
import { performance } from 'node:perf_hooks'
import { seededSigner, signCommandSync, verifyAuth } from '../protocols/auth.ts'
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

function world (checked: boolean): { sm: StateMachine, next: () => number } {
  const sm = new StateMachine(new MemoryKv(), checked ? {} : UNCHECKED_AUTHORITY)
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

// the same stream of writes, pre-encoded, applied with and without the authority check
const plain = world(false)
const plainEnvs = Array.from({ length: N + 200 }, (_, i) => encodeEnvelope({ cmd: cmdAt(i), at: 1 }))
const applyUs = time(N, (i) => { plain.sm.apply(plain.next(), plainEnvs[i]) })
const checked = world(true)
const checkedEnvs = Array.from({ length: N + 200 }, (_, i) => { const c = cmdAt(i); return encodeEnvelope({ cmd: c, at: 1, auth: signCommandSync(admin, c, `w${i}`, 100_000) }) })
const checkedUs = time(N, (i) => {
  const r = checked.sm.apply(checked.next(), checkedEnvs[i])
  if (!r.ok) throw new Error(r.error.message)
})

const out = {
  n: N,
  signUs: +signUs.toFixed(2),
  verifyUs: +verifyUs.toFixed(2),
  reverifyUs: +reverifyUs.toFixed(2),
  applyUs: +applyUs.toFixed(2),
  applyCheckedUs: +checkedUs.toFixed(2),
  verifyToApplyRatio: +(verifyUs / applyUs).toFixed(2),
  checkedToPlainApplyRatio: +(checkedUs / applyUs).toFixed(2)
}
if (asJson) console.log(JSON.stringify(out))
else {
  console.log(`sign:            ${out.signUs} µs`)
  console.log(`verify:          ${out.verifyUs} µs  (${out.verifyToApplyRatio}× a plain apply)`)
  console.log(`verify again:    ${out.reverifyUs} µs  (the leader's apply of a command it checked before proposing)`)
  console.log(`apply (plain):   ${out.applyUs} µs`)
  console.log(`apply (checked): ${out.applyCheckedUs} µs  (${out.checkedToPlainApplyRatio}× plain: verify + nonce bookkeeping)`)
}
