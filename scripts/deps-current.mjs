// Exit 0 when node_modules holds what package-lock.json pins (every non-optional package at its
// locked version, as npm's own record node_modules/.package-lock.json says), else 1 naming one
// that differs. By content, not by mtime: a fresh checkout (or a git worktree sharing another
// checkout's node_modules) has a newer package-lock.json without needing `npm ci`.
import { readFileSync } from 'node:fs'

const want = JSON.parse(readFileSync('package-lock.json', 'utf8')).packages ?? {}
let have
try {
  have = JSON.parse(readFileSync('node_modules/.package-lock.json', 'utf8')).packages ?? {}
} catch {
  console.error('setup: node_modules is missing or was not installed by npm')
  process.exit(1)
}
const stale = Object.entries(want).filter(([path, p]) => path !== '' && p.optional !== true && have[path]?.version !== p.version)
if (stale.length > 0) {
  console.error(`setup: node_modules differs from package-lock.json in ${stale.length} package(s), e.g. ${stale[0][0]}: locked ${stale[0][1].version}, installed ${have[stale[0][0]]?.version ?? 'none'}`)
  process.exit(1)
}
