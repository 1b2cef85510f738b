#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=131072 node --max-semi-space-size=16 --v8-pool-size=1
// The shebang sets the daemon's node flags and glibc's heap trim threshold, which bound its idle
// RSS (why each: DAEMON_NODE_FLAGS and DAEMON_ENV in scripts/local-cluster.ts, which starts local
// clusters, tests and benches with the same; keep them equal): GNU env (coreutils 8.30+) passes
// them with -S; the NixOS unit sets NODE_OPTIONS and the variable.
// Runs the TypeScript sources through tsx in a source checkout (tsx is a dev dependency), and the
// compiled output (dist/, from `npm run build`) in an installed package, where tsx is absent.
// BLIXARD_COMPILED=1 runs dist/ in a checkout too: the daemon as installed (bench:raft measures it;
// tsx's loader and source maps add ~35 MiB of idle RSS).
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
const root = fileURLToPath(new URL('..', import.meta.url))
let tsx = false
try { createRequire(import.meta.url).resolve('tsx/esm/api'); tsx = existsSync(root + 'node/main-node.ts') && process.env.BLIXARD_COMPILED !== '1' } catch { tsx = false }
if (tsx) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(pathToFileURL(root + 'node/main-node.ts').href)
} else {
  await import(pathToFileURL(root + 'dist/node/main-node.js').href)
}
