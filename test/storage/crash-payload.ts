// The payload the crash test child writes at each index, so the parent can check it intact.
import type { Command } from '../../protocols/commands.ts'
export function payloadFor (i: number): Uint8Array {
  const n = 16 + (i % 200)
  const out = new Uint8Array(n)
  for (let k = 0; k < n; k++) out[k] = (i * 131 + k * 7) & 255
  return out
}

/** A deterministic command stream mixing successes and rejections. */
export function commandFor (i: number): Command {
  switch (i % 4) {
    case 0: return { type: 'CreateVolume', name: `vol-${i % 97}`, pool: 'rbd', sizeGiB: 1 + (i % 5) }
    case 1: return { type: 'SnapshotVolume', name: `vol-${(i - 1) % 97}`, snapshot: `s${i % 3}` }
    case 2: return { type: 'AddAdmin', peerId: `p${i % 61}`, name: 'x' }
    default: return { type: 'DeleteVolume', name: `vol-${(i * 7) % 97}` }
  }
}
