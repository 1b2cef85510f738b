// A volume's phases and who carries them out: the rules the state machine (storage/apply-volumes.ts),
// the volume reconciler (node/volumes/), the scheduler and the RPC handlers share. Pure.
//
//   CreateVolume ──▶ pending ──ready──▶ ready ◀──ready── pending ◀── ResizeVolume / SnapshotVolume
//                       │                                   │
//                       └──failed──▶ failed ◀──failed───────┘
//   DeleteVolume (ready, pending or failed; not attached, no clone) ──▶ deleting ──gone──▶ (record removed)
//                                                                           └──failed──▶ failed
//
// Every change the reconciler must carry out bumps the volume's generation; a report names the
// generation it carried out, so a report about an older change is stale and changes nothing.
import type { NodeRecord, VolumePhase, VolumeRecord } from './model.ts'

/** What an operator does so that volumes can be made: said in every refusal that needs it. */
export const CEPH_CONFIG_HINT = 'give a node a Ceph client: set ceph.conf in its config ([ceph] conf = /etc/ceph/ceph.conf, or --ceph-conf PATH, or BLIXARD_CEPH_CONF) and restart it, so that it advertises the rbd capability'

/** A record made before volumes had phases had its image made by the RPC handler at once: ready. */
export function phaseOf (v: VolumeRecord): VolumePhase { return v.phase ?? 'ready' }
export function generationOf (v: VolumeRecord): number { return v.generation ?? 0 }
export function imageMade (v: VolumeRecord): boolean { return v.imageMade ?? v.phase === undefined }

/** Does the reconciler have something to carry out on this volume? */
export function needsWork (v: VolumeRecord): boolean {
  const p = phaseOf(v)
  return p === 'pending' || p === 'deleting'
}

/** Nodes that can reach Ceph: they advertise `rbd` (a ceph.conf in their config) and their lease
 * has not expired. */
export function cephNodes (nodes: readonly NodeRecord[]): NodeRecord[] {
  return nodes.filter((n) => n.capabilities.includes('rbd') && n.liveness !== 'down')
}

/** The one node that carries out volume changes and may report them: the lowest peer id among the
 * nodes that can reach Ceph (cephNodes), or null when there is none. A function of replicated state
 * only, so every replica judges a report alike at its index (the leader is not in that state, so
 * it is not preferred). When that node goes down (its lease expires) or stops advertising rbd, the
 * next one takes over; its work is idempotent (node/volumes/reconciler.ts). */
export function volumeReconciler (nodes: readonly NodeRecord[]): string | null {
  let best: string | null = null
  for (const n of cephNodes(nodes)) if (best === null || n.id < best) best = n.id
  return best
}

/** Why a VM cannot use this volume now, or null when it can: its image must exist (made once: a
 * resize or snapshot in flight or failed leaves the image usable), and it must not be going away. */
export function volumeUnusable (v: VolumeRecord): string | null {
  const p = phaseOf(v)
  if (p === 'deleting') return `volume ${v.name} is being deleted`
  if (imageMade(v)) return null
  if (p === 'failed') return `volume ${v.name} failed: ${v.reason ?? 'no reason given'}; delete it (blixard volume delete ${v.name}) and create it again`
  return `volume ${v.name} is pending: its RBD image is not made yet${v.reason != null ? ` (${v.reason})` : ''}`
}
