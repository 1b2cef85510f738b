// Reproduces the @libp2p/pnet cipher crash with the cipher alone: four xsalsa20 (WASM) ciphers,
// 900 KiB chunks (an 868 KB `vm list` answer is one such chunk). After the first grow the other
// ciphers see a detached view and grow again by the whole chunk: the 62.5 MiB cap is hit fast.
// Prints "crash ..." on the stock package. node/net/pnet.ts replaces it.
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const xsalsa20 = require('xsalsa20')
const key = new Uint8Array(32), nonce = new Uint8Array(24)
const ciphers = Array.from({ length: 4 }, () => xsalsa20(nonce, key))
const big = new Uint8Array(900 * 1024)
try {
  for (let i = 0; i < 200; i++) ciphers[i % 4].update(big)
  console.log('survived')
} catch (e) { console.log('crash', e.message) }
