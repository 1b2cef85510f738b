// What the DHT costs an idle cluster: N hosts as N processes on 127.0.0.1, fully
// meshed by bootstrap addresses, the same libp2p host a node runs (node/net/host.ts: identify,
// ping, gossipsub, pnet) with Kademlia in server mode and then with it off. After a warm-up, the
// CPU each process used (/proc/PID/stat) and the TCP bytes its sockets moved (`ss -tinp`) over
// the measuring window, per node. Run only on an idle machine (it says the load average first).
// usage: node --import tsx bench/dht-idle.ts [NODES=5] [WARMUP_S=15] [MEASURE_S=60]
import '../node/polyfill.ts'
import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createBlixardHost } from '../node/net/host.ts'
import { newClusterKey } from '../node/keygen.ts'

/** clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux) */
const USER_HZ = 100

async function child (mode: 'server' | 'off', keyHex: string, bootstrap: string[]): Promise<void> {
  const host = await createBlixardHost({ privateKey: await generateKeyPair('Ed25519'), clusterKey: Buffer.from(keyHex, 'hex'), mdns: false, dht: mode, bootstrap })
  process.stdout.write(JSON.stringify({ addr: host.getMultiaddrs()[0].toString() }) + '\n')
  process.on('SIGTERM', () => { void Promise.resolve(host.stop()).finally(() => process.exit(0)) })
}

function cpuSeconds (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / USER_HZ // utime, stime (fields 14 and 15)
}

/** TCP bytes (sent + received) of every socket each pid holds, from `ss -tinp` */
function tcpBytes (pids: number[]): Map<number, number> {
  const out = new Map(pids.map((p) => [p, 0]))
  const lines = execFileSync('ss', ['-tinpH'], { encoding: 'utf8' }).split('\n')
  let owner: number | null = null
  for (const l of lines) {
    const m = /pid=(\d+)/.exec(l)
    if (m != null) { owner = Number(m[1]); continue }
    if (owner == null || !out.has(owner)) continue
    const sent = /bytes_sent:(\d+)/.exec(l)
    const recv = /bytes_received:(\d+)/.exec(l)
    out.set(owner, out.get(owner)! + Number(sent?.[1] ?? 0) + Number(recv?.[1] ?? 0))
    owner = null
  }
  return out
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

async function run (mode: 'server' | 'off', n: number, warmupS: number, measureS: number): Promise<{ cpuPctPerNode: number, bytesPerSPerNode: number }> {
  const keyHex = Buffer.from(newClusterKey()).toString('hex')
  const procs: ChildProcess[] = []
  const addrs: string[] = []
  try {
    for (let i = 0; i < n; i++) {
      const p = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, keyHex, ...addrs], { stdio: ['ignore', 'pipe', 'inherit'] })
      procs.push(p)
      const addr = await new Promise<string>((resolve, reject) => {
        p.stdout!.once('data', (d: Buffer) => { resolve((JSON.parse(d.toString().split('\n')[0]) as { addr: string }).addr) })
        p.once('exit', () => { reject(new Error('a bench host exited at start')) })
      })
      addrs.push(addr)
    }
    await sleep(warmupS * 1000)
    const pids = procs.map((p) => p.pid!)
    const cpu0 = pids.map(cpuSeconds)
    const b0 = tcpBytes(pids)
    await sleep(measureS * 1000)
    const cpu1 = pids.map(cpuSeconds)
    const b1 = tcpBytes(pids)
    const cpu = pids.reduce((a, _, i) => a + cpu1[i] - cpu0[i], 0)
    const bytes = pids.reduce((a, p) => a + b1.get(p)! - b0.get(p)!, 0)
    return { cpuPctPerNode: 100 * cpu / measureS / n, bytesPerSPerNode: bytes / measureS / n }
  } finally {
    for (const p of procs) p.kill('SIGTERM')
    await sleep(500)
  }
}

if (process.argv[2] === '--child') {
  await child(process.argv[3] as 'server' | 'off', process.argv[4], process.argv.slice(5))
} else {
  const [n, warmupS, measureS] = [Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 15), Number(process.argv[4] ?? 60)]
  console.log(`load average before: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (1, 5, 15 min)`)
  for (const mode of ['server', 'off'] as const) {
    const r = await run(mode, n, warmupS, measureS)
    console.log(`dht ${mode.padEnd(6)} ${n} nodes, ${measureS} s idle after ${warmupS} s: CPU ${r.cpuPctPerNode.toFixed(2)} % of a core per node, TCP ${r.bytesPerSPerNode.toFixed(0)} B/s per node (sent + received)`)
  }
  console.log(`load average after: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`)
}
