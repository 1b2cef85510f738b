// bench:cipher — throughput of the cluster-key cipher: the stock @libp2p/pnet path (the `xsalsa20`
// WASM package) against ours (node/net/pnet.ts on libsodium, sodium-native), same run, same chunks.
// Chunks of 64 KiB (yamux-sized, below the size that makes the WASM memory grow, so the stock path
// survives to be measured). `--json` prints one JSON object. Usage: npm run bench:cipher [-- --json]
import { createRequire } from 'node:module'
import { randomBytes } from 'node:crypto'
import { XSalsa20Stream } from '../node/net/pnet.ts'

const require = createRequire(import.meta.url)
const stockXsalsa20 = require('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (b: Uint8Array) => Uint8Array }

/** bytes pushed through each path per round */
const TOTAL_BYTES = 256 * 1024 * 1024
const CHUNK_BYTES = 64 * 1024
const ROUNDS = 3

function measure (update: (b: Uint8Array) => Uint8Array): number {
  const chunk = randomBytes(CHUNK_BYTES)
  const t0 = process.hrtime.bigint()
  for (let n = 0; n < TOTAL_BYTES; n += CHUNK_BYTES) update(chunk)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  return TOTAL_BYTES / 1e6 / s
}

const key = randomBytes(32)
const best = { stock: 0, ours: 0 }
for (let r = 0; r < ROUNDS; r++) {
  const stock = stockXsalsa20(randomBytes(24), key)
  best.stock = Math.max(best.stock, measure(b => stock.update(b)))
  const ours = new XSalsa20Stream(key, randomBytes(24))
  best.ours = Math.max(best.ours, measure(b => ours.update(b)))
}
const result = {
  chunkBytes: CHUNK_BYTES,
  bytesPerRound: TOTAL_BYTES,
  rounds: ROUNDS,
  stockWasmMBps: Math.round(best.stock),
  oursMBps: Math.round(best.ours),
  ratioOursToStock: Number((best.ours / best.stock).toFixed(2))
}
if (process.argv.includes('--json')) console.log(JSON.stringify(result))
else console.log(`xsalsa20 ${CHUNK_BYTES / 1024} KiB chunks, best of ${ROUNDS}: stock @libp2p/pnet (WASM) ${result.stockWasmMBps} MB/s, ours (libsodium) ${result.oursMBps} MB/s, ratio ${result.ratioOursToStock}`)
