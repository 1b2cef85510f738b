// Scenario tests: every testdata/*.txt script must produce exactly its expected output.
// REWRITE=1 regenerates the expected blocks (then read the diff before committing).
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runScript } from './interaction.ts'

const dir = join(dirname(fileURLToPath(import.meta.url)), 'testdata')

for (const f of readdirSync(dir).filter(f => f.endsWith('.txt')).sort()) {
  test(`scenario ${f}`, () => {
    const path = join(dir, f)
    const text = readFileSync(path, 'utf8')
    const actual = runScript(text)
    if (process.env.REWRITE === '1') writeFileSync(path, actual)
    else assert.fixture(actual, text)
  })
}

test.run()
