// Child of lmdb-crash.test.ts: appends batches to an LmdbLogStore with sync, and after each sync
// prints the last synced index, until it is killed. Entry i carries payloadFor(i).
import { LmdbLogStore } from '../../storage/lmdb-log-store.ts'
import { payloadFor } from './crash-payload.ts'

const dir = process.argv[2]
const batch = Number(process.argv[3] ?? '8')
const store = LmdbLogStore.open(dir)
let next = store.lastIndex() + 1
for (;;) {
  const entries = []
  for (let k = 0; k < batch; k++, next++) entries.push({ index: next, term: 1, type: 'normal' as const, data: payloadFor(next) })
  store.save({ entries, hardState: { term: 1, vote: 'a', commit: next - 1 } })
  store.sync()
  process.stdout.write(`${next - 1}\n`)
}
