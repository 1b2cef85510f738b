// Shared by the test/net tests: real libp2p hosts on 127.0.0.1 with fresh identities.
import '../../node/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey, ServiceMap } from '@libp2p/interface'
import { createBlixardHost, type BlixardHost, type ServiceFactories } from '../../node/net/host.ts'
import { newClusterKey } from '../../node/keygen.ts'

export const CLUSTER_KEY = newClusterKey()

export interface TestHostOptions<S extends ServiceMap> {
  services?: ServiceFactories<S>
  clusterKey?: Uint8Array
  privateKey?: PrivateKey
  listen?: string[]
  dialTimeoutMs?: number
  bootstrap?: string[]
  /** yamux initial stream window (bytes) */
  streamWindowBytes?: number
}

export async function testHost<S extends ServiceMap = Record<string, never>> (opts: TestHostOptions<S> = {}): Promise<BlixardHost<S>> {
  return await createBlixardHost<S>({
    privateKey: opts.privateKey ?? await generateKeyPair('Ed25519'),
    clusterKey: opts.clusterKey ?? CLUSTER_KEY,
    listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    dialTimeoutMs: opts.dialTimeoutMs ?? 3000,
    gossipHeartbeatMs: 100,
    streamWindowBytes: opts.streamWindowBytes,
    bootstrap: opts.bootstrap,
    services: opts.services
  })
}

export async function until (cond: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now()
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(r => setTimeout(r, 10))
  }
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(r => setTimeout(r, ms)) }

export function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]
}
