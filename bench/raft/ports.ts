// Free loopback ports for the benches' local clusters (bench:raft, bench:idle).
import { createServer } from 'node:net'

export async function portFree (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => { s.close(() => resolve(true)) })
  })
}

/** A base port with base..base+n-1 free, and base+100.. too when `withMetrics` (local-cluster
 * puts a node's metrics at its port + 100). */
export async function freeBase (n: number, withMetrics: boolean): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 25_000)
    const want = [...Array(n).keys()].flatMap((i) => withMetrics ? [base + i, base + 100 + i] : [base + i])
    let ok = true
    for (const p of want) if (!(await portFree(p))) { ok = false; break }
    if (ok) return base
  }
  throw new Error('no free ports')
}
