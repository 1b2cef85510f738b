// Child of sm-crash.test.ts: applies commandFor(i) for i = applied+1, ... to a StateMachine on an
// LmdbKv in lazy mode and prints each applied index, until killed.
import { LmdbKv } from '../../storage/lmdb-kv.ts'
import { StateMachine, UNCHECKED_AUTHORITY, encodeEnvelope } from '../../storage/state-machine.ts'
import { commandFor } from './crash-payload.ts'

const kv = LmdbKv.open(process.argv[2], { sync: 'lazy' })
const sm = new StateMachine(kv, UNCHECKED_AUTHORITY)
for (let i = sm.applied() + 1; ; i++) {
  sm.apply(i, encodeEnvelope({ cmd: commandFor(i), at: i, key: `k${i % 50}` }))
  process.stdout.write(`${i}\n`)
}
