// Child of log-crash.test.ts: appends batches to an WalLogStore with sync, and after each sync
// prints the last synced index, until it is killed. Entry i carries payloadFor(i).
import { WalLogStore } from '../../storage/wal-log-store.ts'
import { payloadFor } from './crash-payload.ts'

const dir = process.argv[2]
const batch = Number(process.argv[3] ?? '8')
// small segments, so that kills also land while a new segment is started
const store = WalLogStore.open(dir, { segmentBytes: 32 * 1024 })
let next = store.lastIndex() + 1
for (;;) {
  const entries = []
  for (let k = 0; k < batch; k++, next++) entries.push({ index: next, term: 1, type: 'normal' as const, data: payloadFor(next) })
  store.save({ entries, hardState: { term: 1, vote: 'a', commit: next - 1 } })
  store.sync()
  process.stdout.write(`${next - 1}\n`)
}
