// Every .nix file in the repository parses with the real Nix parser (Debian nix-bin).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readdirSync, statSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nixParse } from './nix-cli.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const SKIP = new Set(['node_modules', '.git', 'dist', '.data', '.cluster', '.ceph', '.guest'])

function walk (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    if (SKIP.has(name)) continue
    const p = join(dir, name)
    const st = statSync(p)
    if (st.isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.nix')) out.push(p)
  }
  return out
}

const files = walk(root)

test('the repository has its Nix files where they belong', () => {
  const rel = files.map((f) => relative(root, f))
  for (const must of ['flake.nix', 'nixos/module.nix', 'nixos/package.nix']) assert.ok(rel.includes(must), `${must} is missing`)
})

test('every .nix file passes nix-instantiate --parse', () => {
  const failed: string[] = []
  for (const f of files) {
    const r = nixParse(f)
    if (!r.ok) failed.push(`${relative(root, f)}: ${r.stderr}`)
  }
  assert.equal(failed, [], failed.join('\n'))
  console.log(`  parsed ${files.length} .nix files`)
})

test('the parse check fails on a broken file (it can fail)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blix-nix-'))
  writeFileSync(join(dir, 'broken.nix'), '{ a = ; }\n')
  const r = nixParse(join(dir, 'broken.nix'))
  rmSync(dir, { recursive: true })
  assert.not.ok(r.ok)
  assert.match(r.stderr, /syntax error/)
})

test.run()
