#!/usr/bin/env node
// Runs every test file under test/ in its own child process (uvu on the
// TypeScript sources through tsx), collects uvu's per-file totals and ends
// with the one line CI reads: "N passed, N failed, N skipped".
//
// Usage: node scripts/run-tests.mjs [PATTERN]   (PATTERN filters file paths)
import { spawn } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null

function walk (dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.ts')) out.push(p)
  }
  return out
}

const files = walk(join(root, 'test')).filter((f) => filter == null || filter.test(relative(root, f)))
let passed = 0
let failed = 0
let skipped = 0
const failures = []
const started = Date.now()

function runOne (file) {
  return new Promise((resolve) => {
    const rel = relative(root, file)
    const t0 = Date.now()
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d) })
    child.stderr.on('data', (d) => { out += d; process.stderr.write(d) })
    child.on('close', (code, signal) => {
      const t = (s) => { const m = out.match(new RegExp(`${s}:\\s+(\\d+)`)); return m ? Number(m[1]) : 0 }
      const p = t('Passed'); const s = t('Skipped'); const total = t('Total')
      let f = Math.max(0, total - p - s)
      if (code !== 0 && f === 0) f = 1 // crashed or exited non-zero without a uvu failure
      passed += p; failed += f; skipped += s
      if (f > 0) failures.push(`${rel} (exit ${code ?? signal})`)
      console.log(`-- ${rel}: ${p} passed, ${f} failed, ${s} skipped in ${((Date.now() - t0) / 1000).toFixed(1)}s`)
      resolve()
    })
  })
}

for (const f of files) await runOne(f)
if (failures.length > 0) console.log(`failing files:\n  ${failures.join('\n  ')}`)
console.log(`test time ${((Date.now() - started) / 1000).toFixed(1)}s over ${files.length} files`)
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(failed > 0 ? 1 : 0)
