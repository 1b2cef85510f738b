// The Jepsen-style run's clients, in one process inside the client network namespace (one
// monotonic clock for the whole history). Reads its orders as JSON lines on stdin and writes
// JSON lines on stdout: {status} every 500 ms (who each node thinks leads), {op} for every
// completed or abandoned operation, {done} at the end.
//   stdin  {"cmd":"run","ms":N,"clients":C,"seed":S}   run the workload for N ms
//          {"cmd":"final"}                                read every register from every node
// usage: node --import tsx test/chaos/client.ts KEY_FILE CLI_DIR REGISTERS ADDR...
import '../../node/polyfill.ts'
import { createInterface } from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readClusterKey } from '../../node/keygen.ts'
import { createBlixardHost } from '../../node/net/host.ts'
import { RpcClient } from '../../node/net/rpc.ts'
import { signingClient } from '../../node/cli/signing.ts'
import { keySigner } from '../../protocols/auth.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { VmSpec } from '../../protocols/model.ts'
import { Prng } from '../../sim/prng.ts'
import { DEFINITE_ERRORS } from './register-model.ts'
import type { ChaosOp, ChaosOpKind, ChaosOutput } from './register-model.ts'
import { BlixardError } from '../../protocols/errors.ts'

const OP_TIMEOUT_MS = 4_000
const DIAL_TIMEOUT_MS = 1_500

const [keyFile, cliDir, regCount, ...addrs] = process.argv.slice(2)
/** Registers in play: new ones keep being created during the run, and clients work mostly on the
 * newest `regCount`, so a node that was down or cut off is often asked about a VM created while
 * it was away (a write resolving the name on its stale replica would answer NotFound). */
const registers = Array.from({ length: Number(regCount) }, (_, i) => `reg-${i}`)
const ACTIVE = Number(regCount)
const NEW_REGISTER_PCT = 6
const { privateKey } = await loadOrCreateIdentity(cliDir)
// admin writes are signed by the CLI's key (cluster.prepare, then cluster.submit)
const signer = keySigner(peerIdFromPrivateKey(privateKey).toString(), privateKey)
const host = await createBlixardHost({ privateKey, clusterKey: await readClusterKey(keyFile), listen: ['/ip4/0.0.0.0/tcp/0'], mdns: false, dialTimeoutMs: DIAL_TIMEOUT_MS })
const t0 = performance.now()
const now = (): number => Math.round((performance.now() - t0) * 1000) / 1000
const emit = (x: unknown): void => { process.stdout.write(JSON.stringify(x) + '\n') }

/** One RPC connection per (client, node), opened on demand and dropped on any transport error. */
class Conn {
  private c: RpcClient | null = null
  constructor (readonly node: number) {}
  async get (): Promise<RpcClient> {
    if (this.c?.usable !== true) this.c = signingClient(await RpcClient.connect(host, multiaddr(addrs[this.node]), { timeoutMs: OP_TIMEOUT_MS, dialTimeoutMs: DIAL_TIMEOUT_MS }), signer)
    return this.c
  }
  drop (): void { this.c = null }
}

function spec (name: string, memoryMiB: number): VmSpec {
  return {
    name, vcpus: 1, memoryMiB, diskGiB: 0, hypervisor: 'qemu', image: { kind: 'tiny' }, volumes: [], networks: [],
    kernelParams: [], constraints: [], antiAffinityGroup: null, affinity: [], spreadLabel: null, priority: 0, restartPolicy: 'never', requires: []
  }
}

let nextId = 0
let nextKey = 0

/** Runs one operation against `conn`'s node and records it. Only errors that promise nothing was
 * applied count as returned; a failure to even open the stream means the request was never sent. */
async function op (client: number, conn: Conn, kind: ChaosOpKind, reg: string, value?: number, expect?: number): Promise<ChaosOp> {
  const rec: ChaosOp = { id: nextId++, client, kind, reg, call: now(), ret: null, out: null, node: conn.node, ...(value !== undefined ? { value } : {}), ...(expect !== undefined ? { expect } : {}) }
  let rpc: RpcClient
  try {
    rpc = await conn.get()
  } catch {
    // never sent: nothing can have happened
    rec.ret = now()
    rec.out = { ok: false, error: 'NotSent' }
    return rec
  }
  try {
    let out: ChaosOutput
    switch (kind) {
      case 'create': {
        const r = await rpc.call('vm.create', { spec: spec(reg, value as number), start: false, key: `chaos-${process.pid}-${nextKey++}` })
        out = { ok: true, gen: r.generation, value: r.spec.memoryMiB }
        break
      }
      case 'write': case 'cas': {
        const r = await rpc.call('vm.update', { vm: reg, spec: spec(reg, value as number), ...(kind === 'cas' ? { ifGeneration: expect as number } : {}) })
        out = { ok: true, gen: r.generation, value: r.spec.memoryMiB }
        break
      }
      case 'read': {
        const r = await rpc.call('vm.show', { vm: reg })
        out = { ok: true, gen: r.generation, value: r.spec.memoryMiB }
        break
      }
    }
    rec.ret = now()
    rec.out = out
  } catch (err) {
    const kindOf = err instanceof BlixardError ? err.kind : 'Transport'
    if (!(err instanceof BlixardError) || kindOf === 'Timeout' || kindOf === 'Unavailable') conn.drop()
    if (DEFINITE_ERRORS.has(kindOf) || (kind === 'read')) {
      // a read that failed changed nothing whatever the reason
      rec.ret = now()
      rec.out = DEFINITE_ERRORS.has(kindOf) ? { ok: false, error: kindOf } : null
    } else {
      rec.out = null
      rec.ret = null
    }
  }
  return rec
}

async function workload (ms: number, clients: number, seed: number): Promise<void> {
  const rng = new Prng(seed)
  const end = now() + ms
  const lastSeen = new Map<string, number>()
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    const r = rng.fork(`client/${c}`)
    const conns = addrs.map((_, i) => new Conn(i))
    while (now() < end) {
      const conn = conns[r.int(conns.length)]
      const fresh = r.int(100) < NEW_REGISTER_PCT
      if (fresh) registers.push(`reg-${registers.length}`)
      const reg = fresh ? registers[registers.length - 1] : registers[registers.length - 1 - r.int(Math.min(ACTIVE, registers.length))]
      const x = r.int(100)
      const value = 128 + r.int(4000)
      let rec: ChaosOp
      if (fresh || (!lastSeen.has(reg) && x < 30)) rec = await op(c, conn, 'create', reg, value)
      else if (x < 45) rec = await op(c, conn, 'write', reg, value)
      else if (x < 65) rec = await op(c, conn, 'cas', reg, value, lastSeen.get(reg) ?? 1)
      else rec = await op(c, conn, 'read', reg)
      if (rec.out?.ok === true && rec.out.gen !== undefined && rec.kind === 'read') lastSeen.set(reg, rec.out.gen)
      if (rec.kind === 'create' && rec.out !== null) lastSeen.set(reg, lastSeen.get(reg) ?? 1)
      emit({ op: rec })
      if (rec.out === null || rec.out.ok === false) await new Promise((resolve) => setTimeout(resolve, 50 + r.int(150)))
    }
  }))
}

/** After the faults: read every register from every node, retrying until each node answers. */
async function final (): Promise<void> {
  const deadline = now() + 60_000
  await Promise.all(addrs.map(async (_, i) => {
    const conn = new Conn(i)
    for (const reg of [...registers]) {
      for (;;) {
        const rec = await op(1000 + i, conn, 'read', reg)
        if (rec.out !== null && !(rec.out.ok === false && rec.out.error === 'NotSent')) { emit({ op: rec }); break }
        if (now() > deadline) { emit({ op: rec, gaveUp: true }); break }
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
    }
  }))
}

/** Every 500 ms: each node's view of the leader (stale, local: this is for the nemesis, not the history). */
const statusConns = addrs.map((_, i) => new Conn(i))
const statusTimer = setInterval(() => {
  void Promise.all(statusConns.map(async (c) => {
    try {
      const rpc = await c.get()
      const st = await rpc.call('cluster.status', { stale: true }, { timeoutMs: 400 })
      return { id: st.id, leader: st.leader ?? null, term: st.term, voters: st.voters.length }
    } catch {
      c.drop()
      return null
    }
  })).then((views) => { emit({ status: views }) })
}, 500)

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  const msg = JSON.parse(line) as { cmd: string, ms?: number, clients?: number, seed?: number }
  if (msg.cmd === 'run') await workload(msg.ms ?? 10_000, msg.clients ?? 4, msg.seed ?? 1)
  else if (msg.cmd === 'final') await final()
  emit({ done: msg.cmd })
  if (msg.cmd === 'final') break
}
clearInterval(statusTimer)
await host.stop()
process.exit(0)
