// Table tests of the migration phases: every path ends final with one owner,
// the owner is the source before switchover and the target after.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { newMigrationRecord, step, type MigrationEvent, type MigrationRecord } from '../../protocols/migration-phases.ts'

const fresh = (): MigrationRecord => newMigrationRecord('web', 'n1', 'n2', 4, 1000)

function run (events: MigrationEvent[]): { record: MigrationRecord, errors: string[] } {
  let r = fresh()
  const errors: string[] = []
  for (const e of events) {
    const t = step(r, e)
    if (t.ok) r = t.record; else errors.push(t.error)
  }
  return { record: r, errors }
}

const cases: Array<[string, MigrationEvent[], string, string, number]> = [
  ['happy path', [{ type: 'target-ready' }, { type: 'source-completed' }, { type: 'target-running' }], 'done', 'n2', 0],
  ['target dies while preparing', [{ type: 'node-failed', node: 'n2', reason: 'lease' }], 'aborted', 'n1', 0],
  ['target dies mid-transfer', [{ type: 'target-ready' }, { type: 'node-failed', node: 'n2', reason: 'kill -9' }], 'aborted', 'n1', 0],
  ['source dies mid-transfer', [{ type: 'target-ready' }, { type: 'node-failed', node: 'n1', reason: 'lease' }], 'aborted', 'n1', 0],
  ['source dies after switchover', [{ type: 'target-ready' }, { type: 'source-completed' }, { type: 'node-failed', node: 'n1', reason: 'lease' }], 'done', 'n2', 0],
  ['target dies after switchover', [{ type: 'target-ready' }, { type: 'source-completed' }, { type: 'node-failed', node: 'n2', reason: 'lease' }], 'done', 'n2', 0],
  ['cancel while preparing', [{ type: 'cancel', reason: 'user' }], 'aborted', 'n1', 0],
  ['cancel mid-transfer: the source cancels and fails', [{ type: 'target-ready' }, { type: 'cancel', reason: 'user' }, { type: 'node-failed', node: 'n1', reason: 'cancelled' }], 'aborted', 'n1', 0],
  ['cancel mid-transfer, but QEMU had completed: the switchover stands', [{ type: 'target-ready' }, { type: 'cancel', reason: 'user' }, { type: 'source-completed' }, { type: 'target-running' }], 'done', 'n2', 0],
  ['a second cancel mid-transfer is refused', [{ type: 'target-ready' }, { type: 'cancel', reason: 'user' }, { type: 'cancel', reason: 'again' }], 'transferring', 'n1', 1],
  ['cancel after switchover is refused', [{ type: 'target-ready' }, { type: 'source-completed' }, { type: 'cancel', reason: 'user' }, { type: 'target-running' }], 'done', 'n2', 1],
  ['switchover before target ready is refused', [{ type: 'source-completed' }], 'preparing', 'n1', 1],
  ['nothing after final', [{ type: 'cancel', reason: 'x' }, { type: 'target-ready' }], 'aborted', 'n1', 1],
  ['stalled before switchover: back to the source', [{ type: 'target-ready' }, { type: 'stalled', reason: 'no step for 60 s' }], 'aborted', 'n1', 0],
  ['stalled after switchover: the target keeps it', [{ type: 'target-ready' }, { type: 'source-completed' }, { type: 'stalled', reason: 'no step for 60 s' }], 'done', 'n2', 0],
  ['a bystander failing changes nothing', [{ type: 'node-failed', node: 'n3', reason: 'lease' }], 'preparing', 'n1', 1]
]

for (const [name, events, phase, owner, nErrors] of cases) {
  test(name, () => {
    const { record, errors } = run(events)
    assert.is(record.phase, phase)
    assert.is(record.owner, owner)
    assert.is(errors.length, nErrors, errors.join('; '))
  })
}

test('the owner is the source until switchover and the target from then on', () => {
  let r = fresh()
  assert.is(r.owner, 'n1')
  for (const e of [{ type: 'target-ready' }, { type: 'source-completed' }] as MigrationEvent[]) {
    const t = step(r, e); assert.ok(t.ok); if (t.ok) r = t.record
  }
  assert.is(r.phase, 'switched')
  assert.is(r.owner, 'n2')
})

test.run()
