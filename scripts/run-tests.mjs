#!/usr/bin/env node
// Runs every test file under test/ in its own child process (uvu on the
// TypeScript sources through tsx), collects uvu's per-file totals and ends
// with the one line CI reads: "N passed, N failed, N skipped".
//
// Two lanes. The serial lane runs the files that start real parts (nodes, QEMU, Ceph, namespaces,
// sockets, timed child processes) one at a time, as before. The pure lane runs the process-free files
// (pure cores, the simulator, in-process LMDB) one at a time beside it, at the lowest CPU priority:
// they take the CPU the real-cluster tests leave idle and yield it the moment those need it, so a
// lease or fence deadline in the serial lane sees no more contention than before. Each file's output
// is printed whole, between serial files, so no two files' lines interleave.
//
// Usage: node scripts/run-tests.mjs [PATTERN]   (PATTERN filters file paths)
//        BLIXARD_TEST_SERIAL=1 runs every file in the serial lane.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null

/** Folders of process-free tests: pure cores, the simulator, in-process stores and fakes. */
const PURE_DIRS = ['agent', 'bench', 'migration', 'net-host', 'nixos', 'node', 'placement', 'pools', 'protocols', 'qemu', 'raft', 'resources', 'sim', 'storage']
  .map((d) => `test/${d}/`)
/**
 * What keeps a file of those folders serial: a child process running beside the test (a daemon,
 * QEMU, a crash child, a watchdog), a socket, the cluster helpers, or a wait on the wall clock (a
 * timer, a worker thread): at the lowest priority such a wait can end late, and its file then tests
 * the scheduler. A synchronous child (nix-instantiate, the simulator's CLI) is plain computation.
 */
const REAL_PARTS = /(?<![.\w])spawn\(|\bexecFile\(|\bfork\(|node:net\b|node:dgram\b|harness\.ts|net\/helpers\.ts|netns|startTestCeph|setTimeout\(|setInterval\(|\bWorker\(/
/** nice(2) value of the pure lane: the lowest priority */
const PURE_NICE = 19

function walk (dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.ts')) out.push(p)
  }
  return out
}

function isPure (file) {
  const rel = relative(root, file)
  return PURE_DIRS.some((d) => rel.startsWith(d)) && !REAL_PARTS.test(readFileSync(file, 'utf8'))
}

const files = walk(join(root, 'test')).filter((f) => filter == null || filter.test(relative(root, f)))
const oneLane = process.env.BLIXARD_TEST_SERIAL === '1'
const pure = oneLane ? [] : files.filter(isPure)
const serial = files.filter((f) => !pure.includes(f))
let passed = 0
let failed = 0
let skipped = 0
const failures = []
const started = Date.now()
/** finished pure-lane files' output, printed at the next gap between serial files */
const held = []

/** Runs one file; `live` streams its output as it comes, otherwise it is returned whole. */
function runOne (file, { live, nice }) {
  return new Promise((resolve) => {
    const rel = relative(root, file)
    const t0 = Date.now()
    // nice(1) execs node at the lower priority, so every thread it starts has it from the first
    const argv = [process.execPath, '--import', 'tsx', file]
    const cmd = nice == null ? argv : ['nice', '-n', String(nice), ...argv]
    const child = spawn(cmd[0], cmd.slice(1), {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d; if (live) process.stdout.write(d) })
    child.stderr.on('data', (d) => { out += d; if (live) process.stderr.write(d) })
    child.on('close', (code, signal) => {
      const t = (s) => { const m = out.match(new RegExp(`${s}:\\s+(\\d+)`)); return m ? Number(m[1]) : 0 }
      const p = t('Passed'); const s = t('Skipped'); const total = t('Total')
      let f = Math.max(0, total - p - s)
      if (code !== 0 && f === 0) f = 1 // crashed or exited non-zero without a uvu failure
      if (total === 0 && f === 0) f = 1 // ran no test at all (a setup that died quietly): never a pass
      passed += p; failed += f; skipped += s
      if (f > 0) failures.push(`${rel} (exit ${code ?? signal})`)
      const line = `-- ${rel}: ${p} passed, ${f} failed, ${s} skipped in ${((Date.now() - t0) / 1000).toFixed(1)}s${live ? '' : ' (pure lane)'}\n`
      resolve(live ? (process.stdout.write(line), '') : out + (out.endsWith('\n') || out === '' ? '' : '\n') + line)
    })
  })
}

const flush = () => { while (held.length > 0) process.stdout.write(held.shift()) }
const secs = () => ((Date.now() - started) / 1000).toFixed(1)
let pureDone = ''
let serialDone = ''
const pureLane = (async () => {
  for (const f of pure) held.push(await runOne(f, { live: false, nice: PURE_NICE }))
  pureDone = secs()
})()
for (const f of serial) { flush(); await runOne(f, { live: true }) }
serialDone = secs()
await pureLane
flush()
if (failures.length > 0) console.log(`failing files:\n  ${failures.join('\n  ')}`)
// a pure lane ending after the serial one means the real-cluster files left it too little CPU
console.log(`test time ${secs()}s over ${files.length} files (${serial.length} serial, done at ${serialDone}s; ${pure.length} in the pure lane, done at ${pureDone}s)`)
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed > 0 ? 1 : 0)
