// Where a program is on PATH, as a shell would find it (absolute directories only: a relative PATH
// entry would depend on the daemon's working directory).
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** The first executable `name` in PATH's absolute directories, or null. */
export function onPath (name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir.startsWith('/')) continue
    try { accessSync(join(dir, name), constants.X_OK); return join(dir, name) } catch {}
  }
  return null
}
