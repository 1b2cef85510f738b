#!/usr/bin/env node
// Lists comments that cite a file the tree does not have (a path ending in a source extension): a cited
// path must exist from the repository root, from the citing file's folder, or as the tail of a
// tracked path. Exits 1 when any is found. Usage: node scripts/cited-files.mjs
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join, normalize, basename } from 'node:path'

const tracked = execFileSync('git', ['ls-files'], { encoding: 'utf8' }).split('\n').filter(Boolean)
const all = new Set(tracked)
const names = new Set(tracked.map((f) => basename(f)))
// project names that look like files
const NOT_FILES = new Set(['microvm.nix'])
const CITE = /(?<![\w@/.-])((?:\.{1,2}\/)?[\w.-]+(?:\/[\w.-]+)*\.(?:ts|mjs|nix|js))\b/g
const COMMENT = /(\/\/|\/\*|^\s*\*|^\s*#)(.*)$/

const exists = (from, ref) => {
  if (NOT_FILES.has(ref) || all.has(ref) || all.has(normalize(join(dirname(from), ref)))) return true
  if (!ref.includes('/')) return names.has(ref)
  const tail = '/' + ref.replace(/^(\.\.?\/)+/, '')
  return tracked.some((f) => f.endsWith(tail))
}

let bad = 0
for (const f of tracked.filter((f) => /\.(ts|mjs|nix)$/.test(f))) {
  readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
    const m = COMMENT.exec(line)
    if (m == null || (f.endsWith('.ts') && m[1].trim() === '#')) return
    for (const [, ref] of m[2].matchAll(CITE)) {
      if (!exists(f, ref)) { bad++; console.log(`${f}:${i + 1}: cites ${ref}, which does not exist`) }
    }
  })
}
process.exit(bad > 0 ? 1 : 0)
