// What the volume reconciler must do now, from the replicated state alone (pure, table-tested in
// test/storage/apply-volumes.test.ts): nothing unless this node is the volume reconciler
// (protocols/volume-phases.ts volumeReconciler); else, per volume waiting for it, in name order:
// make the image match the record (ensure), remove it (remove), fail it without touching Ceph, or
// wait (a clone whose parent's image or snapshot is still being made).
import type { NodeRecord, VolumeRecord } from '../../protocols/model.ts'
import { imageMade, needsWork, phaseOf, volumeReconciler } from '../../protocols/volume-phases.ts'

export type VolumeTask =
  | { kind: 'ensure', volume: VolumeRecord, parent: VolumeRecord | null }
  | { kind: 'remove', volume: VolumeRecord }
  | { kind: 'fail', volume: VolumeRecord, reason: string }
  | { kind: 'wait', volume: VolumeRecord, reason: string }

export function volumeTasks (self: string, nodes: readonly NodeRecord[], volumes: readonly VolumeRecord[]): VolumeTask[] {
  if (volumeReconciler(nodes) !== self) return []
  const byName = new Map(volumes.map((v) => [v.name, v]))
  const tasks: VolumeTask[] = []
  for (const v of [...volumes].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) {
    if (!needsWork(v)) continue
    if (phaseOf(v) === 'deleting') { tasks.push({ kind: 'remove', volume: v }); continue }
    if (v.parent == null || imageMade(v)) { tasks.push({ kind: 'ensure', volume: v, parent: null }); continue }
    const p = byName.get(v.parent.volume)
    if (p === undefined || phaseOf(p) === 'deleting') {
      tasks.push({ kind: 'fail', volume: v, reason: `its parent volume ${v.parent.volume} is gone` })
    } else if (phaseOf(p) === 'pending') {
      // the parent's snapshot may be among the changes it waits for
      tasks.push({ kind: 'wait', volume: v, reason: `waiting for its parent volume ${p.name} to be ready` })
    } else if (phaseOf(p) === 'failed' && !imageMade(p)) {
      tasks.push({ kind: 'fail', volume: v, reason: `its parent volume ${p.name} failed: ${p.reason ?? 'no reason given'}` })
    } else {
      tasks.push({ kind: 'ensure', volume: v, parent: p })
    }
  }
  return tasks
}
