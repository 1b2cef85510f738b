// The in-memory drive of a few RawNodes that several Raft tests share: every Ready of every node is
// persisted (and synced), handed to the test, advanced, and its messages delivered, until no node
// has a Ready left.
import type { Message, RawNode, Ready } from '../../protocols/raft/index.ts'
import type { MemoryLogStore } from '../../sim/memory-log-store.ts'

export function settleReadies (nodes: ReadonlyMap<string, RawNode>, stores: ReadonlyMap<string, MemoryLogStore>, o: {
  /** a Ready persisted, before it is advanced */
  onReady?: (id: string, rd: Ready) => void
  /** deliver one message (the test may drop it or record it) */
  deliver: (m: Message) => void
  rounds: number
}): void {
  for (let round = 0; round < o.rounds; round++) {
    let any = false
    for (const [id, n] of nodes) {
      while (n.hasReady()) {
        any = true
        const rd = n.ready()
        const store = stores.get(id) as MemoryLogStore
        store.save({ hardState: rd.hardState ?? undefined, entries: rd.entries, snapshot: rd.snapshot ?? undefined })
        store.sync()
        o.onReady?.(id, rd)
        n.advance(rd)
        for (const m of rd.messages) o.deliver(m)
      }
    }
    if (!any) return
  }
  throw new Error('did not settle')
}
