// Runs Debian's nix-instantiate (nix-bin) for the tests: parse files, evaluate
// expressions to JSON. Offline, no store writes (--readonly-mode), no daemon.
import { spawnSync } from 'node:child_process'

const ENV = { ...process.env, NIX_CONFIG: 'build-users-group =\nexperimental-features =' }

export interface NixResult { ok: boolean, stdout: string, stderr: string }

function run (args: string[]): NixResult {
  const r = spawnSync('nix-instantiate', args, { env: ENV, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.error != null) throw r.error
  return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr }
}

export function nixAvailable (): boolean {
  return spawnSync('nix-instantiate', ['--version']).status === 0
}

/** `nix-instantiate --parse FILE`: exit 0 and the normalised expression, or the syntax error with its location. */
export function nixParse (file: string): NixResult {
  return run(['--parse', file])
}

/** Evaluates a Nix expression (strictly) and decodes its JSON. Throws with nix's error text on failure. */
export function nixEvalJson (expr: string, cwd?: string): unknown {
  const r = spawnSync('nix-instantiate', ['--readonly-mode', '--eval', '--strict', '--json', '-E', expr], { env: ENV, encoding: 'utf8', cwd, maxBuffer: 64 * 1024 * 1024 })
  if (r.error != null) throw r.error
  if (r.status !== 0) throw new Error(`nix eval failed:\n${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Like nixEvalJson but returns the error text instead of throwing (for tests that expect a failure). */
export function nixEvalError (expr: string): string | null {
  const r = spawnSync('nix-instantiate', ['--readonly-mode', '--eval', '--strict', '--json', '-E', expr], { env: ENV, encoding: 'utf8' })
  return r.status === 0 ? null : r.stderr
}
