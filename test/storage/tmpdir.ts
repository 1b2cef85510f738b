// Temp directories for LMDB environments in tests, removed at exit.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const made: string[] = []
process.on('exit', () => { for (const d of made) rmSync(d, { recursive: true, force: true }) })

export function tempDir (prefix = 'blix-storage-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  made.push(d)
  return d
}

export function removeDir (d: string): void {
  rmSync(d, { recursive: true, force: true })
}
