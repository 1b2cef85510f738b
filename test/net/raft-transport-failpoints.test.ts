// The Raft transport's failpoint (raft.transport.send, storage/failpoints.ts) between two real
// libp2p hosts on 127.0.0.1: drop loses a batch (counted), delay holds it, reset breaks the stream
// and reports the peer unreachable, after which the transport reconnects and delivers again.
import './helpers.ts'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Message } from '../../protocols/raft/types.ts'
import { raftTransport, type RaftTransport } from '../../node/net/raft-transport.ts'
import type { BlixardHost } from '../../node/net/host.ts'
import { dialableAddr } from '../../node/net/host.ts'
import { testHost, until } from './helpers.ts'
import { silentLogger } from '../../node/log.ts'
import { setFailpoints } from '../../storage/failpoints.ts'

interface Node { host: BlixardHost<{ raft: RaftTransport }>, id: string, got: Message[], unreachable: string[] }

async function node (): Promise<Node> {
  const n = { got: [], unreachable: [] } as unknown as Node
  n.host = await testHost<{ raft: RaftTransport }>({
    services: {
      raft: raftTransport({
        onMessage: (_from, msg) => { n.got.push(msg) },
        onUnreachable: (peer) => n.unreachable.push(peer),
        onSnapshotStatus: () => {},
        log: silentLogger,
        reconnectMinMs: 20,
        reconnectMaxMs: 200,
        dialTimeoutMs: 1000
      })
    }
  })
  n.id = n.host.peerId.toString()
  return n
}

const hb = (from: string, to: string, commit: number): Message => ({ type: 'MsgHeartbeat', from, to, term: 1, commit })

test('drop, delay and reset on real hosts', async () => {
  const [a, b] = await Promise.all([node(), node()])
  try {
    await a.host.dial(dialableAddr(b.host))
    a.host.services.raft.send([hb(a.id, b.id, 1)])
    await until(() => b.got.length === 1, 5000, 'delivery without failpoints')

    setFailpoints('raft.transport.send=1*drop(1)')
    a.host.services.raft.send([hb(a.id, b.id, 2)])
    await until(() => a.host.services.raft.stats()[b.id].dropped >= 1, 3000, 'the drop counted')
    a.host.services.raft.send([hb(a.id, b.id, 3)])
    await until(() => b.got.length === 2, 3000, 'delivery after the drop')
    assert.equal(b.got.map((m) => m.commit), [1, 3])

    setFailpoints('raft.transport.send=1*delay(300)')
    const t0 = Date.now()
    a.host.services.raft.send([hb(a.id, b.id, 4)])
    await until(() => b.got.length === 3, 3000, 'delivery after the delay')
    assert.ok(Date.now() - t0 >= 290, `delivered after ${Date.now() - t0} ms`)

    setFailpoints('raft.transport.send=1*reset')
    a.host.services.raft.send([hb(a.id, b.id, 5)])
    await until(() => a.unreachable.includes(b.id), 3000, 'the peer reported unreachable')
    a.host.services.raft.send([hb(a.id, b.id, 6)])
    await until(() => b.got.some((m) => m.commit === 6), 5000, 'delivery after the reset (reconnected)')
    assert.not.ok(b.got.some((m) => m.commit === 5), 'the reset batch was lost, not delivered')
  } finally {
    setFailpoints('')
    await Promise.all([a.host.stop(), b.host.stop()])
  }
})

test.run()
